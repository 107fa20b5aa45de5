// Package sigv4 verifies AWS Signature Version 4 signed requests, as the
// official AWS SDK clients (JavaScript v2/v3, Go v1, Android, iOS) send them
// to the Amazon Cognito Sync REST-JSON API.
//
// The canonical request follows aws-sdk-go v1's aws/signer/v4 for non-S3
// services: the canonical URI is the path as sent, URI-encoded a second time
// ("%3A" becomes "%253A"); the query is decoded, sorted and re-encoded with
// the RFC 3986 unreserved set; signed header values are trimmed and their
// runs of spaces collapsed; the payload hash is x-amz-content-sha256 when the
// client sent it (JavaScript) and SHA-256 of the body otherwise (Go v1).
// The host header is the request's Host; for a Host with a port, the host
// alone is accepted too, as the iOS SDK signs it. Presigned URLs and
// UNSIGNED-PAYLOAD are not accepted.
package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Credential is a secret the server knows for an access key id.
type Credential struct {
	AccessKeyID     string // the public access key id
	SecretAccessKey string // the secret the client signs with
	// SessionToken is non-empty for temporary credentials: the request must
	// then carry it in X-Amz-Security-Token.
	SessionToken string
	// Expired marks a temporary credential that has expired: a request
	// signed with it is refused with ErrExpiredToken once its signature
	// checks, so that only the holder of the secret learns it.
	Expired bool
}

// Lookup finds the credential of an access key id. It returns
// ErrUnknownAccessKey (or an error wrapping it) when there is none, and other
// errors for lookup failures; Verify passes those through wrapped rather than
// turning them into authentication failures. An expired credential is
// returned with Expired set. A credential that exists but can never be
// checked again (its secret is lost) is ErrExpiredToken (or an error
// wrapping it): Verify refuses the request with ErrExpiredToken without
// checking its signature, so that the client fetches new credentials.
type Lookup func(ctx context.Context, accessKeyID string) (Credential, error)

// DefaultMaxSkew is the clock difference allowed when Verifier.MaxSkew is 0.
const DefaultMaxSkew = 5 * time.Minute

const (
	amzDateFormat = "20060102T150405Z"
	hdrAmzDate    = "X-Amz-Date"
	hdrToken      = "X-Amz-Security-Token"
	hdrContentSHA = "X-Amz-Content-Sha256"
)

// Verifier checks SigV4 signatures. Configure its exported fields before the
// first call to Verify and do not change them afterwards; Verify is safe for
// concurrent use. A Verifier must not be copied after first use.
type Verifier struct {
	Service string           // required, e.g. "cognito-sync"; the credential scope must name it
	Regions []string         // accepted regions; empty accepts any region
	MaxSkew time.Duration    // allowed clock difference; 0 means DefaultMaxSkew
	Now     func() time.Time // nil means time.Now
	Lookup  Lookup           // required

	keys keyCache
}

// Result is what a verified request proved.
type Result struct {
	AccessKeyID   string     // access key id that signed the request
	Region        string     // region of the credential scope
	Service       string     // service of the credential scope
	SignedHeaders []string   // lower-case names of the headers the signature covers
	Time          time.Time  // the request time (X-Amz-Date, or Date)
	Credential    Credential // the credential Lookup returned
}

