// Package secretbox encrypts the secrets pushsync keeps in Redis (APNs
// signing keys and certificates, FCM service-account keys, identity
// credentials) with AES-256-GCM under a master key. Every sealed value is
// bound to a context string, such as the record's name, so that a sealed
// value copied onto another record does not open.
//
// A Box may also hold other master keys, while a rotation is under way: it
// opens values sealed under any of them, seals only under the current one,
// and Reseal moves a value from another key to the current one.
package secretbox

import (
	"bytes"
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
type Box struct {
	aead cipher.AEAD
	// previous open values sealed under the keys the current one replaced.
	previous []cipher.AEAD
}

// New returns a Box that seals under a 32-byte master key and opens values
// sealed under it or under any of the previous keys.
func New(key []byte, previous ...[]byte) (*Box, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: master key: %w", err)
	}
	b := &Box{aead: aead}
	for i, k := range previous {
		if bytes.Equal(k, key) {
			return nil, fmt.Errorf("secretbox: previous key %d is the current key", i+1)
		}
		a, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("secretbox: previous key %d: %w", i+1, err)
		}
		b.previous = append(b.previous, a)
	}
	return b, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
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

// Open decrypts a value Seal returned for the same context, under the
// current key or a previous one.
func (b *Box) Open(sealed, context string) ([]byte, error) {
	plain, _, err := b.open(sealed, context)
	return plain, err
}

// Others returns how many keys besides the current one the box opens under.
func (b *Box) Others() int { return len(b.previous) }

// Reseal returns sealed under the current key. A value already under it is
// returned as it is, with moved false; one under a previous key is opened
// and sealed again, with moved true. A value no key opens is ErrOpen.
func (b *Box) Reseal(sealed, context string) (resealed string, moved bool, err error) {
	plain, current, err := b.open(sealed, context)
	if err != nil {
		return "", false, err
	}
	if current {
		return sealed, false, nil
	}
	return b.Seal(plain, context), true, nil
}

// open decrypts sealed and reports whether the current key opened it.
func (b *Box) open(sealed, context string) (plain []byte, current bool, err error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, false, ErrOpen
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	n := b.aead.NonceSize() // the same for every key: GCM's standard nonce
	if err != nil || len(raw) < n {
		return nil, false, ErrOpen
	}
	if plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(context)); err == nil {
		return plain, true, nil
	}
	for _, a := range b.previous {
		if plain, err := a.Open(nil, raw[:n], raw[n:], []byte(context)); err == nil {
			return plain, false, nil
		}
	}
	return nil, false, ErrOpen
}

// IsSealed reports whether v has the form Seal produces.
func IsSealed(v string) bool { return strings.HasPrefix(v, prefix) }
