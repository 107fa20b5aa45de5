package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestSlowRequestBodyIsCutOff: a client that sends a request's headers and
// then its body slower than the read timeout (here: not at all) loses its
// connection, rather than holding it and a goroutine for good; a request
// that comes whole is served.
func TestSlowRequestBodyIsCutOff(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return
		}
		io.WriteString(w, "ok")
	})
	ln, err := bind("127.0.0.1:0", "test.listen")
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := serve(ln, "test.listen", h, 300*time.Millisecond, zerolog.Nop())
	t.Cleanup(func() { srv.Close() })

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
	// The hang guard: the server must close the connection long before.
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("the server kept a connection whose body never came: %v", err)
	}

	res, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader("whole"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(bufio.NewReader(res.Body))
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("a whole request got %s %q", res.Status, body)
	}
}

// TestReachable: the endpoint the dev stack prints for a server listening
// on every interface is one a client on the machine can dial.
func TestReachable(t *testing.T) {
	for in, want := range map[string]string{
		"[::]:8081":        "localhost:8081",
		"0.0.0.0:8081":     "localhost:8081",
		":8081":            "localhost:8081",
		"127.0.0.1:8081":   "127.0.0.1:8081",
		"[::1]:8081":       "[::1]:8081",
		"api.example:8081": "api.example:8081",
	} {
		if got := reachable(in); got != want {
			t.Errorf("reachable(%q) = %q, want %q", in, got, want)
		}
	}
}
