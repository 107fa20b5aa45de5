package sigv4

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// A Lookup that answers ErrExpiredToken, for a credential whose secret is
// lost, has the request refused with ExpiredTokenException, which AWS
// SDKs answer by fetching new credentials: an authentication failure, an
// *Error, not a lookup failure passed through.
func TestLookupOfALostSecret(t *testing.T) {
	v := newVerifier(signTime)
	v.Lookup = func(_ context.Context, id string) (Credential, error) {
		return Credential{}, fmt.Errorf("credential %s cannot be opened: %w", id, ErrExpiredToken)
	}
	r := newSDKRequest(t, "GET", "http://localhost", recordsPath, "", nil)
	sign(t, r, nil, tempAK, tempSK, tempToken, testService, testRegion, signTime)
	_, err := v.Verify(r, nil)
	e, ok := err.(*Error)
	if !ok || !errors.Is(err, ErrExpiredToken) || e.Code != "ExpiredTokenException" || e.Status != 403 ||
		e.Message != "The security token included in the request is expired" {
		t.Errorf("a credential whose secret is lost: %#v", err)
	}
}
