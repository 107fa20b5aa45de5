package identity

import (
	"net/http"

	"github.com/pushsync/pushsync/internal/awsproto"
)

// Error is an error answer in the form of the AWS JSON 1.1 protocol: an HTTP
// status, the x-amzn-ErrorType header and a {"__type","message"} body. AWS
// SDK clients of Cognito Identity take the error code from __type whatever
// the status is.
type Error = awsproto.Error

func newError(status int, typ, format string, args ...any) *Error {
	return awsproto.Errorf(status, typ, format, args...)
}

// The errors of the Cognito Identity model, and the generic AWS ones. The
// model gives its errors no status, so the real service answers them with
// 400; pushsync does too, except ResourceNotFoundException (404, as the
// Cognito Sync side answers it) and the server's own faults.
func invalidParameter(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "InvalidParameterException", format, args...)
}

func notAuthorized(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "NotAuthorizedException", format, args...)
}

// invalidToken is the NotAuthorizedException of a login token that fails
// verification; reason is a full sentence.
func invalidToken(reason string) *Error {
	return notAuthorized("Invalid login token. %s", reason)
}

func resourceNotFound(format string, args ...any) *Error {
	return newError(http.StatusNotFound, "ResourceNotFoundException", format, args...)
}

func externalService(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "ExternalServiceException", format, args...)
}

func serialization(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "SerializationException", format, args...)
}

func unknownOperation(status int, format string, args ...any) *Error {
	return newError(status, "UnknownOperationException", format, args...)
}

// tooManyRequests is the refusal of a call over the rate limit. Its code
// is one AWS SDKs retry with backoff.
func tooManyRequests(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "TooManyRequestsException", format, args...)
}

func tooLarge(limit int64) *Error {
	return newError(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", "request body is larger than %d bytes", limit)
}

// contentType is the media type of JSON 1.1 requests and answers.
const contentType = awsproto.JSON11

func writeJSON(w http.ResponseWriter, v any) {
	awsproto.WriteJSON(w, contentType, http.StatusOK, v)
}
