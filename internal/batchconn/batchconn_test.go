package batchconn_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/batchconn"
)

// pair returns a batchconn.Conn dialled to a loopback listener and the
// server's end of the connection.
func pair(t *testing.T) (*batchconn.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	return c.(*batchconn.Conn), srv
}

// dial dials a connection and wraps it with batchconn.New.
func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return batchconn.New(c), nil
}

func TestWritesArriveWholeAndInOrder(t *testing.T) {
	c, srv := pair(t)
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := fmt.Fprintf(c, "w%d:%d\n", w, i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, writers)
	got := 0
	sc := bufio.NewScanner(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for got < writers*each && sc.Scan() {
			var w, i int
			if _, err := fmt.Sscanf(sc.Text(), "w%d:%d", &w, &i); err != nil {
				t.Errorf("torn or mixed write %q: %v", sc.Text(), err)
				return
			}
			if i != next[w] {
				t.Errorf("writer %d: got message %d, want %d", w, i, next[w])
				return
			}
			next[w]++
			got++
		}
	}()
	wg.Wait()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("received %d of %d messages", got, writers*each)
	}
	if got != writers*each {
		t.Fatalf("received %d of %d messages", got, writers*each)
	}
}

func TestWriteErrorIsSticky(t *testing.T) {
	c, srv := pair(t)
	// A reset connection: the server closes with unread data pending.
	if tc, ok := srv.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	srv.Close()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write([]byte(strings.Repeat("x", 4096)))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a reset connection never failed")
	}
	for range 3 {
		if _, again := c.Write([]byte("more")); again == nil || again.Error() != err.Error() {
			t.Fatalf("after %v, a later write returned %v", err, again)
		}
	}
}

func TestCloseReleasesBlockedWriter(t *testing.T) {
	c, _ := pair(t) // the server never reads: the queue fills up
	errs := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				errs <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the writer block on the full queue
	select {
	case err := <-errs:
		t.Fatalf("writer stopped before Close: %v", err)
	default:
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked write returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write blocked on a full queue did not return after Close")
	}
}

// TestHTTP2 runs many concurrent requests of an HTTP/2 client over
// batchconn connections against a TLS server.
func TestHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2", http.StatusHTTPVersionNotSupported)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	tr.DialContext = dial
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()

	// 500 requests from 32 goroutines: streams interleave on the
	// connection without 500 dials racing at the start, which on a loaded
	// machine can miss the Go server's 2 s wait for a client's SETTINGS.
	const senders = 32
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 500; i += senders {
				body := fmt.Sprintf("request %d %s", i, strings.Repeat("y", i))
				res, err := client.Post(srv.URL, "text/plain", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || string(got) != body {
					t.Errorf("request %d: %s %q", i, res.Status, got)
				}
			}
		}()
	}
	wg.Wait()
}
