package sigv4

import (
	"strings"
)

const (
	algorithm    = "AWS4-HMAC-SHA256"
	scopeTermSfx = "aws4_request"
)

// Authorization is a parsed SigV4 Authorization header.
type Authorization struct {
	AccessKeyID   string   // access key id of the Credential component
	Date          string   // YYYYMMDD of the credential scope
	Region        string   // region of the credential scope
	Service       string   // service of the credential scope
	SignedHeaders []string // lower-case, sorted, unique, includes "host"
	Signature     string   // 64 lower-case hex digits
}

// Scope returns the credential scope "date/region/service/aws4_request".
func (a *Authorization) Scope() string {
	return a.Date + "/" + a.Region + "/" + a.Service + "/" + scopeTermSfx
}

// String renders the header in the form the AWS SDKs send it; parsing the
// result gives back an equal Authorization.
func (a *Authorization) String() string {
	return algorithm + " Credential=" + a.AccessKeyID + "/" + a.Scope() +
		", SignedHeaders=" + strings.Join(a.SignedHeaders, ";") +
		", Signature=" + a.Signature
}

// ParseAuthorization parses an "AWS4-HMAC-SHA256 Credential=…,
// SignedHeaders=…, Signature=…" header. It is strict: exactly those three
// components in any order, separated by commas with optional spaces; a
// credential scope of exactly five parts ending in aws4_request with an
// eight-digit date; signed header names lower-case, sorted, unique and
// including host; and a signature of 64 lower-case hex digits. Failures are
// *Error values matching ErrIncompleteSignature.
func ParseAuthorization(h string) (*Authorization, error) {
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != algorithm {
		if alg == "" {
			return nil, newError(ErrIncompleteSignature, "authorization header is empty or does not start with an algorithm")
		}
		return nil, newError(ErrIncompleteSignature, "Unsupported AWS 'algorithm': '%s'.", clip(alg))
	}
	var cred, signed, sig string
	var haveCred, haveSigned, haveSig bool
	for _, part := range strings.Split(rest, ",") {
		part = strings.Trim(part, " ")
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, newError(ErrIncompleteSignature,
				"'%s' not a valid key=value pair (missing equal-sign) in Authorization header.", clip(part))
		}
		var dst *string
		var seen *bool
		switch name {
		case "Credential":
			dst, seen = &cred, &haveCred
		case "SignedHeaders":
			dst, seen = &signed, &haveSigned
		case "Signature":
			dst, seen = &sig, &haveSig
		default:
			return nil, newError(ErrIncompleteSignature, "authorization header has an unknown component %q", clip(name))
		}
		if *seen {
			return nil, newError(ErrIncompleteSignature, "authorization header repeats the '%s' parameter", name)
		}
		*dst, *seen = val, true
	}
	switch {
	case !haveCred:
		return nil, newError(ErrIncompleteSignature, "Authorization header requires 'Credential' parameter.")
	case !haveSigned:
		return nil, newError(ErrIncompleteSignature, "Authorization header requires 'SignedHeaders' parameter.")
	case !haveSig:
		return nil, newError(ErrIncompleteSignature, "Authorization header requires 'Signature' parameter.")
	}

	a := &Authorization{}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != scopeTermSfx {
		return nil, newError(ErrIncompleteSignature,
			"Credential should be scoped to a valid region, service and date and end in 'aws4_request': '%s'.", clip(cred))
	}
	a.AccessKeyID, a.Date, a.Region, a.Service = scope[0], scope[1], scope[2], scope[3]
	if !validAccessKeyID(a.AccessKeyID) {
		return nil, newError(ErrIncompleteSignature, "credential has a malformed access key id")
	}
	if !allDigits(a.Date, 8) {
		return nil, newError(ErrIncompleteSignature, "credential scope date %q is not 8 digits", clip(a.Date))
	}
	if !validScopeName(a.Region) {
		return nil, newError(ErrIncompleteSignature, "credential scope region %q is malformed", clip(a.Region))
	}
	if !validScopeName(a.Service) {
		return nil, newError(ErrIncompleteSignature, "credential scope service %q is malformed", clip(a.Service))
	}

	a.SignedHeaders = strings.Split(signed, ";")
	hasHost := false
	for i, name := range a.SignedHeaders {
		if !validHeaderName(name) {
			return nil, newError(ErrIncompleteSignature, "signed header name %q is empty or not lower-case", clip(name))
		}
		if i > 0 && name <= a.SignedHeaders[i-1] {
			return nil, newError(ErrIncompleteSignature, "signed headers are not sorted and unique at %q", clip(name))
		}
		if name == "host" {
			hasHost = true
		}
	}
	if !hasHost {
		return nil, newError(ErrIncompleteSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}

	if len(sig) != 64 || !isLowerHex(sig) {
		return nil, newError(ErrIncompleteSignature, "signature must be 64 lower-case hex digits")
	}
	a.Signature = sig
	return a, nil
}

func allDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// validAccessKeyID accepts 1 to 128 visible ASCII characters other than the
// delimiters of the header (comma, slash, semicolon, equal sign).
func validAccessKeyID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ',' || c == '/' || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

// validScopeName accepts region and service names: 1 to 64 characters of
// letters, digits, '-', '_' and '.'.
func validScopeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validHeaderName accepts a non-empty lower-case HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
