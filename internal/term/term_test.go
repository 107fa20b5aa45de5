package term

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestIs(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if Is(f) {
		t.Error("a regular file is taken for a terminal")
	}
	if Is(&bytes.Buffer{}) {
		t.Error("a buffer is taken for a terminal")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if Is(null) {
		t.Errorf("%s, a character device but no terminal, is taken for a terminal", os.DevNull)
	}
}
