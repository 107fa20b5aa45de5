package registry

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// IdentityCredential is a temporary AWS-style credential bound to one
// identity: requests signed with it may act only for that identity.
type IdentityCredential struct {
	AccessKeyID     string    `json:"accessKeyId"`
	SecretAccessKey string    `json:"secretAccessKey"`
	SessionToken    string    `json:"sessionToken"`
	IdentityPoolID  string    `json:"identityPoolId"`
	IdentityID      string    `json:"identityId"`
	Expiration      time.Time `json:"expiration"`
}

func (r *Registry) credentialKey(accessKeyID string) string {
	return r.prefix + ":cred:{" + accessKeyID + "}"
}

// credentialGrace is how long a credential's record stays in Redis after
// the credential expires, so that a request signed with it is told that
// it expired (which makes AWS SDKs fetch new credentials and retry) rather
// than that it is unknown (which they do not retry).
const credentialGrace = time.Hour

// ErrCredentialExpired is returned, wrapping ErrNoCredential, for a
// credential that has expired.
var ErrCredentialExpired = fmt.Errorf("%w: it has expired", ErrNoCredential)

// ErrCredentialUnreadable is returned for a credential whose record no
// configured master key opens, or that is damaged: it can never be
// checked again, and its holder needs a new one.
var ErrCredentialUnreadable = errors.New("no configured master key opens its record")

// IssueCredential mints a credential for an identity, valid for ttl. The
// record leaves Redis an hour after the credential expires.
func (r *Registry) IssueCredential(ctx context.Context, pool, identity string, ttl time.Duration) (IdentityCredential, error) {
	if err := validateIdentity(pool, identity); err != nil {
		return IdentityCredential{}, err
	}
	if ttl < time.Second {
		return IdentityCredential{}, fmt.Errorf("registry: credential lifetime %s is too short", ttl)
	}
	c := IdentityCredential{
		AccessKeyID:     "ASIA" + base32.StdEncoding.EncodeToString(random(10)), // 16 characters, like AWS's
		SecretAccessKey: base64.RawStdEncoding.EncodeToString(random(30)),       // 40 characters
		SessionToken:    base64.RawStdEncoding.EncodeToString(random(96)),
		IdentityPoolID:  pool,
		IdentityID:      identity,
		Expiration:      r.now().Add(ttl).UTC().Truncate(time.Second),
	}
	data, err := json.Marshal(&c)
	if err != nil {
		return IdentityCredential{}, err
	}
	ok, err := r.rdb.SetNX(ctx, r.credentialKey(c.AccessKeyID), r.seal(data, "cred:"+c.AccessKeyID), ttl+credentialGrace).Result()
	if err != nil {
		return IdentityCredential{}, fmt.Errorf("registry: store credential: %w", err)
	}
	if !ok {
		return IdentityCredential{}, fmt.Errorf("registry: access key id collision, try again")
	}
	return c, nil
}

// Credential returns the identity credential of an access key id, or
// ErrNoCredential if there is none. For a credential that has expired, up
// to an hour before, it returns the credential with ErrCredentialExpired,
// so that the caller can check the request's signature before it answers
// that the credential expired; one that expired longer ago is none. A
// record that cannot be opened or read is ErrCredentialUnreadable.
func (r *Registry) Credential(ctx context.Context, accessKeyID string) (IdentityCredential, error) {
	stored, err := r.rdb.Get(ctx, r.credentialKey(accessKeyID)).Result()
	if err == redis.Nil {
		return IdentityCredential{}, fmt.Errorf("registry: %w: %s", ErrNoCredential, accessKeyID)
	}
	if err != nil {
		return IdentityCredential{}, fmt.Errorf("registry: get credential: %w", err)
	}
	data, err := r.open(stored, "cred:"+accessKeyID)
	if err != nil {
		return IdentityCredential{}, fmt.Errorf("registry: credential %s: %w (%w)", accessKeyID, ErrCredentialUnreadable, err)
	}
	var c IdentityCredential
	if err := json.Unmarshal(data, &c); err != nil {
		return IdentityCredential{}, fmt.Errorf("registry: credential %s: %w: it is corrupt: %w", accessKeyID, ErrCredentialUnreadable, err)
	}
	switch now := r.now(); {
	case !now.Before(c.Expiration.Add(credentialGrace)):
		return IdentityCredential{}, fmt.Errorf("registry: %w: %s expired at %s", ErrNoCredential, accessKeyID, c.Expiration.Format(time.RFC3339))
	case !now.Before(c.Expiration):
		return c, fmt.Errorf("registry: %s: %w at %s", accessKeyID, ErrCredentialExpired, c.Expiration.Format(time.RFC3339))
	}
	return c, nil
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
