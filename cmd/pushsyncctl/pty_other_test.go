//go:build !linux

package main

import (
	"os"
	"testing"

	"github.com/pushsync/pushsync/internal/testenv"
)

// openPTY opens a pseudo-terminal only on Linux.
func openPTY(t *testing.T) (pt, tty *os.File) {
	t.Helper()
	testenv.Missing(t, "a pseudo-terminal: the tests open one only on Linux")
	return nil, nil
}
