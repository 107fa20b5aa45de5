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
	// PoolCreatedAt is the creation time of the identity pool when the
	// credential was issued, if the registry held the pool then; zero for
	// a credential of a pool the registry does not hold. A credential with
	// it is void once that pool is deleted (and if a pool of the same id is
	// created again): see CredentialInPool.
	PoolCreatedAt time.Time `json:"poolCreatedAt,omitzero"`
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

// ErrCredentialPoolDeleted is returned, with the credential, by
// CredentialInPool for a credential whose identity pool has been deleted
// since it was issued.
var ErrCredentialPoolDeleted = errors.New("its identity pool has been deleted")

// ErrCredentialUnreadable is returned for a credential whose record no
// configured master key opens, or that is damaged: it can never be
// checked again, and its holder needs a new one.
var ErrCredentialUnreadable = errors.New("no configured master key opens its record")

// IssueCredential mints a credential for an identity, valid for ttl. The
// record leaves Redis an hour after the credential expires. If the registry
// holds the identity pool, the credential is bound to it: deleting the pool
// voids the credential.
func (r *Registry) IssueCredential(ctx context.Context, pool, identity string, ttl time.Duration) (IdentityCredential, error) {
	return r.issueCredential(ctx, pool, identity, ttl, false)
}

// IssuePoolCredential is IssueCredential for an identity pool the registry
// holds: it returns ErrPoolNotFound, and stores nothing, if the pool does
// not exist when the credential is minted, so that the credential is
// always bound to the pool (a pool deleted just before, however recently
// a caller saw it, gets no credential that outlives it).
func (r *Registry) IssuePoolCredential(ctx context.Context, pool, identity string, ttl time.Duration) (IdentityCredential, error) {
	return r.issueCredential(ctx, pool, identity, ttl, true)
}

func (r *Registry) issueCredential(ctx context.Context, pool, identity string, ttl time.Duration, bound bool) (IdentityCredential, error) {
	if err := validateIdentity(pool, identity); err != nil {
		return IdentityCredential{}, err
	}
	if ttl < time.Second {
		return IdentityCredential{}, fmt.Errorf("registry: credential lifetime %s is too short", ttl)
	}
	var poolCreated time.Time
	switch p, err := r.IdentityPool(ctx, pool); {
	case err == nil:
		poolCreated = p.CreatedAt
	case bound || !errors.Is(err, ErrPoolNotFound):
		return IdentityCredential{}, err
	}
	c := IdentityCredential{
		AccessKeyID:     "ASIA" + base32.StdEncoding.EncodeToString(random(10)), // 16 characters, like AWS's
		SecretAccessKey: base64.RawStdEncoding.EncodeToString(random(30)),       // 40 characters
		SessionToken:    base64.RawStdEncoding.EncodeToString(random(96)),
		IdentityPoolID:  pool,
		IdentityID:      identity,
		Expiration:      r.now().Add(ttl).UTC().Truncate(time.Second),
		PoolCreatedAt:   poolCreated,
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
	return r.decodeCredential(accessKeyID, stored, err)
}

// CredentialInPool is Credential for a request about identity pool pool:
// in the same round trip to Redis it reads that pool, and if the
// credential is bound to it (see IdentityCredential.PoolCreatedAt) but the
// pool has been deleted since, it returns the credential with
// ErrCredentialPoolDeleted, so that the caller can check the request's
// signature before it refuses the credential. A credential of another pool
// is returned unchecked: it may not act in pool anyway. Within the
// registry's PoolCacheTTL of reading a pool it reads only the credential,
// and takes the pool's creation time from that read (see Options).
func (r *Registry) CredentialInPool(ctx context.Context, accessKeyID, pool string) (IdentityCredential, error) {
	if pool == "" {
		return r.Credential(ctx, accessKeyID)
	}
	if created, ok := r.pools.get(pool, r.now()); ok {
		c, err := r.Credential(ctx, accessKeyID)
		if !boundTo(c, err, pool) || created.Equal(c.PoolCreatedAt) {
			return c, err
		}
		// Bound to another pool of that id than the one this process
		// read: read it again, for it may have been created again since.
		current, exists, perr := r.readPoolCreated(ctx, pool)
		if perr != nil {
			return IdentityCredential{}, perr
		}
		return inPool(accessKeyID, pool, c, err, current, exists)
	}
	gen := r.pools.generation()
	var cred *redis.StringCmd
	var poolRec *redis.StringCmd
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cred = p.Get(ctx, r.credentialKey(accessKeyID))
		poolRec = p.HGet(ctx, r.configKey(), poolField(pool))
		return nil
	})
	c, err := r.decodeCredential(accessKeyID, cred.Val(), cred.Err())
	created, exists, perr := r.notePool(pool, poolRec.Val(), poolRec.Err(), gen)
	if !boundTo(c, err, pool) {
		return c, err
	}
	if perr != nil {
		return IdentityCredential{}, perr
	}
	return inPool(accessKeyID, pool, c, err, created, exists)
}

// boundTo reports whether the credential Credential returned as (c, err)
// is one that is bound to identity pool pool, to be checked against it.
func boundTo(c IdentityCredential, err error, pool string) bool {
	return (err == nil || errors.Is(err, ErrCredentialExpired)) && !c.PoolCreatedAt.IsZero() && c.IdentityPoolID == pool
}

// inPool checks a credential bound to identity pool pool, as Credential
// returned it (c, err), against the pool as read: whether it exists, and
// when it was created.
func inPool(accessKeyID, pool string, c IdentityCredential, err error, created time.Time, exists bool) (IdentityCredential, error) {
	if exists && created.Equal(c.PoolCreatedAt) {
		return c, err
	}
	if err != nil { // expired as well: the SDK's refresh then meets the deletion
		return c, err
	}
	return c, fmt.Errorf("registry: credential %s: %w (%s)", accessKeyID, ErrCredentialPoolDeleted, pool)
}

func (r *Registry) decodeCredential(accessKeyID, stored string, err error) (IdentityCredential, error) {
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
