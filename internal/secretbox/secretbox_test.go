package secretbox

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	b := NewRandom()
	secret := []byte("-----BEGIN PRIVATE KEY-----\nMIG...\n")
	s1, s2 := b.Seal(secret, "app:ios"), b.Seal(secret, "app:ios")
	if s1 == s2 {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	if strings.Contains(s1, "PRIVATE") || !IsSealed(s1) {
		t.Fatalf("sealed value %q", s1)
	}
	got, err := b.Open(s1, "app:ios")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open: %q, %v", got, err)
	}
	if _, err := b.Open(s1, "app:android"); !errors.Is(err, ErrOpen) {
		t.Fatalf("open under another context: %v", err)
	}
	if _, err := NewRandom().Open(s1, "app:ios"); !errors.Is(err, ErrOpen) {
		t.Fatalf("open with another key: %v", err)
	}
	tampered := s1[:len(s1)-2] + "AA"
	if _, err := b.Open(tampered, "app:ios"); !errors.Is(err, ErrOpen) {
		t.Fatalf("open of a tampered value: %v", err)
	}
	for _, junk := range []string{"", "sb1:", "sb1:!!", "{\"plain\":true}"} {
		if _, err := b.Open(junk, "app:ios"); !errors.Is(err, ErrOpen) {
			t.Fatalf("open of %q: %v", junk, err)
		}
	}
	if _, err := New(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}
