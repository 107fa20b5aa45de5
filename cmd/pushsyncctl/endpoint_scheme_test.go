package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEndpointWithoutSchemeIsHTTPSOffThisMachine: an -endpoint given as a
// host without a scheme (sync.example.com, sync.example.com:8443) is
// reached over https, for the requests carry platform apps' private keys and
// service accounts, and the answers identity credentials' secrets; it was
// taken as http, and app create sent the key across the network in the
// clear. A loopback endpoint without a scheme, where pushsyncd's own plain
// HTTP listener is, stays http.
func TestEndpointWithoutSchemeIsHTTPSOffThisMachine(t *testing.T) {
	for endpoint, want := range map[string]string{
		"sync.example.com":          "https://sync.example.com",
		"sync.example.com:8443/":    "https://sync.example.com:8443",
		"10.1.2.3:8081":             "https://10.1.2.3:8081",
		"127.0.0.1:8081":            "http://127.0.0.1:8081",
		"localhost:8081":            "http://localhost:8081",
		"[::1]:8081":                "http://[::1]:8081",
		":8081":                     "http://:8081",
		"http://sync.example.com":   "http://sync.example.com",
		"https://127.0.0.1:8081///": "https://127.0.0.1:8081",
	} {
		if got := (&cli{endpoint: endpoint}).baseURL(); got != want {
			t.Errorf("-endpoint %s: base URL %s, want %s", endpoint, got, want)
		}
	}

	// What goes on the wire to such an endpoint: a listener that takes
	// every connection made to it and keeps the first bytes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		// The first write of the client: a request's head, or a TLS
		// ClientHello. Closing then fails the request at once.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64<<10)
		n, _ := conn.Read(buf)
		sent <- buf[:n]
	}()
	dialer := &net.Dialer{}
	c := &cli{endpoint: "sync.example.com:8443", accessKey: "AKIAPUSHSYNCTEST0001", secretKey: "developer-secret-for-tests", region: "us-east-1",
		httpClient: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, ln.Addr().String())
			},
		}}}
	const key = "-----BEGIN PRIVATE KEY-----\nTHE-APPS-SIGNING-KEY\n-----END PRIVATE KEY-----\n"
	body := &appBody{Name: "game-ios", Kind: "apns", APNs: &apnsBody{Topic: "com.example.game", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: key}}
	if _, err := c.admin(http.MethodPost, "/admin/v1/apps", body); err == nil {
		t.Fatal("a listener that answers nothing took the app")
	}
	wire := <-sent
	if bytes.Contains(wire, []byte("THE-APPS-SIGNING-KEY")) || strings.HasPrefix(string(wire), "POST ") {
		t.Fatalf("app create to -endpoint sync.example.com:8443 went in plain HTTP, the key readable on the wire:\n%.300s", wire)
	}
	if len(wire) == 0 || wire[0] != 0x16 { // a TLS handshake record
		t.Fatalf("app create to -endpoint sync.example.com:8443 did not begin a TLS handshake: % x", wire[:min(len(wire), 16)])
	}
}
