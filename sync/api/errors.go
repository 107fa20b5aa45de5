package api

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error is an API error in the form AWS SDK clients decode: an HTTP status,
// the x-amzn-ErrorType header and a {"__type","message"} body.
type Error struct {
	Status  int
	Type    string
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func newError(status int, typ, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
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

func internalError() *Error {
	return newError(http.StatusInternalServerError, "InternalErrorException", "internal error; the request id identifies it in the server log")
}

func unknownOperation(method, path string) *Error {
	return newError(http.StatusNotFound, "UnknownOperationException", "no operation is served at %s %s", method, path)
}

func writeError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", e.Type)
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.Type, e.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
