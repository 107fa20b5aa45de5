package api

import (
	"net/http"

	"github.com/pushsync/pushsync/internal/awsproto"
)

// Error is an API error in the form AWS SDK clients decode.
type Error = awsproto.Error

func newError(status int, typ, format string, args ...any) *Error {
	return awsproto.Errorf(status, typ, format, args...)
}

// The errors of the Cognito Sync model, and the generic AWS ones.
func invalidParameter(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "InvalidParameterException", format, args...)
}

func notAuthorized(format string, args ...any) *Error {
	return newError(http.StatusForbidden, "NotAuthorizedException", format, args...)
}

func resourceNotFound(format string, args ...any) *Error {
	return newError(http.StatusNotFound, "ResourceNotFoundException", format, args...)
}

func resourceConflict(format string, args ...any) *Error {
	return newError(http.StatusConflict, "ResourceConflictException", format, args...)
}

func invalidConfiguration(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "InvalidConfigurationException", format, args...)
}

func limitExceeded(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "LimitExceededException", format, args...)
}

func serialization(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "SerializationException", format, args...)
}

func tooLarge(limit int64) *Error {
	return newError(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", "request body is larger than %d bytes", limit)
}

func unknownOperation(method, path string) *Error {
	return newError(http.StatusNotFound, "UnknownOperationException", "no operation is served at %s %s", method, path)
}

func writeError(w http.ResponseWriter, e *Error) { awsproto.WriteError(w, awsproto.RESTJSON, e) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	awsproto.WriteJSON(w, awsproto.RESTJSON, status, v)
}
