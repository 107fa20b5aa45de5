// Package registry keeps, in Redis, who gets a push: the devices of each
// identity with their platform and push token, the datasets each device is
// subscribed to, the platform apps (APNs and FCM credentials) operators
// register, and which app serves which platform in each identity pool.
//
// Key schema, under a configurable prefix P:
//
//	P:{<pool>/<identity>}:push  hash, one per identity
//	    d:<deviceId>  -> "<p>|<registered unix ms, base 36>|<subs>|<token>"
//	    b:<deviceId>  -> "<window start unix ms> <pushes in the window>" (push budget)
//	P:{<pool>/<identity>}:removed  hash, removals whose DeviceRemoved
//	                  event may not be published yet (see Removal)
//	P:{sweep:removed:<n>}  sorted sets, n from 0 to 31: the identities a
//	                  removal noted in the last seconds, or whose notes
//	                  wait for their events (internal/sweepindex)
//	P:{sweep:adopted:removed}  string: when the removal notes of a version
//	                  without the sweep index were last adopted into it
//	                  (AdoptUnindexedRemovals), RFC 3339
//	P:{config}        hash, operator configuration
//	    app:<name>    -> platform app JSON
//	    rev:<name>    -> the app's revision, raised on every change
//	    pool:<pool>   -> the pool's push configuration JSON
//
// In a device record, p is the platform in one letter (A: APNS,
// S: APNS_SANDBOX, G: GCM) and subs lists, space-separated and in
// subscription order, one "<dataset>=<n>" per dataset the device is
// subscribed to, n being the highest sync count pushed to the device for
// the dataset (0 before the first push). Dataset names hold no '|', ' ' or
// '='. An APNs (A or S) token is stored as raw bytes, its normalised hex
// decoded (32 bytes for the usual 64 hex digits), and is hex-encoded again
// on read; an FCM (G) token is stored as given. The token comes last
// because it may hold '|' (an FCM token may, raw APNs bytes may be any
// byte at all): a record is split at its first three '|' and everything
// after the third is the token, which nothing splits or searches. Keeping
// all of a device in one field keeps an identity's hash small: once a
// value exceeds hash-max-listpack-value (an FCM token does) the hash is a
// hash table, where every field costs a table entry and two allocations of
// its own.
//
// Every key of one identity carries the same hash tag, so registration,
// subscription and removal are single atomic Lua scripts that work the same
// on one Redis and on Redis Cluster.
package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/sync/cognito"
)

// Platform is a push platform as the Cognito Sync API names it.
type Platform string

// The platforms pushsync delivers to.
const (
	APNS        Platform = "APNS"
	APNSSandbox Platform = "APNS_SANDBOX"
	GCM         Platform = "GCM"
)

// Platforms lists every supported platform.
var Platforms = []Platform{APNS, APNSSandbox, GCM}

// ParsePlatform returns the platform named s. ADM, which the Cognito API
// also names, is refused: Amazon Device Messaging was shut down.
func ParsePlatform(s string) (Platform, error) {
	switch p := Platform(s); p {
	case APNS, APNSSandbox, GCM:
		return p, nil
	case "ADM":
		return "", &cognito.FieldError{Field: "Platform", Reason: "ADM is not supported; use APNS, APNS_SANDBOX or GCM"}
	default:
		return "", &cognito.FieldError{Field: "Platform", Reason: fmt.Sprintf("%q is not one of APNS, APNS_SANDBOX, GCM", s)}
	}
}

// Kind returns the kind of platform app that serves the platform.
func (p Platform) Kind() AppKind {
	if p == GCM {
		return KindFCM
	}
	return KindAPNs
}

// Device is one registered device of an identity.
type Device struct {
	// ID is the DeviceId pushsync generated when the device registered.
	ID string
	// Platform says where pushes to the device go.
	Platform Platform
	// Token is the push token, normalised (APNs tokens in lower-case hex).
	Token string
	// RegisteredAt is when the device last registered: registering its
	// token again moves it on.
	RegisteredAt time.Time
}

// code returns the one letter that stands for the platform in a device
// record.
func (p Platform) code() string {
	switch p {
	case APNS:
		return "A"
	case APNSSandbox:
		return "S"
	case GCM:
		return "G"
	}
	return ""
}

// platformOfCode reverses Platform.code.
func platformOfCode(c byte) (Platform, bool) {
	switch c {
	case 'A':
		return APNS, true
	case 'S':
		return APNSSandbox, true
	case 'G':
		return GCM, true
	}
	return "", false
}

// decodeDevice decodes the record v of device id,
// "<p>|<registered unix ms, base 36>|<subs>|<token>", and returns the
// device, its token in lower-case hex for APNs, and its subs, unparsed.
func decodeDevice(id, v string) (Device, string, error) {
	d, subs, err := decodeRecord(id, v)
	if err == nil && d.Platform.Kind() == KindAPNs {
		var b strings.Builder
		b.Grow(2 * len(d.Token))
		writeHex(&b, d.Token)
		d.Token = b.String()
	}
	return d, subs, err
}

