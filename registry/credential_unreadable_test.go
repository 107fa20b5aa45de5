package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// A credential sealed under a master key the registry does not have is
// ErrCredentialUnreadable: it exists, but can never be checked again.
func TestCredentialUnderALostKeyIsUnreadable(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	lost := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	c, err := lost.IssueCredential(ctx, pool, identity, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	_, err = r.Credential(ctx, c.AccessKeyID)
	if !errors.Is(err, registry.ErrCredentialUnreadable) || errors.Is(err, registry.ErrNoCredential) {
		t.Errorf("credential under another master key: %v, want ErrCredentialUnreadable", err)
	}
	if !errors.Is(err, secretbox.ErrOpen) {
		t.Errorf("credential under another master key: %v, want the cause kept", err)
	}
}
