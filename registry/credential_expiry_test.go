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

// An expired credential stays known for an hour, so that a request signed
// with it can be told it expired; after that it is unknown.
func TestExpiredCredentialStaysKnownForAnHour(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	now := time.Now()
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), Now: func() time.Time { return now }})
	ctx := context.Background()
	c, err := r.IssueCredential(ctx, pool, identity, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, prefix+":cred:{"+c.AccessKeyID+"}").Val(); ttl <= time.Hour || ttl > time.Hour+15*time.Minute {
		t.Errorf("the record lives %v, want 15 minutes and an hour", ttl)
	}

	now = c.Expiration
	got, err := r.Credential(ctx, c.AccessKeyID)
	if !errors.Is(err, registry.ErrCredentialExpired) || !errors.Is(err, registry.ErrNoCredential) || got != c {
		t.Errorf("at its expiry: %+v, %v; want the credential with ErrCredentialExpired", got, err)
	}
	now = c.Expiration.Add(time.Hour - time.Second)
	if got, err := r.Credential(ctx, c.AccessKeyID); !errors.Is(err, registry.ErrCredentialExpired) || got != c {
		t.Errorf("59:59 after its expiry: %+v, %v; want the credential with ErrCredentialExpired", got, err)
	}
	now = c.Expiration.Add(time.Hour)
	if got, err := r.Credential(ctx, c.AccessKeyID); !errors.Is(err, registry.ErrNoCredential) || errors.Is(err, registry.ErrCredentialExpired) || got != (registry.IdentityCredential{}) {
		t.Errorf("an hour after its expiry: %+v, %v; want ErrNoCredential alone", got, err)
	}
}
