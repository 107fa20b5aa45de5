package api

import (
	"strings"
	"testing"
	"time"
)

func TestSessionTokens(t *testing.T) {
	now := time.Now()
	st := &sessionTokens{key: SessionTokenKey([]byte("0123456789abcdef0123456789abcdef")), ttl: time.Hour, now: func() time.Time { return now }}
	tok := st.issue("us-east-1:p", "us-east-1:i", "ds")
	if err := st.check(tok, "us-east-1:p", "us-east-1:i", "ds"); err != nil {
		t.Fatal(err)
	}
	if st.issue("us-east-1:p", "us-east-1:i", "ds") == tok {
		t.Fatal("two sessions got the same token")
	}
	for _, c := range []struct{ pool, identity, dataset string }{
		{"us-east-1:q", "us-east-1:i", "ds"}, {"us-east-1:p", "us-east-1:j", "ds"}, {"us-east-1:p", "us-east-1:i", "ds2"},
		// The separator keeps a boundary shift from matching.
		{"us-east-1:p", "us-east-1:id", "s"},
	} {
		if err := st.check(tok, c.pool, c.identity, c.dataset); err != errBadSession {
			t.Errorf("token accepted for %v: %v", c, err)
		}
	}
	// The last character changed: to one it is not, or the "bad" token
	// is the good one a time in 64.
	last := "A"
	if strings.HasSuffix(tok, last) {
		last = "B"
	}
	for _, bad := range []string{"", "s1..", "s2" + tok[2:], tok[:len(tok)-1] + last, strings.Replace(tok, ".", "", 1)} {
		if err := st.check(bad, "us-east-1:p", "us-east-1:i", "ds"); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
	other := &sessionTokens{key: SessionTokenKey([]byte("another master key, 32 bytes....")), ttl: time.Hour, now: st.now}
	if err := other.check(tok, "us-east-1:p", "us-east-1:i", "ds"); err != errBadSession {
		t.Errorf("token accepted under another key: %v", err)
	}
	// After a master key rotation, tokens signed under the previous key
	// are still accepted; new ones are signed under the new key only.
	rotated := &sessionTokens{key: other.key, previous: [][]byte{st.key}, ttl: time.Hour, now: st.now}
	if err := rotated.check(tok, "us-east-1:p", "us-east-1:i", "ds"); err != nil {
		t.Errorf("token under the previous key refused after a rotation: %v", err)
	}
	if err := rotated.check(tok, "us-east-1:q", "us-east-1:i", "ds"); err != errBadSession {
		t.Errorf("token under the previous key accepted for another pool: %v", err)
	}
	if err := st.check(rotated.issue("us-east-1:p", "us-east-1:i", "ds"), "us-east-1:p", "us-east-1:i", "ds"); err != errBadSession {
		t.Errorf("token issued after a rotation accepted under the previous key: %v", err)
	}
	now = now.Add(time.Hour)
	if err := st.check(tok, "us-east-1:p", "us-east-1:i", "ds"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
}
