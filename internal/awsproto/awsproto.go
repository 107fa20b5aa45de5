// Package awsproto writes answers the way AWS JSON services do, so that AWS
// SDK clients decode them: errors as an HTTP status, the x-amzn-ErrorType
// header and a {"__type","message"} body; results as JSON.
package awsproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/loglimit"
)

// Content types of the two AWS JSON protocols pushsync speaks.
const (
	// RESTJSON is the content type of REST-JSON services (Cognito Sync).
	RESTJSON = "application/json"
	// JSON11 is the content type of JSON 1.1 services (Cognito Identity).
	JSON11 = "application/x-amz-json-1.1"
)

// Error is an error answer: an HTTP status, the error code clients match
// (Type, such as NotAuthorizedException) and a message for people.
type Error struct {
	Status  int
	Type    string
	Message string
}

// Error returns the error's type and message.
func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Errorf returns an Error with a formatted message.
func Errorf(status int, typ, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// Internal is the answer to a failure on the server's side; the request id
// leads to its log line.
func Internal() *Error {
	return Errorf(http.StatusInternalServerError, "InternalErrorException", "internal error; the request id identifies it in the server log")
}

// WriteError writes e with the given content type.
func WriteError(w http.ResponseWriter, contentType string, e *Error) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-ErrorType", e.Type)
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.Type, e.Message})
}

// WriteJSON writes v as the JSON result, with status.
func WriteJSON(w http.ResponseWriter, contentType string, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// RefusalLogEvery is how often refusals of one error type are logged at
// info level; the others go at debug level.
const RefusalLogEvery = 10 * time.Second

// Refusals limits the info lines of refused requests to one per error type
// every RefusalLogEvery, so that a flood of bad requests does not flood the
// log; that line counts the others (similar_not_logged).
type Refusals = loglimit.Limiter[string]

// NewRefusals returns a Refusals for one server.
func NewRefusals() *Refusals { return loglimit.New[string](RefusalLogEvery) }

// Fail logs err and writes it: an *Error as it is (refusals at info level,
// as refusals allows, else at debug level; server faults at error level),
// anything else as InternalErrorException, whose details go only to the
// log. It returns the status written.
func Fail(w http.ResponseWriter, contentType string, log zerolog.Logger, refusals *Refusals, err error) int {
	var e *Error
	switch {
	case !errors.As(err, &e):
		log.Error().Err(err).Msg("request failed")
		e = Internal()
	case e.Status >= 500:
		log.Error().Str("error", e.Message).Msg("request failed")
	default:
		refusals.Event(log, zerolog.InfoLevel, e.Type, time.Now()).Str("error_type", e.Type).Str("error", e.Message).Msg("request refused")
	}
	WriteError(w, contentType, e)
	return e.Status
}
