package registry_test

import (
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/registry"
)

// TestCertificateErrorsSayWhatIsWrong gives an APNs app certificates in the
// forms they are wrongly exported in: each is refused with what is wrong
// and how to fix it.
func TestCertificateErrorsSayWhatIsWrong(t *testing.T) {
	pair := certificateValidUntil(t, time.Now().AddDate(1, 0, 0))
	certBlock, rest := pem.Decode([]byte(pair))
	keyBlock, _ := pem.Decode(rest)
	certPEM, keyPEM := string(pem.EncodeToMemory(certBlock)), string(pem.EncodeToMemory(keyBlock))
	ciphertext := []byte(strings.Repeat("\x5a\xa5", 64)) // what a passphrase makes of a key
	encryptedKey := string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: ciphertext}))
	legacyEncryptedKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: ciphertext}))

	tests := []struct {
		name, certificate string
		want              []string
	}{
		{"a .p12 file", string(certBlock.Bytes), []string{"no PEM data", "openssl pkcs12 -in cert.p12 -out cert.pem -nodes"}},
		{"the certificate alone", certPEM, []string{"no private key", "append"}},
		{"the key alone", keyPEM, []string{"no CERTIFICATE block"}},
		{"an encrypted key", certPEM + encryptedKey, []string{"private key is encrypted", "-nodes"}},
		{"a legacy encrypted key", certPEM + legacyEncryptedKey, []string{"private key is encrypted"}},
	}
	for _, tt := range tests {
		app := registry.App{Name: "ios-cert", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", Certificate: tt.certificate}}
		err := app.Validate()
		if !errors.Is(err, registry.ErrInvalidApp) {
			t.Errorf("%s: %v, want ErrInvalidApp", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tt.name, err, w)
			}
		}
	}
	app := registry.App{Name: "ios-cert", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", Certificate: pair}}
	if err := app.Validate(); err != nil {
		t.Errorf("the certificate and its key: %v", err)
	}
}
