// Package secretbox encrypts the secrets pushsync keeps in Redis (APNs
// signing keys and certificates, FCM service-account keys, identity
// credentials) with AES-256-GCM under a master key. Every sealed value is
// bound to a context string, such as the record's name, so that a sealed
// value copied onto another record does not open.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of a master key in bytes.
const KeySize = 32

const prefix = "sb1:"

// ErrOpen is returned for a value that does not open: a wrong master key,
// another record's value, or damaged data.
var ErrOpen = errors.New("secretbox: cannot decrypt (wrong master key or damaged value)")

// Box seals and opens values. It is safe for concurrent use.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a 32-byte master key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: master key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// NewRandom returns a Box with a fresh random key, for processes whose
// stored secrets need not outlive them.
func NewRandom() *Box {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	b, _ := New(key)
	return b
}

// Seal encrypts plaintext bound to context and returns printable text.
func (b *Box) Seal(plaintext []byte, context string) string {
	nonce := make([]byte, b.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := b.aead.Seal(nonce, nonce, plaintext, []byte(context))
	return prefix + base64.RawStdEncoding.EncodeToString(out)
}

// Open decrypts a value Seal returned for the same context.
func (b *Box) Open(sealed, context string) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, ErrOpen
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(raw) < b.aead.NonceSize() {
		return nil, ErrOpen
	}
	n := b.aead.NonceSize()
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(context))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// IsSealed reports whether v has the form Seal produces.
func IsSealed(v string) bool { return strings.HasPrefix(v, prefix) }
