package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

// sessionTokens issues and checks SyncSessionTokens: "a token containing
// a session ID, identity ID, and expiration". They are stateless: the
// session's pool, identity, dataset and expiry, signed with HMAC-SHA256
// under a key derived from the master key, so any API process can check
// any token.
type sessionTokens struct {
	key []byte
	// previous keys are accepted by check, never used by issue.
	previous [][]byte
	ttl      time.Duration
	now      func() time.Time
}

// SessionTokenKey derives the key that signs SyncSessionTokens from the
// master key.
func SessionTokenKey(masterKey []byte) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("pushsync sync session token v1"))
	return m.Sum(nil)
}

const sessionVersion = "s1"

// issue returns a token for one pool, identity and dataset.
func (st *sessionTokens) issue(pool, identity, dataset string) string {
	var buf [16]byte
	_, _ = rand.Read(buf[:8]) // session id
	binary.BigEndian.PutUint64(buf[8:], uint64(st.now().Add(st.ttl).Unix()))
	payload := base64.RawURLEncoding.EncodeToString(buf[:])
	return sessionVersion + "." + payload + "." + mac(st.key, payload, pool, identity, dataset)
}

var errBadSession = errors.New("SyncSessionToken not valid for these inputs")

// check verifies that token was issued for this pool, identity and
// dataset and has not expired.
func (st *sessionTokens) check(token, pool, identity, dataset string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != sessionVersion {
		return errBadSession
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || len(raw) != 16 {
		return errBadSession
	}
	if !st.signed(parts[2], parts[1], pool, identity, dataset) {
		return errBadSession
	}
	if exp := time.Unix(int64(binary.BigEndian.Uint64(raw[8:])), 0); !st.now().Before(exp) {
		return errors.New("SyncSessionToken has expired; list the records again for a new one")
	}
	return nil
}

// signed reports whether sig is the signature of the token's fields under
// the current key or a previous one.
func (st *sessionTokens) signed(sig, payload, pool, identity, dataset string) bool {
	for i := -1; i < len(st.previous); i++ {
		key := st.key
		if i >= 0 {
			key = st.previous[i]
		}
		if hmac.Equal([]byte(sig), []byte(mac(key, payload, pool, identity, dataset))) {
			return true
		}
	}
	return false
}

func mac(key []byte, payload, pool, identity, dataset string) string {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{payload, pool, identity, dataset} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
