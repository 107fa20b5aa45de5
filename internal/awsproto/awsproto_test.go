package awsproto_test

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/awsproto"
)

// TestRefusalsAreNotLoggedOneByOne: a flood of refused requests of one
// error type logs one info line, the rest at debug level; another type gets
// its own line; server faults are always logged as errors. Every request
// gets its answer.
func TestRefusalsAreNotLoggedOneByOne(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.DebugLevel)
	refusals := awsproto.NewRefusals()
	fail := func(err error) int {
		w := httptest.NewRecorder()
		status := awsproto.Fail(w, "application/json", log, refusals, err)
		if w.Header().Get("X-Amzn-ErrorType") == "" || w.Code != status {
			t.Fatalf("answer %d %v", w.Code, w.Header())
		}
		return status
	}
	for range 100 {
		fail(awsproto.Errorf(403, "InvalidSignatureException", "the signature does not match"))
	}
	fail(awsproto.Errorf(400, "SerializationException", "not JSON"))
	fail(errors.New("redis down"))
	fail(errors.New("redis down"))

	count := func(level, s string) int {
		n := 0
		for line := range strings.Lines(buf.String()) {
			if strings.Contains(line, `"level":"`+level+`"`) && strings.Contains(line, s) {
				n++
			}
		}
		return n
	}
	if n := count("info", "InvalidSignatureException"); n != 1 {
		t.Errorf("%d info lines for 100 refusals of one type, want 1", n)
	}
	if n := count("debug", "InvalidSignatureException"); n != 99 {
		t.Errorf("%d debug lines for the other 99, want 99", n)
	}
	if n := count("info", "SerializationException"); n != 1 {
		t.Errorf("%d info lines for another type, want 1", n)
	}
	if n := count("error", "redis down"); n != 2 {
		t.Errorf("%d error lines for 2 server faults, want 2", n)
	}
}
