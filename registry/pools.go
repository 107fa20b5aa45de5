package registry

// Identity pools and identities: what pushsync's Cognito Identity endpoint
// (package sync/identity) answers GetId and GetCredentialsForIdentity from.
//
// Key schema, under the registry's prefix P:
//
//	P:{config}                        hash, operator configuration (see registry.go)
//	    ipool:<poolId>                -> identity pool JSON
//	P:{ident:<identityId>}            hash, one per identity
//	    pool                          -> the identity pool id
//	    created                       -> creation time, unix ms
//	    l:<issuer>|<sub>              -> linked at, unix ms; one field per login
//	P:login:{<poolId>|<issuer>|<sub>} string -> the identity id of that login
//
// A login key is written once, with SET NX, after the identity it names
// exists, so concurrent first logins of one user agree on one identity; the
// losers delete the identity they had prepared. Each key is read or
// written on its own, so keys of one identity need no common hash tag with
// its login keys. Issuers hold no '|' (CreateIdentityPool refuses them), so
// "issuer|sub" splits at its first '|'.
//
// LinkLogin links a login to an unauthenticated identity the other way
// round: the login key first, with SET NX, naming the identity, then the
// identity's login field. The login key decides which identity a login
// belongs to; a login key whose identity lacks the field (a link cut short)
// is completed by the next link or GetCredentialsForIdentity of that login.
// An identity has at most one login.
//
// Deleting an identity pool leaves its identities and login keys in place,
// unreachable while no pool of that id exists, and marks the deletion in
// the configuration (deleted:<poolId> -> when). While that mark is there a
// pool of that id is created only as a restore (RestoreIdentityPool),
// which finds them again; PurgeIdentityPool erases them, and everything
// else kept of the deleted pool, for good, and removes the mark.
// Credentials carry their pool's creation time, so those issued before the
// deletion do not work in the restored pool.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/sync/cognito"
)

// Errors about identity pools and identities; match them with errors.Is.
var (
	// ErrPoolNotFound is returned for an identity pool id that names no pool.
	ErrPoolNotFound = errors.New("identity pool not found")
	// ErrPoolExists is returned when creating a pool with an id in use.
	ErrPoolExists = errors.New("identity pool already exists")
	// ErrPurgeUnfinished is returned when creating a pool with the id of a
	// deleted pool whose purge started and has not finished.
	ErrPurgeUnfinished = errors.New("the purge of a deleted identity pool of that id is unfinished")
	// ErrDeletedPoolData is returned when creating a pool, not as a
	// restore, with the id of a deleted pool whose data was not purged.
	ErrDeletedPoolData = errors.New("a deleted identity pool of that id left its identities and data")
	// ErrInvalidPool is wrapped by every validation error of a pool.
	ErrInvalidPool = errors.New("invalid identity pool")
	// ErrIdentityNotFound is returned for an identity id that names no
	// identity.
	ErrIdentityNotFound = errors.New("identity not found")
	// ErrIdentityHasLogin is returned when linking a login to an identity
	// that has another one.
	ErrIdentityHasLogin = errors.New("the identity has another login")
)

// Limits of an identity pool's configuration and of logins.
const (
	maxPoolName        = 128  // characters
	maxProviders       = 50   // OpenID Connect providers per pool
	maxClientIDs       = 100  // per provider
	maxClientIDLen     = 255  // bytes
	maxProviderNameLen = 128  // bytes, Cognito's IdentityProviderName limit
	maxURLLen          = 2048 // bytes
	maxSubjectLen      = 1024 // bytes
)

// IdentityPool is an identity pool: the apps whose users get identities,
// and credentials, from pushsync's Cognito Identity endpoint.
type IdentityPool struct {
	// ID is the pool id, "<region>:<uuid>".
	ID string `json:"id"`
	// Name is 1 to 128 printable characters.
	Name string `json:"name"`
	// AllowUnauthenticated lets GetId hand out identities without a login.
	AllowUnauthenticated bool `json:"allowUnauthenticated"`
	// OpenIDProviders are the OpenID Connect providers whose ID tokens
	// authenticate users of the pool.
	OpenIDProviders []OpenIDProvider `json:"openIdProviders,omitempty"`
	// CreatedAt is set by CreateIdentityPool.
	CreatedAt time.Time `json:"createdAt"`
}

