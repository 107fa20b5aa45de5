package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Timing of the JSON Web Key Set cache.
const (
	// keysTTL is how long a fetched key set is used before it is fetched
	// again.
	keysTTL = time.Hour
	// keysRefetchInterval is the least time between two fetches of one key
	// set prompted by tokens signed with a key it does not hold.
	keysRefetchInterval = time.Minute
	// keysRetryInterval is the least time between fetches after one failed.
	keysRetryInterval = 5 * time.Second
	// keysFetchTimeout bounds one fetch.
	keysFetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds a key set document.
	maxJWKSBytes = 1 << 20
	// minRSABits is the smallest RSA key accepted.
	minRSABits = 2048
)

// publicKey is one signing key of a provider.
type publicKey struct {
	alg string // RS256 or ES256
	key any    // *rsa.PublicKey or *ecdsa.PublicKey
}

// keySet is the cached key set of one URL. One fetch runs at a time:
// logins that need it wait for it instead of each making their own, and
// logins whose key the set holds, even one due to be fetched again, are
// answered at once while it runs.
type keySet struct {
	mu      sync.Mutex
	keys    map[string]publicKey // by kid
	refused map[string]string    // why each key not in keys was left out, by kid
	fetched time.Time            // of the keys; zero before the first success
	// attempted is when the last fetch, successful or not, ended: a
	// fetch that hangs takes keysFetchTimeout, longer than
	// keysRetryInterval, so the intervals count from its end.
	attempted time.Time
	lastErr   error // of the last fetch
	// fetching is closed when the fetch under way ends; nil when none is.
	fetching chan struct{}
}

// keyCache fetches and caches providers' JSON Web Key Sets per URL.
type keyCache struct {
	client *http.Client
	now    func() time.Time
	log    zerolog.Logger

	mu   sync.Mutex
	sets map[string]*keySet
}

// errUnknownKey is a kid that the provider's key set does not hold.
var errUnknownKey = errors.New("the token's signing key (kid) is not among the provider's signing keys")

// refusedKeyError is a kid that the provider's key set holds, but as a
// key pushsync does not verify tokens with.
type refusedKeyError struct{ why string }

func (e *refusedKeyError) Error() string {
	return "the provider's key of the token's kid is not accepted: " + e.why
}

// missing returns the error of a kid the set's keys lack: a
// *refusedKeyError if the set left a key of that kid out, else
// errUnknownKey. The caller holds s.mu.
func (s *keySet) missing(kid string) error {
	if why, ok := s.refused[kid]; ok {
		return &refusedKeyError{why}
	}
	return errUnknownKey
}

// fetchError is a key set that could not be fetched.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }

func newKeyCache(client *http.Client, now func() time.Time, log zerolog.Logger) *keyCache {
	c := *client
	// Follow redirects only to URLs a key set may be fetched from, and
	// never from https to plain http.
	next := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkKeysURL(req.URL); err != nil {
			return err
		}
		if len(via) > 0 && via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("signing keys from https://%s are fetched only over https, not from a redirect to %s://%s", via[0].URL.Host, req.URL.Scheme, req.URL.Host)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		return nil
	}
	return &keyCache{client: &c, now: now, log: log, sets: make(map[string]*keySet)}
}

