package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestPeakRSSIsSinceThePreviousReading grows this process's resident set
// by 256 MB and gives it back before a reading: that reading's peak has
// it, and the next one, which a phase takes at its end after one at its
// start, must not, or every phase reports the peak of the whole run.
func TestPeakRSSIsSinceThePreviousReading(t *testing.T) {
	const size = 256 << 20
	// Memory outside the Go heap, so that it goes back to the system at
	// once (and the race detector does not shadow it).
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(b); i += os.Getpagesize() {
		b[i] = 1
	}
	if err := syscall.Munmap(b); err != nil {
		t.Fatal(err)
	}
	first, err := usageOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rss, _, err := memory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if first.peakRSS < rss+size*9/10 {
		t.Fatalf("peak %d MB with %d MB resident now: the %d MB given back are not in it", first.peakRSS>>20, rss>>20, size>>20)
	}
	second, err := usageOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if second.peakRSS > first.peakRSS-size/2 {
		t.Errorf("peak %d MB since a reading of %d MB, taken after %d MB were given back", second.peakRSS>>20, first.peakRSS>>20, size>>20)
	}
}

// TestAttachedWorkersPeakIsSinceThePreviousReading does the same for
// workers read through their metrics endpoint.
func TestAttachedWorkersPeakIsSinceThePreviousReading(t *testing.T) {
	var rss atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			fmt.Fprintln(w, "ready")
		case "/metrics":
			fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n"+
				"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", rss.Load())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	rss.Store(80 << 20)
	r, err := watchWorkers([]string{strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	rss.Store(500 << 20)
	if u, err := r.usage(); err != nil || u.peakRSS != 500<<20 || u.cpu != 12500*time.Millisecond {
		t.Fatalf("usage %+v, %v; want a peak of 500 MB and 12.5s of CPU", u, err)
	}
	rss.Store(100 << 20)
	// 500 MB were resident when the interval began.
	if u, err := r.usage(); err != nil || u.peakRSS != 500<<20 {
		t.Fatalf("usage %+v, %v; want a peak of 500 MB", u, err)
	}
	if u, err := r.usage(); err != nil || u.peakRSS != 100<<20 {
		t.Errorf("peak %d MB between two readings with 100 MB resident (%v)", u.peakRSS>>20, err)
	}
}
