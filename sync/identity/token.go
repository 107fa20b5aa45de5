package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v4"

	"github.com/pushsync/pushsync/registry"
)

// Limits of login tokens.
const (
	// clockLeeway is how far in the future a token's iat and nbf may lie.
	clockLeeway = time.Minute
	// maxTokenLen is the longest login token, as in the Cognito Identity
	// model (IdentityProviderToken).
	maxTokenLen = 50000
	// maxSubjectLen is the longest sub claim accepted.
	maxSubjectLen = 1024
)

// login is a verified login: the provider's issuer and the token's subject.
type login struct {
	issuer, subject string
}

// verifyLogin verifies the ID token given for the provider named name in
// the pool and returns its login. Token failures are NotAuthorizedException;
// a key set that cannot be fetched is ExternalServiceException. The token
// itself never appears in an error.
func (h *Handler) verifyLogin(ctx context.Context, pool *registry.IdentityPool, name, token string) (login, *Error) {
	op, ok := pool.Provider(name)
	if !ok {
		return login{}, invalidToken("Token is not from a supported provider of this identity pool.")
	}
	alg, kid, e := tokenHeader(token)
	if e != nil {
		return login{}, e
	}

	var keyErr *Error
	parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithJSONNumber(), jwt.WithoutClaimsValidation())
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) {
		k, err := h.keys.key(ctx, op.KeysURL(), kid)
		var fe *fetchError
		var re *refusedKeyError
		switch {
		case errors.As(err, &fe):
			keyErr = externalService("Cannot fetch the signing keys of provider %s.", name)
		case errors.As(err, &re):
			keyErr = invalidToken(fmt.Sprintf("The provider's key of the token's kid is not accepted: %s.", re.why))
		case err != nil:
			keyErr = invalidToken("The token's signing key (kid) is not among the provider's signing keys.")
		case k.alg != alg:
			keyErr = invalidToken(fmt.Sprintf("The token is signed with %s, but its key (kid) is a %s key.", alg, k.alg))
		default:
			return k.key, nil
		}
		return nil, keyErr
	})
	if keyErr != nil {
		return login{}, keyErr
	}
	if err != nil {
		var ve *jwt.ValidationError
		if errors.As(err, &ve) && ve.Errors&jwt.ValidationErrorMalformed != 0 {
			return login{}, invalidToken("The token is not a well-formed JWT.")
		}
		return login{}, invalidToken("The token's signature is invalid.")
	}
	return h.checkClaims(claims, &op)
}

// tokenHeader reads the alg and kid of a JWT's header and refuses every
// algorithm but RS256 and ES256, before any key is looked up.
func tokenHeader(token string) (alg, kid string, e *Error) {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return "", "", invalidToken("The token is not a well-formed JWT.")
	}
	data, err := base64.RawURLEncoding.DecodeString(head)
	var hdr struct {
		Alg  string   `json:"alg"`
		Kid  string   `json:"kid"`
		Crit []string `json:"crit"`
	}
	if err != nil || json.Unmarshal(data, &hdr) != nil {
		return "", "", invalidToken("The token is not a well-formed JWT.")
	}
	switch {
	case hdr.Alg != "RS256" && hdr.Alg != "ES256":
		return "", "", invalidToken(fmt.Sprintf("Signing algorithm %.16q is not allowed; tokens must be signed with RS256 or ES256.", hdr.Alg))
	case hdr.Kid == "":
		return "", "", invalidToken("The token's header has no kid.")
	case len(hdr.Crit) > 0:
		return "", "", invalidToken("The token's header has critical extensions, which are not supported.")
	}
	return hdr.Alg, hdr.Kid, nil
}

// googleIssuer is Google's issuer, whose ID tokens carry it in iss with or
// without its scheme, "accounts.google.com" too (Google's OpenID Connect
// guide, "Validating an ID token").
const googleIssuer = "https://accounts.google.com"

// issuerMatches reports whether a token's iss names the provider whose
// issuer is issuer.
func issuerMatches(iss, issuer string) bool {
	return iss == issuer || (issuer == googleIssuer && iss == strings.TrimPrefix(googleIssuer, "https://"))
}

// checkClaims checks iss, aud, azp, exp, iat, nbf and sub of a token whose
// signature is valid.
func (h *Handler) checkClaims(c jwt.MapClaims, op *registry.OpenIDProvider) (login, *Error) {
	if iss, _ := c["iss"].(string); !issuerMatches(iss, op.Issuer) {
		return login{}, invalidToken("Issuer doesn't match providerName.")
	}
	auds := audiences(c["aud"])
	if !slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(op.ClientIDs, a) }) {
		return login{}, invalidToken("Incorrect token audience.")
	}
	// A token for several audiences was issued to the one its azp names
	// (OpenID Connect Core 3.1.3.7): one issued to another client that
	// merely lists a client id of the pool among its audiences is not a
	// login to this pool.
	if azp, present := c["azp"]; present && len(auds) > 1 {
		if s, _ := azp.(string); !slices.Contains(op.ClientIDs, s) {
			return login{}, invalidToken("The token was issued to another client (azp) than the client ids the identity pool accepts.")
		}
	}
	now := h.opts.Now()
	exp, ok := numericDate(c["exp"])
	switch {
	case !ok:
		return login{}, invalidToken("The token has no valid exp claim.")
	case !now.Before(exp):
		return login{}, invalidToken(fmt.Sprintf("Token expired at %s.", exp.UTC().Format(time.RFC3339)))
	}
	iat, ok := numericDate(c["iat"])
	switch {
	case !ok:
		return login{}, invalidToken("The token has no valid iat claim.")
	case iat.After(now.Add(clockLeeway)):
		return login{}, invalidToken("The token is issued in the future (iat).")
	}
	if v, present := c["nbf"]; present {
		nbf, ok := numericDate(v)
		if !ok {
			return login{}, invalidToken("The token's nbf claim is not a number.")
		}
		if nbf.After(now.Add(clockLeeway)) {
			return login{}, invalidToken("The token is not valid yet (nbf).")
		}
	}
	sub, _ := c["sub"].(string)
	switch {
	case sub == "":
		return login{}, invalidToken("The token has no sub claim.")
	case len(sub) > maxSubjectLen:
		return login{}, invalidToken(fmt.Sprintf("The token's sub claim is longer than %d bytes.", maxSubjectLen))
	}
	return login{issuer: op.Issuer, subject: sub}, nil
}

// audiences reads aud, a string or an array of strings; other values have
// no audience.
func audiences(aud any) []string {
	switch a := aud.(type) {
	case string:
		return []string{a}
	case []any:
		var auds []string
		for _, v := range a {
			if s, ok := v.(string); ok {
				auds = append(auds, s)
			}
		}
		return auds
	}
	return nil
}

// numericDate reads a JWT NumericDate: seconds since the epoch, a JSON
// number.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
