package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/internal/emutls"
	"github.com/pushsync/pushsync/internal/testenv"
)

// startPushemu runs pushemu with args until the returned stop is called
// (or the test ends), the emulators on ports of their own unless args
// name them, without the feed and without logging pushes.
func startPushemu(t *testing.T, args ...string) (Addrs, *testenv.LogBuffer, func()) {
	t.Helper()
	args = append([]string{"-apns-addr", "127.0.0.1:0", "-apns-sandbox-addr", "127.0.0.1:0", "-fcm-addr", "127.0.0.1:0", "-feed-addr", "", "-quiet"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan Addrs, 1), make(chan error, 1)
	logs := &testenv.LogBuffer{}
	go func() { done <- run(ctx, args, logs, func(a Addrs) { ready <- a }) }()
	a := waitReady(t, ready, done)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pushemu: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, logs, stop
}

func loadConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, "pushsyncd.yaml"), nil)
	if err != nil {
		t.Fatalf("pushsyncd.yaml does not load: %v", err)
	}
	return cfg
}

// keptFiles are the files pushemu keeps from one start to the next.
var keptFiles = []string{"apns-ca.pem", "apns-ca-key.pem", "apns-server.pem", "apns-server-key.pem",
	"fcm-ca.pem", "fcm-ca-key.pem", "fcm-server.pem", "fcm-server-key.pem", "apns-authkey.p8", "fcm-service-account.json"}

// TestRestartKeepsCredentials starts pushemu, pushes with what it wrote,
// as a pushsyncd that read the CA files at its start and apps registered
// with the key files do, and starts pushemu again on the same -dir (APNs
// on other ports, FCM on its port, which the service account names): the
// same CAs and credentials are accepted, and pushsyncd.yaml names the new
// addresses.
func TestRestartKeepsCredentials(t *testing.T) {
	dir := t.TempDir()
	first, _, stop := startPushemu(t, "-dir", dir)
	apnsRoots, fcmRoots := loadPool(t, filepath.Join(dir, "apns-ca.pem")), loadPool(t, filepath.Join(dir, "fcm-ca.pem"))
	ios, android := appsOf(t, dir)
	pushToAll(t, loadConfig(t, dir), apnsRoots, fcmRoots, ios, android, newEvent())
	before := snapshot(t, dir, "apns-ca.pem", "fcm-ca.pem", "apns-authkey.p8", "fcm-service-account.json")
	stop()

	second, logs, _ := startPushemu(t, "-dir", dir, "-fcm-addr", strings.TrimPrefix(first.FCM, "https://"))
	cfg := loadConfig(t, dir)
	if cfg.APNs.ProductionHost != second.APNs || cfg.APNs.SandboxHost != second.APNsSandbox || cfg.FCM.Endpoint != first.FCM+"/v1" {
		t.Fatalf("pushsyncd.yaml points at %s %s %s, emulators at %+v", cfg.APNs.ProductionHost, cfg.APNs.SandboxHost, cfg.FCM.Endpoint, second)
	}
	pushToAll(t, cfg, apnsRoots, fcmRoots, ios, android, newEvent())
	if after := snapshot(t, dir, "apns-ca.pem", "fcm-ca.pem", "apns-authkey.p8", "fcm-service-account.json"); !equalFiles(before, after) {
		t.Errorf("files changed: %v", changed(before, after))
	}
	// Nothing was made anew, not even a server certificate.
	if l := logs.String(); !strings.Contains(l, "reusing the authorities, the APNs signing key and the FCM service account") || strings.Contains(l, "WRN") || strings.Contains(l, "issued") {
		t.Errorf("log:\n%s", l)
	}
}