// Verify checks the signature in the request's Authorization header. body is
// the complete request body, already read (and bounded) by the caller;
// Verify never reads r.Body. Authentication failures are *Error values
// matching one of the Err… sentinels; a failing Lookup gives a wrapped error
// that is not an *Error (answer 500).
func (v *Verifier) Verify(r *http.Request, body []byte) (*Result, error) {
	if v == nil || v.Service == "" || v.Lookup == nil {
		return nil, errors.New("sigv4: verifier needs a Service and a Lookup")
	}
	if r == nil || r.URL == nil {
		return nil, errors.New("sigv4: nil request")
	}

	query, queryErr := url.ParseQuery(r.URL.RawQuery)
	if query.Has("X-Amz-Algorithm") || query.Has("X-Amz-Signature") || query.Has("X-Amz-Credential") {
		return nil, newError(ErrIncompleteSignature, "presigned URLs are not accepted")
	}
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 || (len(authz) == 1 && strings.TrimSpace(authz[0]) == "") {
		return nil, newError(ErrMissingAuthentication, "Missing Authentication Token")
	}
	if len(authz) > 1 {
		return nil, newError(ErrIncompleteSignature, "the request has more than one Authorization header")
	}
	a, err := ParseAuthorization(authz[0])
	if err != nil {
		return nil, err
	}
	if queryErr != nil {
		return nil, newError(ErrIncompleteSignature, "the query string is malformed")
	}

	// Request time: X-Amz-Date, else the Date header; whichever is used must
	// be signed.
	var reqTime time.Time
	var amzDate string
	if d := r.Header.Get(hdrAmzDate); d != "" {
		if !slices.Contains(a.SignedHeaders, "x-amz-date") {
			return nil, newError(ErrIncompleteSignature, "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
		}
		t, err := time.Parse(amzDateFormat, d)
		if err != nil || len(d) != len(amzDateFormat) {
			return nil, newError(ErrIncompleteSignature, "X-Amz-Date %q is not in the form 20060102T150405Z", clip(d))
		}
		reqTime, amzDate = t, d
	} else if d := r.Header.Get("Date"); d != "" {
		if !slices.Contains(a.SignedHeaders, "date") {
			return nil, newError(ErrIncompleteSignature, "'Date' must be a 'SignedHeader' in the AWS Authorization.")
		}
		t, err := time.Parse(http.TimeFormat, d)
		if err != nil {
			return nil, newError(ErrIncompleteSignature, "Date header %q is not an RFC 1123 GMT date", clip(d))
		}
		reqTime, amzDate = t.UTC(), t.UTC().Format(amzDateFormat)
	} else {
		return nil, newError(ErrIncompleteSignature,
			"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}

	if a.Service != v.Service {
		return nil, newError(ErrInvalidSignature, "Credential should be scoped to correct service: '%s'.", v.Service)
	}
	if len(v.Regions) > 0 && !slices.Contains(v.Regions, a.Region) {
		return nil, newError(ErrInvalidSignature, "Credential should be scoped to a valid region, not '%s'.", a.Region)
	}
	if a.Date != amzDate[:8] {
		return nil, newError(ErrInvalidSignature,
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			a.Date, amzDate[:8], amzDate)
	}
	if err := v.checkSkew(reqTime); err != nil {
		return nil, err
	}

	// Everything that does not need the secret is checked before the lookup.
	host := requestHost(r)
	canonHeaders, err := canonicalHeaders(r, a.SignedHeaders, len(body), host)
	if err != nil {
		return nil, err
	}
	contentSHA, hasContentSHA := r.Header[hdrContentSHA]

	cred, err := v.Lookup(r.Context(), a.AccessKeyID)
	if err != nil {
		if errors.Is(err, ErrUnknownAccessKey) {
			return nil, newError(ErrUnknownAccessKey, msgInvalidToken)
		}
		if errors.Is(err, ErrExpiredToken) {
			return nil, newError(ErrExpiredToken, msgExpiredToken)
		}
		return nil, fmt.Errorf("sigv4: looking up access key: %w", err)
	}
	tokens := r.Header.Values(hdrToken)
	switch {
	case cred.SessionToken == "" && len(tokens) > 0,
		cred.SessionToken != "" && len(tokens) != 1,
		cred.SessionToken != "" && subtle.ConstantTimeCompare([]byte(tokens[0]), []byte(cred.SessionToken)) != 1:
		return nil, newError(ErrInvalidSecurityToken, msgInvalidToken)
	}

	bodySum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(bodySum[:])
	if hasContentSHA {
		if len(contentSHA) != 1 || contentSHA[0] != payloadHash {
			return nil, newError(ErrInvalidSignature, msgContentSHA)
		}
	}

	key := v.keys.get(cred.SecretAccessKey, a.Date, a.Region, a.Service)
	uri, canonQuery, signedList := canonicalURI(requestPath(r)), canonicalQuery(query), strings.Join(a.SignedHeaders, ";")
	signature := func(headers string) []byte {
		canonical := strings.Join([]string{r.Method, uri, canonQuery, headers, signedList, payloadHash}, "\n")
		canonSum := sha256.Sum256([]byte(canonical))
		stringToSign := algorithm + "\n" + amzDate + "\n" + a.Scope() + "\n" + hex.EncodeToString(canonSum[:])
		return hmacSHA256(key, []byte(stringToSign))
	}
	got, err := hex.DecodeString(a.Signature)
	match := err == nil && hmac.Equal(signature(canonHeaders), got)
	// The iOS SDK signs the host without its port, whatever port the
	// request then goes to: a Host with a port is also checked without it.
	if h := hostWithoutPort(host); !match && err == nil && h != "" {
		// The same headers as above, so no error.
		portless, _ := canonicalHeaders(r, a.SignedHeaders, len(body), h)
		match = hmac.Equal(signature(portless), got)
	}
	if !match {
		return nil, newError(ErrSignatureMismatch, msgMismatch)
	}
	if cred.Expired {
		return nil, newError(ErrExpiredToken, msgExpiredToken)
	}

	return &Result{
		AccessKeyID:   a.AccessKeyID,
		Region:        a.Region,
		Service:       a.Service,
		SignedHeaders: a.SignedHeaders,
		Time:          reqTime,
		Credential:    cred,
	}, nil
}

// checkSkew rejects a request time more than MaxSkew away from now, with
// AWS's wording.
func (v *Verifier) checkSkew(t time.Time) error {
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	n := now().UTC()
	f := func(t time.Time) string { return t.UTC().Format(amzDateFormat) }
	switch {
	case t.Before(n.Add(-skew)):
		return newError(ErrSignatureExpired, "Signature expired: %s is now earlier than %s (%s - %s.)",
			f(t), f(n.Add(-skew)), f(n), skewText(skew))
	case t.After(n.Add(skew)):
		return newError(ErrSignatureExpired, "Signature not yet current: %s is still later than %s (%s + %s.)",
			f(t), f(n.Add(skew)), f(n), skewText(skew))
	}
	return nil
}

func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return fmt.Sprintf("%d sec", d/time.Second)
}

func hmacSHA256(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

// deriveSigningKey computes the SigV4 signing key:
// HMAC("AWS4"+secret, date) → region → service → "aws4_request".
func deriveSigningKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte(scopeTermSfx))
}

// maxCachedKeys bounds the signing-key cache.
const maxCachedKeys = 512

type cacheKey struct {
	secret                [sha256.Size]byte // SHA-256 of the secret, so the map holds no secrets
	date, region, service string
}

// keyCache memoizes derived signing keys per (secret, date, region, service);
// every request of a client repeats them. When full it drops an arbitrary
// entry.
type keyCache struct {
	mu sync.Mutex
	m  map[cacheKey][]byte
}

func (c *keyCache) get(secret, date, region, service string) []byte {
	k := cacheKey{secret: sha256.Sum256([]byte(secret)), date: date, region: region, service: service}
	c.mu.Lock()
	key, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return key
	}
	key = deriveSigningKey(secret, date, region, service)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[cacheKey][]byte)
	}
	for len(c.m) >= maxCachedKeys {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = key
	return key
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
