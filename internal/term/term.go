// Package term tells whether output goes to a terminal, for the commands
// that draw progress or colour only there.
package term

import (
	"io"
	"os"
)

// Is says whether w is a terminal (a character device), rather than a
// file, a pipe or anything that is not an *os.File.
func Is(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
