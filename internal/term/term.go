// Package term tells whether output goes to a terminal, for the commands
// that draw progress or colour, or ask before acting, only there.
package term

import (
	"io"
	"os"

	"golang.org/x/term"
)

// Is says whether w is a terminal, rather than a file, a pipe, a character
// device such as /dev/null, or anything that is not an *os.File.
func Is(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