// TestServerCertificatesIssuedAgain starts pushemu again with another
// -hosts name and a damaged FCM server certificate: both server
// certificates are issued again by the authorities the clients trust,
// which name the new host.
func TestServerCertificatesIssuedAgain(t *testing.T) {
	dir := t.TempDir()
	first, _, stop := startPushemu(t, "-dir", dir)
	stop()
	before := snapshot(t, dir, keptFiles...)
	apnsRoots, fcmRoots := loadPool(t, filepath.Join(dir, "apns-ca.pem")), loadPool(t, filepath.Join(dir, "fcm-ca.pem"))
	ios, android := appsOf(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "fcm-server.pem"), []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}

	a, logs, _ := startPushemu(t, "-dir", dir, "-hosts", "emu.test", "-fcm-addr", strings.TrimPrefix(first.FCM, "https://"))
	c, err := tls.Dial("tcp", strings.TrimPrefix(a.APNs, "https://"), &tls.Config{RootCAs: apnsRoots, ServerName: "emu.test"})
	if err != nil {
		t.Fatalf("APNs as emu.test: %v", err)
	}
	c.Close()
	// The app keeps the service account it was given, whose token_uri
	// names the emulator by its address, which is the same.
	pushToAll(t, loadConfig(t, dir), apnsRoots, fcmRoots, ios, android, newEvent())
	after := snapshot(t, dir, keptFiles...)
	if ch := changed(before, after); strings.Join(ch, " ") != "apns-server.pem apns-server-key.pem fcm-server.pem fcm-server-key.pem fcm-service-account.json" {
		t.Errorf("changed: %v", ch)
	}
	l := logs.String()
	for _, want := range []string{
		filepath.Join(dir, "apns-server.pem") + `: x509: certificate is valid for localhost, not emu.test; issued a new one from apns-ca.pem`,
		"WRN " + filepath.Join(dir, "fcm-server.pem") + ": holds no PEM certificate",
		"issued a new FCM server certificate from fcm-ca.pem",
		filepath.Join(dir, "fcm-service-account.json") + ": token_uri names https://emu.test:",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("the log has no %q:\n%s", want, l)
		}
	}
}

// TestBrokenCredentialsRefused starts pushemu on a -dir whose credentials
// cannot be used: it refuses to start, saying which file and what is
// wrong, and changes nothing; with -new-credentials it makes new ones.
func TestBrokenCredentialsRefused(t *testing.T) {
	good := t.TempDir()
	_, _, stop := startPushemu(t, "-dir", good)
	stop()
	for name, c := range map[string]struct {
		brk  func(t *testing.T, dir string)
		want string
	}{
		"CA not PEM": {func(t *testing.T, dir string) { write(t, dir, "apns-ca.pem", []byte("not a certificate")) },
			"apns-ca.pem: holds no PEM certificate"},
		"CA key of the other CA": {func(t *testing.T, dir string) { write(t, dir, "apns-ca-key.pem", readFile(t, dir, "fcm-ca-key.pem")) },
			"apns-ca-key.pem: not the key of the certificate in apns-ca.pem"},
		"CA key missing": {func(t *testing.T, dir string) { remove(t, dir, "fcm-ca-key.pem") },
			"fcm-ca-key.pem: missing, while fcm-ca.pem is there: the two go together"},
		"CA of an older pushemu, without its key": {func(t *testing.T, dir string) {
			remove(t, dir, "apns-ca-key.pem")
			write(t, dir, "apns-ca.pem", append(readFile(t, dir, "apns-ca.pem"), readFile(t, dir, "fcm-ca.pem")...))
		}, "apns-ca-key.pem: missing, while apns-ca.pem is there"},
		"CA expired": {func(t *testing.T, dir string) {
			write(t, dir, "fcm-ca.pem", expiredCA(t, readFile(t, dir, "fcm-ca-key.pem")))
		},
			`fcm-ca.pem: the certificate "fcm.googleapis.com emulator CA" expired on `},
		"APNs key damaged": {func(t *testing.T, dir string) { write(t, dir, "apns-authkey.p8", readFile(t, dir, "apns-ca.pem")) },
			`apns-authkey.p8: holds a PEM "CERTIFICATE" block, not a PKCS#8 PRIVATE KEY`},
		"service account of another project": {func(t *testing.T, dir string) {
			write(t, dir, "fcm-service-account.json", bytes.Replace(readFile(t, dir, "fcm-service-account.json"), []byte(`"project_id": "pushemu"`), []byte(`"project_id": "other"`), 1))
		}, `fcm-service-account.json: project_id is "other", not "pushemu"`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range keptFiles {
				write(t, dir, f, readFile(t, good, f))
			}
			c.brk(t, dir)
			before := snapshot(t, dir)
			// A cancelled context: a pushemu that starts returns at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			args := []string{"-dir", dir, "-apns-addr", "127.0.0.1:0", "-apns-sandbox-addr", "127.0.0.1:0", "-fcm-addr", "127.0.0.1:0", "-feed-addr", ""}
			err := run(ctx, args, &testenv.LogBuffer{}, nil)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, c.want)) || !strings.Contains(err.Error(), "-new-credentials") {
				t.Fatalf("pushemu: %v\nwant an error with %q", err, filepath.Join(dir, c.want))
			}
			if after := snapshot(t, dir); !equalFiles(before, after) {
				t.Fatalf("a refusing pushemu changed %v", changed(before, after))
			}

			if err := run(ctx, append(args, "-new-credentials"), &testenv.LogBuffer{}, nil); err != nil {
				t.Fatalf("-new-credentials: %v", err)
			}
			after := snapshot(t, dir, keptFiles...)
			for _, f := range []string{"apns-ca.pem", "fcm-ca.pem", "apns-authkey.p8", "fcm-service-account.json"} {
				if bytes.Equal(after[f], before[f]) {
					t.Errorf("-new-credentials kept %s", f)
				}
			}
			if err := run(ctx, args, &testenv.LogBuffer{}, nil); err != nil {
				t.Fatalf("after -new-credentials: %v", err)
			}
		})
	}
}