// decodeRecord is decodeDevice leaving the token in its stored form: raw
// bytes for APNs. Everything after the third '|' is the token.
func decodeRecord(id, v string) (Device, string, error) {
	if len(v) < 2 || v[1] != '|' {
		return Device{}, "", corruptDevice(id, v)
	}
	platform, ok := platformOfCode(v[0])
	rest := v[2:]
	i := strings.IndexByte(rest, '|')
	if !ok || i <= 0 {
		return Device{}, "", corruptDevice(id, v)
	}
	ms, rest := rest[:i], rest[i+1:]
	i = strings.IndexByte(rest, '|')
	if i < 0 || i == len(rest)-1 {
		return Device{}, "", corruptDevice(id, v)
	}
	subs, token := rest[:i], rest[i+1:]
	msec, err := strconv.ParseInt(ms, 36, 64)
	if err != nil {
		return Device{}, "", corruptDevice(id, v)
	}
	return Device{ID: id, Platform: platform, Token: token, RegisteredAt: time.UnixMilli(msec)}, subs, nil
}

func corruptDevice(id, v string) error {
	return fmt.Errorf("registry: device %s has a corrupt record %q", id, v)
}

// storedToken returns the form in which a device record holds token, a
// token NormalizeToken accepted for platform p: for APNs the raw bytes its
// hex stands for, for FCM the token itself.
func storedToken(p Platform, token string) string {
	if p.Kind() != KindAPNs {
		return token
	}
	return rawAPNsToken(token)
}

// rawAPNsToken returns the bytes a normalised APNs token, lower-case hex,
// stands for; for a token that is not lower-case hex of even length, and so
// no normalised APNs token, it returns "", which no stored token equals.
func rawAPNsToken(token string) string {
	if len(token)%2 != 0 || strings.IndexFunc(token, notHex) >= 0 {
		return ""
	}
	raw, err := hex.DecodeString(token)
	if err != nil {
		return ""
	}
	return string(raw)
}

const hexDigits = "0123456789abcdef"

// writeHex writes the lower-case hex of the bytes of s to b.
func writeHex(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		b.WriteByte(hexDigits[s[i]>>4])
		b.WriteByte(hexDigits[s[i]&0xf])
	}
}

// Maximum lengths of push tokens, in bytes.
const (
	maxAPNsTokenHex = 200
	minAPNsTokenHex = 64
	maxFCMToken     = 4096
)

// NormalizeToken validates a push token for the platform and returns its
// canonical form. APNs tokens are hex and case-insensitive: spaces and the
// angle brackets of the old NSData description form are removed and the
// result is lower-cased. FCM registration tokens are opaque and kept as
// given, without surrounding white space.
func NormalizeToken(p Platform, token string) (string, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return "", &cognito.FieldError{Field: "Token", Reason: "must not be empty"}
	}
	if p.Kind() == KindAPNs {
		t := strings.Map(func(r rune) rune {
			switch {
			case r == ' ' || r == '<' || r == '>':
				return -1
			case r >= 'A' && r <= 'F':
				return r + ('a' - 'A')
			}
			return r
		}, token)
		if i := strings.IndexFunc(t, notHex); i >= 0 {
			r, _ := utf8.DecodeRuneInString(t[i:])
			return "", &cognito.FieldError{Field: "Token", Reason: fmt.Sprintf("an APNs device token is hex digits, but this one holds %q (for an FCM registration token, the platform is GCM)", r)}
		}
		if len(t) < minAPNsTokenHex || len(t) > maxAPNsTokenHex || len(t)%2 != 0 {
			return "", &cognito.FieldError{Field: "Token", Reason: fmt.Sprintf("an APNs device token is %d to %d hex digits, an even number of them; got %d", minAPNsTokenHex, maxAPNsTokenHex, len(t))}
		}
		return t, nil
	}
	if len(token) > maxFCMToken {
		return "", &cognito.FieldError{Field: "Token", Reason: fmt.Sprintf("an FCM registration token is at most %d bytes, got %d", maxFCMToken, len(token))}
	}
	for _, r := range token {
		if r <= ' ' || r == 0x7f || r > 0x7e {
			return "", &cognito.FieldError{Field: "Token", Reason: "an FCM registration token holds printable ASCII only"}
		}
	}
	return token, nil
}

func notHex(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }

