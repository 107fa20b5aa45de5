package sigv4

import (
	"fmt"
	"net/http"
)

// Error is an authentication failure. Code is the AWS error name that SDK
// clients understand (sent as x-amzn-ErrorType and "__type"), Message the
// text for the "message" member and Status the HTTP status to answer with.
// Use errors.Is with the Err… sentinels to tell the failures apart.
type Error struct {
	Code    string // AWS error name, e.g. "InvalidSignatureException"
	Message string // text for the "message" member of the error body
	Status  int    // HTTP status code to answer with

	kind *Error // the sentinel this error is an instance of; nil for sentinels
}

// Error returns the code and the message, separated by a colon.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is the sentinel that e is an instance of.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e.kind != nil && t == e.kind
}

// Sentinels for errors.Is. Each failure returned by Verify or
// ParseAuthorization is an *Error that matches exactly one of them and
// carries its Code and Status.
var (
	// ErrMissingAuthentication means the request carries no Authorization
	// header at all.
	ErrMissingAuthentication = &Error{
		Code:    "MissingAuthenticationTokenException",
		Message: "Missing Authentication Token",
		Status:  http.StatusForbidden,
	}
	// ErrIncompleteSignature means the Authorization header or the headers it
	// depends on are malformed or incomplete.
	ErrIncompleteSignature = &Error{
		Code:    "IncompleteSignatureException",
		Message: "The request signature does not conform to AWS standards.",
		Status:  http.StatusBadRequest,
	}
	// ErrInvalidSignature means the signature is well-formed but scoped to the
	// wrong service, region or date, or the payload hash header is wrong.
	ErrInvalidSignature = &Error{
		Code:    "InvalidSignatureException",
		Message: "The request signature is invalid.",
		Status:  http.StatusForbidden,
	}
	// ErrSignatureExpired means the request time is more than the allowed
	// clock skew away from the server's clock.
	ErrSignatureExpired = &Error{
		Code:    "InvalidSignatureException",
		Message: "Signature expired",
		Status:  http.StatusForbidden,
	}
	// ErrUnknownAccessKey means no credential exists for the access key id.
	// Lookup functions return it (or an error wrapping it) for unknown keys.
	ErrUnknownAccessKey = &Error{
		Code:    "UnrecognizedClientException",
		Message: msgInvalidToken,
		Status:  http.StatusForbidden,
	}
	// ErrExpiredToken means the request is signed correctly with a
	// temporary credential that has expired. AWS SDKs answer it by
	// fetching new credentials and retrying.
	ErrExpiredToken = &Error{
		Code:    "ExpiredTokenException",
		Message: msgExpiredToken,
		Status:  http.StatusForbidden,
	}
	// ErrInvalidSecurityToken means the X-Amz-Security-Token header does not
	// match the session token of the credential (or is missing or extra).
	ErrInvalidSecurityToken = &Error{
		Code:    "UnrecognizedClientException",
		Message: msgInvalidToken,
		Status:  http.StatusForbidden,
	}
	// ErrSignatureMismatch means the signature does not match the one computed
	// with the credential's secret.
	ErrSignatureMismatch = &Error{
		Code:    "InvalidSignatureException",
		Message: msgMismatch,
		Status:  http.StatusForbidden,
	}
)

const (
	msgInvalidToken = "The security token included in the request is invalid."
	msgExpiredToken = "The security token included in the request is expired"
	msgMismatch     = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method."
	msgContentSHA = "The provided 'x-amz-content-sha256' header does not match what was computed."
)

// newError returns an instance of the sentinel kind with the given message.
func newError(kind *Error, format string, args ...any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Code: kind.Code, Message: msg, Status: kind.Status, kind: kind}
}

// clip shortens client-supplied text quoted in error messages.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
