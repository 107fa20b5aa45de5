package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAnswerOverTheLimitIsNamed: an admin answer longer than pushsyncctl
// reads is refused as such, not cut off and reported as JSON that does not
// decode.
func TestAnswerOverTheLimitIsNamed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"apps":[`))
		item := []byte(`{"name":"` + strings.Repeat("a", 1000) + `"},`)
		for n := 0; n <= maxAnswer/len(item); n++ {
			w.Write(item)
		}
		w.Write([]byte(`{"name":"last"}]}`))
	}))
	defer srv.Close()
	r := ctlEnv(map[string]string{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"},
		"-endpoint", srv.URL, "app", "list")
	if r.code == 0 || !strings.Contains(r.stderr, "is over 16 MiB, more than pushsyncctl reads") {
		t.Fatalf("app list of an answer over the limit: %s", r)
	}
}