// Errors returned by the registry; match them with errors.Is.
var (
	ErrDeviceNotFound  = errors.New("device not found")
	ErrNotSubscribed   = errors.New("device is not subscribed to the dataset")
	ErrTooManyDevices  = errors.New("identity has too many devices")
	ErrAppNotFound     = errors.New("platform app not found")
	ErrPushNotEnabled  = errors.New("push sync is not configured for the identity pool")
	ErrAppInUse        = errors.New("platform app is in use")
	ErrInvalidApp      = errors.New("invalid platform app")
	ErrInvalidPoolPush = errors.New("invalid push configuration")
	ErrAppExists       = errors.New("platform app already exists")
	ErrNoCredential    = errors.New("no such credential")

	// ErrTooManySubscriptions is returned by Subscribe for a device
	// subscribed to as many datasets as it may be.
	ErrTooManySubscriptions = errors.New("device has too many subscriptions")
)

// Options configures a Registry.
type Options struct {
	// KeyPrefix is the first part of every key. If not set, "pushsync".
	KeyPrefix string
	// MaxDevicesPerIdentity bounds the devices one identity may register.
	// If not set, 100.
	MaxDevicesPerIdentity int
	// MaxSubscriptionsPerDevice bounds the datasets one device may be
	// subscribed to at once. If not set, 100.
	MaxSubscriptionsPerDevice int
	// Now returns the current time. If not set, time.Now.
	Now func() time.Time
	// NewID returns a fresh DeviceId. If not set, a random UUID.
	NewID func() string
	// Secrets encrypts platform app records and identity credentials at
	// rest. If not set, they are stored in plain text, which only tests and
	// throw-away stacks should do.
	Secrets *secretbox.Box
	// PoolCacheTTL is how long CredentialInPool and CheckPool may take an
	// identity pool's existence and creation time from an earlier read
	// instead of reading the configuration hash, which on Redis Cluster
	// lives on one node: a pool deleted (or deleted and created again)
	// through another Registry, such as another process's, is seen within
	// that time; through this one, at once. A pool just created is seen at
	// once everywhere. If not set, every check reads Redis.
	PoolCacheTTL time.Duration
	// SweepWindow is how long after its note in the sweep index a removal
	// that notes its event may still be committed (see ClaimRemovals). If
	// not set, sweepindex.DefaultWindow (5s).
	SweepWindow time.Duration
}

// Registry is the device and configuration store. It is safe for
// concurrent use.
type Registry struct {
	rdb        redis.UniversalClient
	prefix     string
	maxDevices int
	maxSubs    int
	now        func() time.Time
	newID      func() string
	box        *secretbox.Box
	pools      poolCache
	sweep      *sweepindex.Index
}

// New returns a Registry on the given Redis client.
func New(rdb redis.UniversalClient, opts Options) *Registry {
	r := &Registry{rdb: rdb, prefix: opts.KeyPrefix, maxDevices: opts.MaxDevicesPerIdentity, maxSubs: opts.MaxSubscriptionsPerDevice, now: opts.Now, newID: opts.NewID, box: opts.Secrets,
		pools: poolCache{ttl: opts.PoolCacheTTL}}
	if r.prefix == "" {
		r.prefix = "pushsync"
	}
	r.sweep = sweepindex.New(rdb, r.prefix, "removed", opts.SweepWindow)
	if r.maxDevices <= 0 {
		r.maxDevices = 100
	}
	if r.maxSubs <= 0 {
		r.maxSubs = 100
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.newID == nil {
		r.newID = uuid.NewString
	}
	return r
}

func (r *Registry) identityKey(pool, identity string) string {
	return r.prefix + ":" + cognito.HashTag(pool, identity) + ":push"
}

func (r *Registry) configKey() string { return r.prefix + ":{config}" }

// maxConfigAttempts bounds how often updateConfig runs a change again.
const maxConfigAttempts = 100

// updateConfig runs fn in a transaction that watches the configuration
// hash, and runs it again when another write to the hash (any app, pool or
// bulk publish state) came between fn's reads and its write: the hash is
// shared, so such a conflict means only that fn must read again. Each
// conflict is another writer's success, so the retries end.
func (r *Registry) updateConfig(ctx context.Context, fn func(tx *redis.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := r.rdb.Watch(ctx, fn, r.configKey())
		if !errors.Is(err, redis.TxFailedErr) || attempt == maxConfigAttempts || ctx.Err() != nil {
			return err
		}
	}
}

// seal encrypts a record for storage when the registry has a box.
func (r *Registry) seal(plain []byte, context string) string {
	if r.box == nil {
		return string(plain)
	}
	return r.box.Seal(plain, context)
}

// open reverses seal. A sealed record read without a box, or a plain one
// read with a box, is an error: the configuration changed under the data.
func (r *Registry) open(stored, context string) ([]byte, error) {
	if r.box == nil {
		if secretbox.IsSealed(stored) {
			return nil, errors.New("record is encrypted but no master key is configured")
		}
		return []byte(stored), nil
	}
	if !secretbox.IsSealed(stored) {
		return nil, errors.New("record is stored in plain text but a master key is configured; register it again")
	}
	return r.box.Open(stored, context)
}

func validateIdentity(pool, identity string) error {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return err
	}
	return cognito.ValidateIdentityID(identity)
}