// key returns the signing key kid of the key set at rawURL, fetching the
// set when it is not cached, older than keysTTL, or lacks kid and was not
// fetched in the last keysRefetchInterval. While a fetch runs, a key the
// set holds is returned at once, even from a set due to be fetched again;
// a caller whose key it lacks waits for the fetch. It returns
// errUnknownKey, a *refusedKeyError or a *fetchError.
func (c *keyCache) key(ctx context.Context, rawURL, kid string) (publicKey, error) {
	c.mu.Lock()
	s := c.sets[rawURL]
	if s == nil {
		s = &keySet{}
		c.sets[rawURL] = s
	}
	c.mu.Unlock()

	for {
		s.mu.Lock()
		now := c.now()
		k, have := s.keys[kid]
		fresh := !s.fetched.IsZero() && now.Sub(s.fetched) < keysTTL
		switch {
		case fresh && have:
			s.mu.Unlock()
			return k, nil
		case fresh && now.Sub(s.attempted) < keysRefetchInterval:
			err := s.missing(kid)
			s.mu.Unlock()
			return publicKey{}, err
		case s.lastErr != nil && now.Sub(s.attempted) < keysRetryInterval:
			err := s.lastErr
			s.mu.Unlock()
			if have { // stale keys outlive an outage of the provider
				return k, nil
			}
			return publicKey{}, &fetchError{err}
		case s.fetching != nil:
			done := s.fetching
			s.mu.Unlock()
			if have { // stale keys serve while the set is fetched again
				return k, nil
			}
			select {
			case <-done: // the fetch is bounded by keysFetchTimeout
			case <-ctx.Done():
				return publicKey{}, &fetchError{ctx.Err()}
			}
			continue
		}
		done := make(chan struct{})
		s.fetching = done
		s.mu.Unlock()

		keys, refused, err := c.fetch(ctx, rawURL)

		s.mu.Lock()
		s.fetching = nil
		close(done)
		s.attempted = c.now()
		if err != nil {
			s.lastErr = err
			s.mu.Unlock()
			c.log.Warn().Str("jwks_url", rawURL).Err(err).Msg("cannot fetch the signing keys of an OpenID Connect provider")
			if have {
				return k, nil
			}
			return publicKey{}, &fetchError{err}
		}
		s.keys, s.refused, s.fetched, s.lastErr = keys, refused, now, nil
		missing := s.missing(kid)
		s.mu.Unlock()
		c.log.Debug().Str("jwks_url", rawURL).Int("keys", len(keys)).Msg("fetched OpenID Connect signing keys")
		if len(refused) > 0 {
			c.log.Warn().Str("jwks_url", rawURL).Interface("refused", refused).Msg("an OpenID Connect provider's key set holds keys that cannot verify tokens; tokens signed with them are refused")
		}
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return publicKey{}, missing
	}
}

// checkKeysURL accepts https URLs, and http URLs of loopback hosts (test
// providers).
func checkKeysURL(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("signing keys are fetched only over https, not from %s://%s", u.Scheme, u.Host)
}

// fetch fetches and parses the key set at rawURL (see parseKeySet).
func (c *keyCache) fetch(ctx context.Context, rawURL string) (keys map[string]publicKey, refused map[string]string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("key set URL %q: %w", rawURL, err)
	}
	if err := checkKeysURL(u); err != nil {
		return nil, nil, err
	}
	// One caller's fetch serves every caller waiting for it: don't let the
	// first caller's cancellation fail them all.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keysFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: status %s", rawURL, resp.Status)
	}
	if len(body) > maxJWKSBytes {
		return nil, nil, fmt.Errorf("GET %s: key set larger than %d bytes", rawURL, maxJWKSBytes)
	}
	return parseKeySet(body)
}

// jwk is a JSON Web Key (RFC 7517) of the kinds pushsync verifies with.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseKeySet reads a JSON Web Key Set. Keys without a kid are left out,
// and so are keys that are not RSA or P-256 signing keys, with the reason
// in refused by kid unless a usable key has that kid; of several usable
// keys of a kid, the first is kept.
func parseKeySet(data []byte) (keys map[string]publicKey, refused map[string]string, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("key set is not JSON: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New(`key set has no "keys" member`)
	}
	keys, refused = make(map[string]publicKey, len(set.Keys)), make(map[string]string)
	for _, raw := range set.Keys {
		var k jwk
		if json.Unmarshal(raw, &k) != nil || k.Kid == "" {
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			continue
		}
		pk, why := k.publicKey()
		if k.Use != "" && k.Use != "sig" {
			why = fmt.Sprintf("its use is %.16q, not \"sig\"", k.Use)
		}
		switch _, seen := refused[k.Kid]; {
		case why == "":
			keys[k.Kid] = pk
			delete(refused, k.Kid)
		case !seen:
			refused[k.Kid] = why
		}
	}
	return keys, refused, nil
}

// publicKey returns the key, or why it is not one pushsync verifies with.
func (k *jwk) publicKey() (publicKey, string) {
	switch {
	case k.Kty == "RSA" && (k.Alg == "" || k.Alg == "RS256"):
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return publicKey{}, "it is a malformed RSA key"
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits {
			return publicKey{}, fmt.Sprintf("it is a %d-bit RSA key, and RSA keys must have at least %d bits", pub.N.BitLen(), minRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return publicKey{}, "it is a malformed RSA key"
		}
		return publicKey{alg: "RS256", key: pub}, ""
	case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == "ES256"):
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return publicKey{}, "it is a malformed P-256 key"
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return publicKey{}, "it is a malformed P-256 key"
		}
		return publicKey{alg: "ES256", key: pub}, ""
	}
	return publicKey{}, fmt.Sprintf("it is a %.16q key (crv %.16q, alg %.16q); tokens are verified only with RSA keys for RS256 and P-256 EC keys for ES256", k.Kty, k.Crv, k.Alg)
}

// b64 decodes base64url, with or without padding.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