// snapshot reads the files named, or every file of dir.
func snapshot(t *testing.T, dir string, names ...string) map[string][]byte {
	t.Helper()
	if len(names) == 0 {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	files := make(map[string][]byte, len(names))
	for _, n := range names {
		files[n] = readFile(t, dir, n)
	}
	return files
}

func equalFiles(a, b map[string][]byte) bool { return len(changed(a, b)) == 0 }

// changed names the files that differ between a and b, in the order of
// keptFiles and then by name.
func changed(a, b map[string][]byte) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range keptFiles {
		seen[n] = true
		if _, inA := a[n]; !inA {
			if _, inB := b[n]; !inB {
				continue
			}
		}
		if !bytes.Equal(a[n], b[n]) {
			out = append(out, n)
		}
	}
	for _, m := range []map[string][]byte{a, b} {
		for n := range m {
			if !seen[n] && !bytes.Equal(a[n], b[n]) {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// expiredCA is a CA certificate for keyPEM's key that expired yesterday.
func expiredCA(t *testing.T, keyPEM []byte) []byte {
	t.Helper()
	key, err := emutls.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fcm.googleapis.com emulator CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestLegacyDirectoryMadeAnew starts pushemu on a -dir an earlier pushemu
// wrote, with CA certificates but no CA keys or server certificates: as
// that pushemu did at every start, it makes new credentials, with a
// warning saying what to do, rather than refusing to start; the next start
// keeps them.
func TestLegacyDirectoryMadeAnew(t *testing.T) {
	dir := t.TempDir()
	_, _, stop := startPushemu(t, "-dir", dir)
	stop()
	for _, name := range []string{"apns-ca-key.pem", "fcm-ca-key.pem", "apns-server.pem", "apns-server-key.pem", "fcm-server.pem", "fcm-server-key.pem"} {
		remove(t, dir, name)
	}
	old := snapshot(t, dir, "apns-ca.pem", "fcm-ca.pem", "apns-authkey.p8", "fcm-service-account.json")

	second, logs, stop := startPushemu(t, "-dir", dir)
	stop()
	if l := logs.String(); !strings.Contains(l, "WRN "+dir+" holds the credentials of an earlier pushemu") || !strings.Contains(l, "pushsyncctl app rotate") {
		t.Errorf("log:\n%s", l)
	}
	made := snapshot(t, dir, keptFiles...)
	if ch := changed(old, made); len(ch) != len(keptFiles) {
		t.Errorf("made anew: %v, want every kept file", ch)
	}

	// FCM on the same port, which the service account names.
	_, logs, _ = startPushemu(t, "-dir", dir, "-fcm-addr", strings.TrimPrefix(second.FCM, "https://"))
	if again := snapshot(t, dir, keptFiles...); !equalFiles(made, again) {
		t.Errorf("the start after changed %v", changed(made, again))
	}
	if l := logs.String(); strings.Contains(l, "WRN") {
		t.Errorf("the start after warned:\n%s", l)
	}
}
