//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package sigv4

import (
	"errors"
	"testing"
)

// A request signed correctly with an expired credential is refused with
// ExpiredTokenException, which AWS SDKs answer by fetching new
// credentials; a wrong signature with it is a mismatch, telling nothing.
func TestExpiredCredential(t *testing.T) {
	v := newVerifier(signTime, Credential{AccessKeyID: tempAK, SecretAccessKey: tempSK, SessionToken: tempToken, Expired: true})

	r := newSDKRequest(t, "GET", "http://localhost", recordsPath, "", nil)
	sign(t, r, nil, tempAK, tempSK, tempToken, testService, testRegion, signTime)
	_, err := v.Verify(r, nil)
	var e *Error
	if !errors.Is(err, ErrExpiredToken) || !errors.As(err, &e) || e.Code != "ExpiredTokenException" || e.Status != 403 ||
		e.Message != "The security token included in the request is expired" {
		t.Errorf("signed with an expired credential: %#v", err)
	}

	r = newSDKRequest(t, "GET", "http://localhost", recordsPath, "", nil)
	sign(t, r, nil, tempAK, "not/the/secret/of/the/key/at/all/0000000", tempToken, testService, testRegion, signTime)
	if _, err := v.Verify(r, nil); !errors.Is(err, ErrSignatureMismatch) || errors.Is(err, ErrExpiredToken) {
		t.Errorf("wrongly signed with an expired credential: %v", err)
	}
}
