package sigv4

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHostSignedWithoutPort sends requests to a server on a port, signed
// the way the iOS SDK signs them: the host header of the canonical request
// without the port, the request itself sent with it.
func TestHostSignedWithoutPort(t *testing.T) {
	srv := newServer(t, newVerifier(signTime), `{}`)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	body := []byte(`{"Platform":"APNS","Token":"0123abcd"}`)
	tests := []struct {
		name, signedHost string
		want             error // nil: accepted
	}{
		{"host without the port", "127.0.0.1", nil},
		{"host with the port", "127.0.0.1" + port, nil},
		{"host with another port", "127.0.0.1:1", ErrSignatureMismatch},
		{"another host", "localhost", ErrSignatureMismatch},
		{"another host with the port", "localhost" + port, ErrSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSDKRequest(t, "POST", srv.URL, subscribePath, "", body)
			r.Host = tt.signedHost
			signDefault(t, r, body)
			r.Host = "" // sent to the URL's host, 127.0.0.1:<port>
			r.Body = io.NopCloser(bytes.NewReader(body))
			res, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			_, _, verr := srv.last(t)
			switch {
			case tt.want == nil && verr != nil:
				t.Fatalf("signed for host %q: %v", tt.signedHost, verr)
			case tt.want != nil && !errors.Is(verr, tt.want):
				t.Fatalf("signed for host %q: got %v, want %v", tt.signedHost, verr, tt.want)
			}
		})
	}
}
