package identity

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error is an error answer in the form of the AWS JSON 1.1 protocol: an HTTP
// status, the x-amzn-ErrorType header and a {"__type","message"} body. AWS
// SDK clients of Cognito Identity take the error code from __type whatever
// the status is.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Type is the error code, such as NotAuthorizedException.
	Type string
	// Message is the human-readable text; it never holds a token.
	Message string
}

// Error returns the error's type and message.
func (e *Error) Error() string { return e.Type + ": " + e.Message }

func newError(status int, typ, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
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

func tooLarge(limit int64) *Error {
	return newError(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", "request body is larger than %d bytes", limit)
}

func internalError() *Error {
	return newError(http.StatusInternalServerError, "InternalErrorException", "internal error; the request id identifies it in the server log")
}

// contentType is the media type of JSON 1.1 requests and answers.
const contentType = "application/x-amz-json-1.1"

func writeError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-ErrorType", e.Type)
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.Type, e.Message})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}
