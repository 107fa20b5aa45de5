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

func TestRotation(t *testing.T) {
	oldKey, newKey, otherKey := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize), bytes.Repeat([]byte{3}, KeySize)
	old, err := New(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("service account")
	underOld := old.Seal(secret, "app:android")

	rotating, err := New(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotating.Open(underOld, "app:android"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the new key with the old as previous opens a value under the old: %q, %v", got, err)
	}
	if _, err := rotating.Open(underOld, "app:ios"); !errors.Is(err, ErrOpen) {
		t.Fatalf("a previous key opens a value under another context: %v", err)
	}
	resealed, moved, err := rotating.Reseal(underOld, "app:android")
	if err != nil || !moved || resealed == underOld {
		t.Fatalf("Reseal of a value under the previous key: moved %v, %v", moved, err)
	}
	newOnly, err := New(newKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := newOnly.Open(resealed, "app:android"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the resealed value does not open under the new key alone: %q, %v", got, err)
	}
	if _, err := newOnly.Open(underOld, "app:android"); !errors.Is(err, ErrOpen) {
		t.Fatalf("the new key alone opens a value under the old: %v", err)
	}
	if again, moved, err := rotating.Reseal(resealed, "app:android"); err != nil || moved || again != resealed {
		t.Fatalf("Reseal of a value under the current key: moved %v, changed %v, %v", moved, again != resealed, err)
	}
	// Sealing uses only the current key.
	if _, err := old.Open(rotating.Seal(secret, "app:android"), "app:android"); !errors.Is(err, ErrOpen) {
		t.Fatalf("a value sealed during the rotation opens under the old key: %v", err)
	}
	stranger, err := New(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rotating.Reseal(stranger.Seal(secret, "app:android"), "app:android"); !errors.Is(err, ErrOpen) {
		t.Fatalf("Reseal of a value under neither key: %v", err)
	}
	if _, err := New(newKey, newKey); err == nil {
		t.Fatal("the current key was accepted as a previous one")
	}
	if _, err := New(newKey, make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "previous key 1") {
		t.Fatalf("a 16-byte previous key: %v", err)
	}
}