// OpenIDProvider is an OpenID Connect provider trusted by an identity pool.
type OpenIDProvider struct {
	// Issuer is the provider's issuer URL exactly as its ID tokens carry it
	// in the iss claim: an absolute https URL (http only on 127.0.0.1,
	// [::1] or localhost, for tests).
	Issuer string `json:"issuer"`
	// ClientIDs are the accepted aud values; at least one.
	ClientIDs []string `json:"clientIds"`
	// JWKSURL is where the provider publishes its signing keys. If not
	// set, Issuer + "/.well-known/jwks.json".
	JWKSURL string `json:"jwksUrl,omitempty"`
}

// Name returns the provider's name as Cognito Identity clients give it as
// the key of Logins: the issuer without its scheme, such as
// "accounts.example.com" or "127.0.0.1:8443/realm".
func (p OpenIDProvider) Name() string {
	if rest, ok := strings.CutPrefix(p.Issuer, "https://"); ok {
		return rest
	}
	return strings.TrimPrefix(p.Issuer, "http://")
}

// KeysURL returns the URL of the provider's JSON Web Key Set: JWKSURL, or
// the issuer's /.well-known/jwks.json if that is not set.
func (p OpenIDProvider) KeysURL() string {
	if p.JWKSURL != "" {
		return p.JWKSURL
	}
	return strings.TrimSuffix(p.Issuer, "/") + "/.well-known/jwks.json"
}

// Provider returns the pool's OpenID Connect provider of the given name (see
// OpenIDProvider.Name), and whether there is one. A name matches an issuer
// that ends in "/" with or without it (Auth0's issuers end in one, and apps
// name the provider "tenant.auth0.com"); an exact match comes first.
func (p *IdentityPool) Provider(name string) (OpenIDProvider, bool) {
	for _, op := range p.OpenIDProviders {
		if op.Name() == name {
			return op, true
		}
	}
	for _, op := range p.OpenIDProviders {
		if strings.TrimSuffix(op.Name(), "/") == strings.TrimSuffix(name, "/") {
			return op, true
		}
	}
	return OpenIDProvider{}, false
}

// Region returns the region part of the pool id, the text before ':'.
func (p *IdentityPool) Region() string {
	region, _, _ := strings.Cut(p.ID, ":")
	return region
}

// Validate checks the pool's name and providers, and its id if set.
// Errors wrap ErrInvalidPool.
func (p *IdentityPool) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidPool, fmt.Sprintf(format, args...))
	}
	if p.ID != "" {
		if err := cognito.ValidateIdentityPoolID(p.ID); err != nil {
			return bad("%v", err)
		}
	}
	if n := utf8.RuneCountInString(p.Name); n == 0 || n > maxPoolName || !utf8.ValidString(p.Name) ||
		strings.IndexFunc(p.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return bad("name %q must be 1 to %d printable characters", p.Name, maxPoolName)
	}
	if len(p.OpenIDProviders) > maxProviders {
		return bad("at most %d OpenID Connect providers, got %d", maxProviders, len(p.OpenIDProviders))
	}
	names := make(map[string]bool, len(p.OpenIDProviders))
	for i, op := range p.OpenIDProviders {
		if err := checkProviderURL(op.Issuer); err != nil {
			return bad("provider %d: issuer %q: %v", i, op.Issuer, err)
		}
		u, _ := url.Parse(op.Issuer)
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(op.Issuer, "#") {
			return bad("provider %d: issuer %q must have no query or fragment", i, op.Issuer)
		}
		if strings.Contains(op.Issuer, "|") {
			return bad("provider %d: issuer %q must not contain '|'", i, op.Issuer)
		}
		name := op.Name()
		if len(name) > maxProviderNameLen {
			return bad("provider %d: the provider name %q (the issuer without https://) is longer than %d bytes", i, name, maxProviderNameLen)
		}
		if names[name] {
			return bad("provider %d: issuer %q is given twice", i, op.Issuer)
		}
		names[name] = true
		if op.JWKSURL != "" {
			if err := checkProviderURL(op.JWKSURL); err != nil {
				return bad("provider %d: jwksUrl %q: %v", i, op.JWKSURL, err)
			}
		}
		if len(op.ClientIDs) == 0 || len(op.ClientIDs) > maxClientIDs {
			return bad("provider %d (%s): needs 1 to %d client ids, got %d", i, op.Issuer, maxClientIDs, len(op.ClientIDs))
		}
		for _, id := range op.ClientIDs {
			if id == "" || len(id) > maxClientIDLen || strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) >= 0 {
				return bad("provider %d (%s): client id %q must be 1 to %d printable characters without spaces", i, op.Issuer, id, maxClientIDLen)
			}
		}
	}
	return nil
}

