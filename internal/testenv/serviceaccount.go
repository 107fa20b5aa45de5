package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
)

// ServiceAccount returns the JSON of a service account key file of the
// project with a freshly generated RSA key, as Google issues them (the
// private key PEM PKCS#8). Nothing can sign in with it; it only looks real
// to whatever checks the file.
func ServiceAccount(project string) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	data, err := json.Marshal(map[string]string{
		"type":         "service_account",
		"project_id":   project,
		"client_email": "push@" + project + ".iam.gserviceaccount.com",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":    "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		panic(err)
	}
	return string(data)
}
