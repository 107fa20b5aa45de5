package apnstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"
)

// maxVerifiedTokens bounds the cache of verified provider tokens. Real
// providers reuse one token for 20-60 minutes, so a handful of entries is
// normal; the bound only protects against clients minting one per push.
const maxVerifiedTokens = 1024

type topicSet map[string]struct{}

func newTopicSet(topics []string) topicSet {
	if len(topics) == 0 {
		return nil
	}
	set := make(topicSet, len(topics))
	for _, t := range topics {
		set[t] = struct{}{}
	}
	return set
}

// allows reports whether topic may be pushed to; an empty set allows all.
func (t topicSet) allows(topic string) bool {
	if len(t) == 0 {
		return true
	}
	_, ok := t[topic]
	return ok
}

type tokenKey struct {
	teamID, keyID string
	pub           *ecdsa.PublicKey
	topics        topicSet
}

type certEntry struct {
	topics       topicSet
	defaultTopic string
}

// verifiedToken is a provider token whose signature has been checked.
type verifiedToken struct {
	key *tokenKey
	iat int64
	gen uint64 // keyGen at verification; a later AddTokenKey invalidates it
}

func (s *Server) lookupCert(raw []byte) *certEntry {
	s.authMu.RLock()
	e := s.certs[string(raw)]
	s.authMu.RUnlock()
	return e
}

func (s *Server) lookupTokenKey(teamID, keyID string) *tokenKey {
	s.authMu.RLock()
	k := s.tokenKey[teamID+"\x00"+keyID]
	s.authMu.RUnlock()
	return k
}

// forgetVerifiedTokens drops cached verifications after the keys changed.
func (s *Server) forgetVerifiedTokens() {
	s.keyGen.Add(1)
	s.jwtCache.Clear()
	s.jwtCount.Store(0)
}

var errBadToken = errors.New("apnstest: invalid provider token")

// verifyBearer checks an authorization header value "bearer <JWT>" and
// returns the verified token, or the rejection reason. Expiry is left to the
// caller so that cached tokens expire on time.
func (s *Server) verifyBearer(header string) (*verifiedToken, string) {
	jwt, ok := cutBearer(header)
	if !ok {
		return nil, reasonInvalidProviderToken
	}
	gen := s.keyGen.Load()
	if v, ok := s.jwtCache.Load(jwt); ok {
		if vt := v.(*verifiedToken); vt.gen == gen {
			return vt, ""
		}
	}
	vt, err := s.parseJWT(jwt)
	if err != nil {
		return nil, reasonInvalidProviderToken
	}
	vt.gen = gen
	if s.jwtCount.Add(1) > maxVerifiedTokens {
		s.jwtCache.Clear()
		s.jwtCount.Store(1)
	}
	s.jwtCache.Store(jwt, vt)
	return vt, ""
}

// cutBearer strips the case-insensitive "bearer" scheme.
func cutBearer(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	jwt := strings.TrimLeft(h[len(scheme):], " ")
	return jwt, jwt != ""
}

// parseJWT verifies an ES256 provider token: header alg ES256 with a kid,
// claims iss (team id) and iat, and a raw r||s signature made with the key
// registered for (iss, kid).
func (s *Server) parseJWT(jwt string) (*verifiedToken, error) {
	i := strings.IndexByte(jwt, '.')
	if i < 0 {
		return nil, errBadToken
	}
	j := strings.IndexByte(jwt[i+1:], '.')
	if j < 0 {
		return nil, errBadToken
	}
	j += i + 1
	if strings.IndexByte(jwt[j+1:], '.') >= 0 {
		return nil, errBadToken
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(jwt[:i], &hdr); err != nil || hdr.Alg != "ES256" || hdr.Kid == "" {
		return nil, errBadToken
	}
	var claims struct {
		Iss string      `json:"iss"`
		Iat json.Number `json:"iat"`
	}
	if err := decodeSegment(jwt[i+1:j], &claims); err != nil || claims.Iss == "" {
		return nil, errBadToken
	}
	iat, err := claims.Iat.Int64()
	if err != nil {
		f, ferr := claims.Iat.Float64()
		if ferr != nil {
			return nil, errBadToken
		}
		iat = int64(f)
	}
	key := s.lookupTokenKey(claims.Iss, hdr.Kid)
	if key == nil {
		return nil, errBadToken
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(jwt[j+1:], "="))
	if err != nil || len(sig) != 64 {
		return nil, errBadToken
	}
	digest := sha256.Sum256([]byte(jwt[:j]))
	r := new(big.Int).SetBytes(sig[:32])
	ss := new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(key.pub, digest[:], r, ss) {
		return nil, errBadToken
	}
	return &verifiedToken{key: key, iat: iat}, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// connTokens are the provider tokens a connection took. APNs serves one
// team on a connection: the team of the first token it took.
type connTokens struct {
	mu      sync.Mutex
	current *verifiedToken // the last token seen, for the common case
	team    string         // the connection's team, "" before its first token
	taken   []tokenID      // within the last ProviderTokenLifetime
	at      time.Time      // when the newest was taken
}

// tokenID tells provider tokens apart: a new token has another key or iat.
type tokenID struct {
	keyID string
	iat   int64
}

type connTokensKey struct{}

// withConnTokens gives a connection's requests a place for its tokens.
func withConnTokens(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connTokensKey{}, &connTokens{})
}

// takeToken takes vt for the connection of ctx and returns "", or the
// reason the connection refuses it: InvalidProviderToken for a token of
// another team than the connection's, TooManyProviderTokenUpdates for a
// new token (another kid or iat) less than every after the connection's
// last new one; a token the connection took already serves. every <= 0
// turns the second check off.
func takeToken(ctx context.Context, vt *verifiedToken, every time.Duration, now time.Time) string {
	ct, _ := ctx.Value(connTokensKey{}).(*connTokens)
	if ct == nil {
		return ""
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.current == vt {
		return ""
	}
	switch ct.team {
	case "":
		ct.team = vt.key.teamID
	case vt.key.teamID:
	default:
		return reasonInvalidProviderToken
	}
	if every <= 0 {
		ct.current = vt
		return ""
	}
	id := tokenID{vt.key.keyID, vt.iat}
	for _, x := range ct.taken {
		if x == id {
			ct.current = vt
			return ""
		}
	}
	if len(ct.taken) > 0 && now.Sub(ct.at) < every {
		return reasonTooManyTokenUpdates
	}
	// Expired tokens are refused before this; forget them.
	kept := ct.taken[:0]
	for _, x := range ct.taken {
		if now.Unix()-x.iat <= providerTokenLifetimeInSecond {
			kept = append(kept, x)
		}
	}
	ct.taken, ct.at = append(kept, id), now
	ct.current = vt
	return ""
}
