package registry_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/registry"
)

// An FCM app's service account key file is checked down to its private
// key: a damaged one is refused with what is wrong, not accepted only to
// fail every push.
func TestServiceAccountKeyErrors(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	block := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	good := block("PRIVATE KEY", pkcs8)
	file := func(key any) string {
		data, err := json.Marshal(map[string]any{"type": "service_account", "project_id": "demo",
			"client_email": "push@demo.iam.gserviceaccount.com", "private_key": key, "token_uri": "https://oauth2.googleapis.com/token"})
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	lines := strings.Split(good, "\n")

	tests := []struct {
		name, serviceAccount, want string
	}{
		{"PKCS#8 RSA key", file(good), ""},
		{"PKCS#1 RSA key", file(block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))), ""},
		{"placeholder key", file("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"), "private_key is no PKCS#8 private key, it is damaged"},
		{"key cut short", file(block("PRIVATE KEY", pkcs8[:len(pkcs8)/2])), "private_key is no PKCS#8 private key, it is damaged"},
		{"base64 damaged", file(strings.Replace(good, lines[3], lines[3][:10]+"!"+lines[3][11:], 1)), "private_key is not PEM"},
		{"not PEM at all", file("k"), "private_key is not PEM"},
		{"line breaks escaped twice", file(strings.ReplaceAll(good, "\n", `\n`)), `line breaks are the two characters \n`},
		{"ECDSA key", file(block("PRIVATE KEY", ecPKCS8)), "private_key is an ECDSA key, but service account keys are RSA"},
		{"encrypted key", file(block("ENCRYPTED PRIVATE KEY", pkcs8)), "private_key is encrypted"},
		{"certificate instead", file(block("CERTIFICATE", pkcs8)), `private_key holds a PEM "CERTIFICATE" block`},
		{"key of the wrong type", file(5), "member private_key must be a string, got a JSON number"},
		{"email of the wrong type", strings.Replace(file(good), `"client_email":"push@demo.iam.gserviceaccount.com"`, `"client_email":["push"]`, 1), "member client_email must be a string, got a JSON array"},
		{"token_uri not a URL", strings.Replace(file(good), `"https://oauth2.googleapis.com/token"`, `"oauth2.googleapis.com/token"`, 1), `token_uri "oauth2.googleapis.com/token": must be an absolute URL`},
		{"token_uri over plain http", strings.Replace(file(good), `"https://oauth2.googleapis.com/token"`, `"http://oauth2.googleapis.com/token"`, 1), `token_uri "http://oauth2.googleapis.com/token": http is allowed only for`},
		{"token_uri of a local emulator", strings.Replace(file(good), `"https://oauth2.googleapis.com/token"`, `"http://127.0.0.1:9090/token"`, 1), ""},
		{"array", `[]`, "must be a service account key file, a JSON object, got a JSON array"},
		{"empty", "", "fcm.serviceAccount: is required"},
		{"not JSON", `{"type":`, "not JSON"},
	}
	for _, tt := range tests {
		app := registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: tt.serviceAccount}}
		err := app.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.want != "" && (err == nil || !errors.Is(err, registry.ErrInvalidApp) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "fcm.serviceAccount: ")):
			t.Errorf("%s: got %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}