// checkProviderURL accepts an absolute https URL, or an http URL of a
// loopback host.
func checkProviderURL(s string) error {
	if len(s) > maxURLLen {
		return fmt.Errorf("longer than %d bytes", maxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" || u.Hostname() == "" || u.User != nil || u.Opaque != "" {
		return errors.New("must be an absolute URL with a host and no user information")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return errors.New("http is allowed only for 127.0.0.1, [::1] and localhost; use https")
	}
	return errors.New("must be an https URL")
}

// isLoopbackHost reports whether host (without port) names the local
// machine: localhost or a loopback IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func poolField(id string) string { return "ipool:" + id }

// purgingField marks, in the configuration, a purge of a deleted pool's
// data that has begun and not finished.
func purgingField(id string) string { return "purging:" + id }

// purgeCursorField keeps, in the configuration, the cursor of an
// unfinished purge of a deleted pool's data, for a step given none.
func purgeCursorField(id string) string { return "purgecursor:" + id }

// deletedField marks, in the configuration, a deleted pool whose data is
// neither purged nor restored; its value is when the pool was deleted.
func deletedField(id string) string { return "deleted:" + id }

// validRegion accepts region names such as us-east-1.
func validRegion(region string) bool {
	return region != "" && len(region) <= 25 && strings.IndexFunc(region, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}) < 0
}

