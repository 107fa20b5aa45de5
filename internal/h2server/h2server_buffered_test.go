package h2server_test

import (
	"io"
	"net/http"
	"strconv"
	"testing"

	"golang.org/x/net/http2"
)

// sendable is what the raw client may send on stream now: the least of
// the connection's and the stream's send windows and want.
func (c *rawConn) sendable(stream uint32, want int) int {
	sw := int64(c.server[http2.SettingInitialWindowSize]) + c.streamSend[stream]
	return int(max(0, min(int64(want), defaultMaxFrame, sw, c.connSend)))
}

// TestUnfinishedRequestBodiesBounded checks that the request bodies a
// connection holds while they are still arriving are bounded by the
// connection's receive window, not by the stream limit times
// MaxRequestBody: a client that opens many streams and never ends them
// must not make the server buffer gigabytes. Ending the requests gives
// the window back.
func TestUnfinishedRequestBodiesBounded(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Write([]byte(strconv.FormatInt(n, 10)))
	}))
	c := ts.dialRaw(t)

	const streams = 8
	const each = 3 << 20 // under MaxRequestBody, together above the connection window
	left := make(map[uint32]int)
	for i := range streams {
		id := uint32(2*i + 1)
		c.writeHeaders(id, false, reqFields("POST", "/upload")...)
		left[id] = each
	}
	chunk := pattern(defaultMaxFrame)
	sent := 0
	for {
		progress := false
		for i := range streams {
			id := uint32(2*i + 1)
			if n := c.sendable(id, left[id]); n > 0 {
				c.check(c.fr.WriteData(id, false, chunk[:n]))
				c.connSend -= int64(n)
				c.streamSend[id] -= int64(n)
				left[id] -= n
				sent += n
				progress = true
			}
		}
		if sent == streams*each {
			break
		}
		if !progress {
			// The server handles frames in order: once the PING is
			// answered, every WINDOW_UPDATE for what was sent is in.
			for _, f := range c.sync() {
				if f.Type != http2.FrameWindowUpdate && !(f.Type == http2.FrameSettings && f.Ack) {
					t.Fatalf("unexpected %v", f)
				}
			}
			if c.connSend <= 0 {
				break
			}
		}
	}
	if sent > serverConnWindow {
		t.Fatalf("the server took %d bytes of request bodies not yet ended, more than its %d-byte connection window", sent, serverConnWindow)
	}

	// Ending the requests answers them and gives their window back.
	for i := range streams {
		id := uint32(2*i + 1)
		c.writeData(id, true, nil)
		r := c.readResponse(id)
		if want := strconv.Itoa(each - left[id]); r.status() != "200" || string(r.body) != want {
			t.Fatalf("stream %d: %s %q, want 200 %q", id, r.status(), r.body, want)
		}
	}
	c.sync()
	if c.connSend < serverConnWindow/2 {
		t.Errorf("connection window %d after every request was answered", c.connSend)
	}
	last := uint32(2*streams + 1)
	c.writeHeaders(last, false, reqFields("POST", "/upload")...)
	c.writeData(last, true, pattern(2<<20))
	if r := c.readResponse(last); r.status() != "200" || string(r.body) != strconv.Itoa(2<<20) {
		t.Errorf("after the window came back: %s %q, want 200 %q", r.status(), r.body, strconv.Itoa(2<<20))
	}
}