// createPoolScript sets field ARGV[1] to ARGV[2] unless it exists (0), a
// purge of that pool's data is unfinished (-1, field ARGV[3]), or a deleted
// pool of that id left its data (-2, field ARGV[4]) and ARGV[5] is not "1"
// (a restore), which removes that mark.
var createPoolScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then return -1 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if ARGV[5] ~= '1' and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then return -2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[4])
return 1
`)

// CreateIdentityPool stores a new identity pool. Unless pool.ID is set, the
// id is "<region>:<random uuid>"; a set id must be valid and unused
// (ErrPoolExists otherwise), and not that of a deleted pool whose purge is
// unfinished (ErrPurgeUnfinished): a pool created then would find part of
// the old pool's data. Nor that of a deleted pool whose data is still
// there (ErrDeletedPoolData): the new pool would hand the old pool's users
// their identities and data back; RestoreIdentityPool is for that. It
// returns the pool as stored.
func (r *Registry) CreateIdentityPool(ctx context.Context, region string, pool IdentityPool) (IdentityPool, error) {
	return r.createPool(ctx, region, pool, false)
}

// RestoreIdentityPool is CreateIdentityPool for a pool of a given id that
// takes back what a deleted pool of that id left, if anything: its
// identities, logins, datasets and devices, as they were.
func (r *Registry) RestoreIdentityPool(ctx context.Context, pool IdentityPool) (IdentityPool, error) {
	if pool.ID == "" {
		return IdentityPool{}, fmt.Errorf("%w: the id of the pool to restore is required", ErrInvalidPool)
	}
	return r.createPool(ctx, "", pool, true)
}

func (r *Registry) createPool(ctx context.Context, region string, pool IdentityPool, restore bool) (IdentityPool, error) {
	if err := pool.Validate(); err != nil {
		return IdentityPool{}, err
	}
	generate := pool.ID == ""
	if generate && !validRegion(region) {
		return IdentityPool{}, fmt.Errorf("%w: region %q must be like us-east-1", ErrInvalidPool, region)
	}
	restoring := "0"
	if restore {
		restoring = "1"
	}
	pool.CreatedAt = r.now().UTC()
	for attempt := 0; ; attempt++ {
		if generate {
			pool.ID = region + ":" + uuid.NewString()
		}
		data, err := json.Marshal(&pool)
		if err != nil {
			return IdentityPool{}, err
		}
		n, err := createPoolScript.Run(ctx, r.rdb, []string{r.configKey()}, poolField(pool.ID), data, purgingField(pool.ID),
			deletedField(pool.ID), restoring).Int()
		if err != nil {
			return IdentityPool{}, fmt.Errorf("registry: create identity pool: %w", err)
		}
		switch n {
		case -1:
			return IdentityPool{}, fmt.Errorf("registry: %w: %s; finish it (pushsyncctl identitypool purge %[2]s) before creating the pool again", ErrPurgeUnfinished, pool.ID)
		case -2:
			return IdentityPool{}, fmt.Errorf("registry: %w: %s; purge them first for an empty pool (pushsyncctl identitypool purge %[2]s), or restore the pool to take them back (pushsyncctl identitypool create -id %[2]s -restore)",
				ErrDeletedPoolData, pool.ID)
		}
		if n == 1 {
			// What this process may still hold of a pool of that id
			// deleted through another one is void.
			r.pools.forget(pool.ID)
			return pool, nil
		}
		if !generate || attempt >= 2 {
			return IdentityPool{}, fmt.Errorf("registry: %w: %s", ErrPoolExists, pool.ID)
		}
	}
}

// IdentityPool returns an identity pool, or ErrPoolNotFound.
func (r *Registry) IdentityPool(ctx context.Context, id string) (IdentityPool, error) {
	if err := cognito.ValidateIdentityPoolID(id); err != nil {
		return IdentityPool{}, err
	}
	data, err := r.rdb.HGet(ctx, r.configKey(), poolField(id)).Result()
	if err == redis.Nil {
		return IdentityPool{}, fmt.Errorf("registry: %w: %s", ErrPoolNotFound, id)
	}
	if err != nil {
		return IdentityPool{}, fmt.Errorf("registry: get identity pool %s: %w", id, err)
	}
	return decodePool(id, data)
}

func decodePool(id, data string) (IdentityPool, error) {
	var p IdentityPool
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		return IdentityPool{}, fmt.Errorf("registry: identity pool %s has a corrupt record: %w", id, err)
	}
	return p, nil
}

// IdentityPools returns every identity pool, sorted by id.
func (r *Registry) IdentityPools(ctx context.Context) ([]IdentityPool, error) {
	all, err := r.rdb.HGetAll(ctx, r.configKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("registry: list identity pools: %w", err)
	}
	var pools []IdentityPool
	for f, v := range all {
		id, ok := strings.CutPrefix(f, "ipool:")
		if !ok {
			continue
		}
		p, err := decodePool(id, v)
		if err != nil {
			return nil, err
		}
		pools = append(pools, p)
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].ID < pools[j].ID })
	return pools, nil
}

// replacePoolScript sets field ARGV[1] to ARGV[2] only if it exists.
var replacePoolScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// UpdateIdentityPool replaces the name, unauthenticated access and
// providers of an existing identity pool (ErrPoolNotFound if there is
// none), keeping its creation time. It returns the pool as stored.
func (r *Registry) UpdateIdentityPool(ctx context.Context, pool IdentityPool) (IdentityPool, error) {
	if pool.ID == "" {
		return IdentityPool{}, fmt.Errorf("%w: the pool id is required", ErrInvalidPool)
	}
	if err := pool.Validate(); err != nil {
		return IdentityPool{}, err
	}
	old, err := r.IdentityPool(ctx, pool.ID)
	if err != nil {
		return IdentityPool{}, err
	}
	pool.CreatedAt = old.CreatedAt
	data, err := json.Marshal(&pool)
	if err != nil {
		return IdentityPool{}, err
	}
	n, err := replacePoolScript.Run(ctx, r.rdb, []string{r.configKey()}, poolField(pool.ID), data).Int()
	if err != nil {
		return IdentityPool{}, fmt.Errorf("registry: update identity pool %s: %w", pool.ID, err)
	}
	if n == 0 {
		return IdentityPool{}, fmt.Errorf("registry: %w: %s", ErrPoolNotFound, pool.ID)
	}
	return pool, nil
}

// deletePoolScript removes field ARGV[1] and, if it was there, sets field
// ARGV[2] to ARGV[3]; it returns whether it was there.
var deletePoolScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
`)

// DeleteIdentityPool removes an identity pool, or returns ErrPoolNotFound.
// Its identities stay stored but can get no credentials, until the pool is
// purged or restored (see RestoreIdentityPool).
func (r *Registry) DeleteIdentityPool(ctx context.Context, id string) error {
	n, err := deletePoolScript.Run(ctx, r.rdb, []string{r.configKey()}, poolField(id), deletedField(id),
		r.now().UTC().Format(time.RFC3339Nano)).Int()
	if err != nil {
		return fmt.Errorf("registry: delete identity pool %s: %w", id, err)
	}
	r.pools.forget(id)
	if n == 0 {
		return fmt.Errorf("registry: %w: %s", ErrPoolNotFound, id)
	}
	return nil
}

// IdentityRecord is what the registry knows of one identity.
type IdentityRecord struct {
	// ID is the identity id, "<region>:<uuid>".
	ID string
	// PoolID is the identity pool the identity belongs to.
	PoolID string
	// Logins are the logins linked to the identity, "issuer|sub", sorted.
	// An unauthenticated identity has none.
	Logins []string
	// CreatedAt is when the identity was created, to the millisecond.
	CreatedAt time.Time
}

// Authenticated reports whether the identity has a login.
func (rec *IdentityRecord) Authenticated() bool { return len(rec.Logins) > 0 }

// LoginName returns the form in which IdentityRecord.Logins lists a login.
func LoginName(issuer, subject string) string { return issuer + "|" + subject }

func (r *Registry) identityRecordKey(id string) string {
	return r.prefix + ":{ident:" + id + "}"
}

func (r *Registry) loginKey(pool, issuer, subject string) string {
	return r.prefix + ":login:{" + pool + "|" + issuer + "|" + subject + "}"
}

// createIdentityScript creates identity hash KEYS[1] with pool ARGV[1],
// creation time ARGV[2] and, if ARGV[3] is given, that login field. It
// returns 0 if the key exists.
var createIdentityScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'pool', ARGV[1], 'created', ARGV[2])
if ARGV[3] then redis.call('HSET', KEYS[1], ARGV[3], ARGV[2]) end
return 1
`)

// createIdentity stores a new identity of the pool, with the login field
// if login is not empty, and returns its id.
func (r *Registry) createIdentity(ctx context.Context, pool, login string) (string, error) {
	region, _, _ := strings.Cut(pool, ":")
	args := []any{pool, r.now().UnixMilli()}
	if login != "" {
		args = append(args, "l:"+login)
	}
	for range 3 {
		id := region + ":" + uuid.NewString()
		n, err := createIdentityScript.Run(ctx, r.rdb, []string{r.identityRecordKey(id)}, args...).Int()
		if err != nil {
			return "", fmt.Errorf("registry: create identity: %w", err)
		}
		if n == 1 {
			return id, nil
		}
	}
	return "", errors.New("registry: identity id collision, try again")
}

// CheckPool returns nil if the identity pool exists, and ErrPoolNotFound
// if it does not (never created, or deleted). It may answer from what it
// read within the registry's PoolCacheTTL (see Options); a pool it has not
// seen, or no longer holds, it reads.
func (r *Registry) CheckPool(ctx context.Context, pool string) error {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return err
	}
	if _, ok := r.pools.get(pool, r.now()); ok {
		return nil
	}
	_, exists, err := r.readPoolCreated(ctx, pool)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("registry: %w: %s", ErrPoolNotFound, pool)
	}
	return nil
}

// readPoolCreated reads the creation time of an identity pool, and whether
// it exists, and keeps it for CheckPool and CredentialInPool.
func (r *Registry) readPoolCreated(ctx context.Context, pool string) (time.Time, bool, error) {
	gen := r.pools.generation()
	data, err := r.rdb.HGet(ctx, r.configKey(), poolField(pool)).Result()
	return r.notePool(pool, data, err, gen)
}

// notePool decodes the result of reading an identity pool's record (data,
// err) by a read that began at cache generation gen, and keeps the
// creation time of a pool that exists.
func (r *Registry) notePool(pool, data string, err error, gen uint64) (created time.Time, exists bool, _ error) {
	switch {
	case err == redis.Nil:
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("registry: get identity pool %s: %w", pool, err)
	}
	p, err := decodePool(pool, data)
	if err != nil {
		return time.Time{}, false, err
	}
	r.pools.put(pool, p.CreatedAt, gen, r.now())
	return p.CreatedAt, true, nil
}

// requirePool is CheckPool reading Redis every time: an identity is created
// only in a pool that exists now.
func (r *Registry) requirePool(ctx context.Context, pool string) error {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return err
	}
	ok, err := r.rdb.HExists(ctx, r.configKey(), poolField(pool)).Result()
	if err != nil {
		return fmt.Errorf("registry: get identity pool %s: %w", pool, err)
	}
	if !ok {
		return fmt.Errorf("registry: %w: %s", ErrPoolNotFound, pool)
	}
	return nil
}

// NewIdentity creates an unauthenticated identity in an existing pool and
// returns its id, "<pool's region>:<random uuid>". Whether the pool allows
// unauthenticated identities is the caller's to check.
func (r *Registry) NewIdentity(ctx context.Context, pool string) (string, error) {
	if err := r.requirePool(ctx, pool); err != nil {
		return "", err
	}
	return r.createIdentity(ctx, pool, "")
}

// IdentityForLogin returns the identity of a verified login (the issuer and
// sub claim of an ID token) in an existing pool, creating it on the first
// login; created says whether it did. The same pool, issuer and subject
// always give the same identity, also when first logins race. A first
// login finding the pool deleted once its login key is set drops the key
// and its identity (ErrPoolNotFound), as a link does: a purge may have
// passed over it.
func (r *Registry) IdentityForLogin(ctx context.Context, pool, issuer, subject string) (identityID string, created bool, err error) {
	if err := r.requirePool(ctx, pool); err != nil {
		return "", false, err
	}
	if err := checkLogin(issuer, subject); err != nil {
		return "", false, err
	}
	lk := r.loginKey(pool, issuer, subject)
	id, err := r.rdb.Get(ctx, lk).Result()
	if err == nil {
		return id, false, nil
	}
	if err != redis.Nil {
		return "", false, fmt.Errorf("registry: read login: %w", err)
	}
	id, err = r.createIdentity(ctx, pool, LoginName(issuer, subject))
	if err != nil {
		return "", false, err
	}
	ok, err := r.rdb.SetNX(ctx, lk, id, 0).Result()
	if err != nil {
		return "", false, fmt.Errorf("registry: store login: %w", err)
	}
	if ok {
		if err := r.recheckPool(ctx, pool, lk, id); err != nil {
			if errors.Is(err, ErrPoolNotFound) {
				r.rdb.Del(ctx, r.identityRecordKey(id))
			}
			return "", false, err
		}
		return id, true, nil
	}
	// Another first login of the same user won: drop ours, take theirs.
	if err := r.rdb.Del(ctx, r.identityRecordKey(id)).Err(); err != nil {
		return "", false, fmt.Errorf("registry: drop duplicate identity: %w", err)
	}
	id, err = r.rdb.Get(ctx, lk).Result()
	if err != nil {
		return "", false, fmt.Errorf("registry: read login: %w", err)
	}
	return id, false, nil
}

// recheckPool reads the pool again after login key lk was set to name
// identity id: if the pool was deleted since it was checked, a purge may
// have passed over the key already, so the key is dropped and the error
// wraps ErrPoolNotFound. A key set while the pool still existed is one the
// purge of its deletion finds.
func (r *Registry) recheckPool(ctx context.Context, pool, lk, id string) error {
	err := r.requirePool(ctx, pool)
	if errors.Is(err, ErrPoolNotFound) {
		if derr := dropLoginScript.Run(ctx, r.rdb, []string{lk}, id).Err(); derr != nil {
			return fmt.Errorf("registry: drop login of deleted pool %s: %w", pool, derr)
		}
	}
	return err
}

// checkLogin checks the issuer and subject of a login.
func checkLogin(issuer, subject string) error {
	if issuer == "" || len(issuer) > maxURLLen || strings.Contains(issuer, "|") {
		return fmt.Errorf("registry: issuer %q must be 1 to %d bytes without '|'", issuer, maxURLLen)
	}
	if subject == "" || len(subject) > maxSubjectLen {
		return fmt.Errorf("registry: login subject must be 1 to %d bytes, got %d", maxSubjectLen, len(subject))
	}
	return nil
}

// markLoginScript gives identity hash KEYS[1], of pool ARGV[1], the login
// field ARGV[2], set to ARGV[3], unless it has a login field already. It
// returns 1 if the identity has that login now, 0 if it has another one,
// -1 if there is no such identity and -2 if it is of another pool.
var markLoginScript = redis.NewScript(`
local pool = redis.call('HGET', KEYS[1], 'pool')
if not pool then return -1 end
if pool ~= ARGV[1] then return -2 end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) == 'l:' then
    if f == ARGV[2] then return 1 end
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
`)

// dropLoginScript deletes login key KEYS[1] if it still names identity
// ARGV[1].
var dropLoginScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// LinkLogin links a verified login (the issuer and sub claim of an ID
// token) of an existing pool to the unauthenticated identity identityID
// of that pool, and returns the identity the login belongs to then: the
// identity itself, or the one the login was linked to already (a login
// with an identity of its own keeps it; the two are not merged). Of
// concurrent links of one login to several identities, one wins and the
// others return the winner. It returns ErrIdentityHasLogin, and links
// nothing, if the identity has another login, and ErrIdentityNotFound if
// there is no such identity in the pool. Linking the login the identity
// has already returns the identity.
func (r *Registry) LinkLogin(ctx context.Context, identityID, pool, issuer, subject string) (string, error) {
	if err := cognito.ValidateIdentityID(identityID); err != nil {
		return "", err
	}
	if err := r.requirePool(ctx, pool); err != nil {
		return "", err
	}
	if err := checkLogin(issuer, subject); err != nil {
		return "", err
	}
	lk := r.loginKey(pool, issuer, subject)
	field := "l:" + LoginName(issuer, subject)
	for range 3 {
		owner := identityID
		ok, err := r.rdb.SetNX(ctx, lk, identityID, 0).Result()
		if err != nil {
			return "", fmt.Errorf("registry: store login: %w", err)
		}
		if !ok {
			owner, err = r.rdb.Get(ctx, lk).Result()
			if err == redis.Nil {
				continue // unlinked since: try again
			}
			if err != nil {
				return "", fmt.Errorf("registry: read login: %w", err)
			}
		}
		// Give the login's identity its login field, also when another
		// link or a first login set the key: the key may have been set by
		// a link cut short before the field was written.
		n, err := markLoginScript.Run(ctx, r.rdb, []string{r.identityRecordKey(owner)}, pool, field, r.now().UnixMilli()).Int()
		if err != nil {
			return "", fmt.Errorf("registry: link login to identity %s: %w", owner, err)
		}
		switch {
		case n == 1 && ok:
			if err := r.recheckPool(ctx, pool, lk, owner); err != nil {
				return "", err
			}
			return owner, nil
		case n == 1:
			return owner, nil
		case n == -2 && owner != identityID:
			return "", fmt.Errorf("registry: login of pool %s names identity %s of another pool", pool, owner)
		}
		// The key names an identity that has another login (linked to it
		// since it was read as unauthenticated), is gone, or is not of the
		// pool: the login is not that identity's; take the key back.
		if err := dropLoginScript.Run(ctx, r.rdb, []string{lk}, owner).Err(); err != nil {
			return "", fmt.Errorf("registry: drop login: %w", err)
		}
		if owner == identityID {
			if n == 0 {
				return "", fmt.Errorf("registry: %w: %s", ErrIdentityHasLogin, identityID)
			}
			return "", fmt.Errorf("registry: %w: %s in pool %s", ErrIdentityNotFound, identityID, pool)
		}
	}
	return "", fmt.Errorf("registry: link login to identity %s: the login changed hands too often, try again", identityID)
}

// Identity returns the record of an identity, or ErrIdentityNotFound.
func (r *Registry) Identity(ctx context.Context, identityID string) (IdentityRecord, error) {
	if err := cognito.ValidateIdentityID(identityID); err != nil {
		return IdentityRecord{}, err
	}
	all, err := r.rdb.HGetAll(ctx, r.identityRecordKey(identityID)).Result()
	if err != nil {
		return IdentityRecord{}, fmt.Errorf("registry: get identity %s: %w", identityID, err)
	}
	if len(all) == 0 {
		return IdentityRecord{}, fmt.Errorf("registry: %w: %s", ErrIdentityNotFound, identityID)
	}
	rec := IdentityRecord{ID: identityID, PoolID: all["pool"]}
	ms, err := strconv.ParseInt(all["created"], 10, 64)
	if rec.PoolID == "" || err != nil {
		return IdentityRecord{}, fmt.Errorf("registry: identity %s has a corrupt record", identityID)
	}
	rec.CreatedAt = time.UnixMilli(ms)
	for f := range all {
		if login, ok := strings.CutPrefix(f, "l:"); ok {
			rec.Logins = append(rec.Logins, login)
		}
	}
	sort.Strings(rec.Logins)
	return rec, nil
}
