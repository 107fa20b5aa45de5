package fcmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FCM error codes carried in the google.firebase.fcm.v1.FcmError detail.
const (
	// ErrorCodeUnregistered means the registration token is no longer valid.
	ErrorCodeUnregistered = "UNREGISTERED"
	// ErrorCodeInvalidArgument means the request or the token is invalid.
	ErrorCodeInvalidArgument = "INVALID_ARGUMENT"
	// ErrorCodeSenderIDMismatch means the token belongs to another sender.
	ErrorCodeSenderIDMismatch = "SENDER_ID_MISMATCH"
	// ErrorCodeQuotaExceeded means a sending quota was exhausted.
	ErrorCodeQuotaExceeded = "QUOTA_EXCEEDED"
	// ErrorCodeUnavailable means FCM is overloaded.
	ErrorCodeUnavailable = "UNAVAILABLE"
	// ErrorCodeInternal means FCM failed internally.
	ErrorCodeInternal = "INTERNAL"
	// ErrorCodeThirdPartyAuthError means APNs or web push rejected the
	// project's credentials.
	ErrorCodeThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR"
)

// Failure describes an error the emulator returns instead of accepting a
// message. Zero fields are filled in: a known ErrorCode supplies the HTTP
// status, status and message FCM uses with it; Status and HTTPStatus supply
// each other; Message defaults to Google's canonical text for the status.
type Failure struct {
	// HTTPStatus is the response status code, such as 404.
	HTTPStatus int
	// Status is the google.rpc status name, such as NOT_FOUND.
	Status string
	// ErrorCode is the FcmError detail code, such as UNREGISTERED; empty
	// means the response carries no FcmError detail.
	ErrorCode string
	// Message is the human-readable error message.
	Message string
	// Field, if set, adds a google.rpc.BadRequest detail with a field
	// violation for this field, such as message.token.
	Field string
	// RetryAfter, if positive, is sent as a Retry-After header in seconds.
	RetryAfter time.Duration
	// Times is how many requests the failure applies to; 0 means forever.
	Times int
}

// Unregistered returns the failure FCM gives for a token that is no longer
// valid: 404 NOT_FOUND with errorCode UNREGISTERED.
func Unregistered() Failure {
	return Failure{HTTPStatus: 404, Status: "NOT_FOUND", ErrorCode: ErrorCodeUnregistered,
		Message: "Requested entity was not found."}
}

// SenderIDMismatch returns the failure FCM gives for a token registered to
// another sender: 403 PERMISSION_DENIED with errorCode SENDER_ID_MISMATCH.
func SenderIDMismatch() Failure {
	return Failure{HTTPStatus: 403, Status: "PERMISSION_DENIED", ErrorCode: ErrorCodeSenderIDMismatch,
		Message: "SenderId mismatch"}
}

// InvalidRegistration returns the failure FCM gives for a malformed
// registration token: 400 INVALID_ARGUMENT with errorCode INVALID_ARGUMENT
// and a field violation on message.token.
func InvalidRegistration() Failure {
	return Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", ErrorCode: ErrorCodeInvalidArgument,
		Message: "The registration token is not a valid FCM registration token", Field: "message.token"}
}

// QuotaExceeded returns the failure FCM gives when a sending quota is
// exhausted: 429 RESOURCE_EXHAUSTED with errorCode QUOTA_EXCEEDED and, if
// retryAfter is positive, a Retry-After header.
func QuotaExceeded(retryAfter time.Duration) Failure {
	return Failure{HTTPStatus: 429, Status: "RESOURCE_EXHAUSTED", ErrorCode: ErrorCodeQuotaExceeded,
		Message:    "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
		RetryAfter: retryAfter}
}

// Unavailable returns the failure FCM gives when it is overloaded: 503
// UNAVAILABLE with errorCode UNAVAILABLE. The SDK retries 503 up to four
// times, so use Times or a context deadline.
func Unavailable() Failure {
	return Failure{HTTPStatus: 503, Status: "UNAVAILABLE", ErrorCode: ErrorCodeUnavailable,
		Message: "The service is currently unavailable."}
}

// Internal returns the failure FCM gives for an internal error: 500 INTERNAL
// with errorCode INTERNAL.
func Internal() Failure {
	return Failure{HTTPStatus: 500, Status: "INTERNAL", ErrorCode: ErrorCodeInternal,
		Message: "Internal error encountered."}
}

// ThirdPartyAuthError returns the failure FCM gives when APNs or web push
// rejected the project's credentials: 401 UNAUTHENTICATED with errorCode
// THIRD_PARTY_AUTH_ERROR.
func ThirdPartyAuthError() Failure {
	return Failure{HTTPStatus: 401, Status: "UNAUTHENTICATED", ErrorCode: ErrorCodeThirdPartyAuthError,
		Message: "Auth error from APNS or Web Push Service"}
}

func presetFor(code string) (Failure, bool) {
	switch code {
	case ErrorCodeUnregistered:
		return Unregistered(), true
	case ErrorCodeSenderIDMismatch:
		return SenderIDMismatch(), true
	case ErrorCodeInvalidArgument:
		return Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", ErrorCode: code,
			Message: "Request contains an invalid argument."}, true
	case ErrorCodeQuotaExceeded:
		return QuotaExceeded(0), true
	case ErrorCodeUnavailable:
		return Unavailable(), true
	case ErrorCodeInternal:
		return Internal(), true
	case ErrorCodeThirdPartyAuthError, "APNS_AUTH_ERROR":
		f := ThirdPartyAuthError()
		f.ErrorCode = code
		return f, true
	}
	return Failure{}, false
}

// statusHTTP maps a google.rpc status name to its HTTP status code.
func statusHTTP(status string) (int, bool) {
	switch status {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return 400, true
	case "UNAUTHENTICATED":
		return 401, true
	case "PERMISSION_DENIED":
		return 403, true
	case "NOT_FOUND":
		return 404, true
	case "ALREADY_EXISTS", "ABORTED":
		return 409, true
	case "RESOURCE_EXHAUSTED":
		return 429, true
	case "CANCELLED":
		return 499, true
	case "UNKNOWN", "INTERNAL", "DATA_LOSS":
		return 500, true
	case "UNIMPLEMENTED":
		return 501, true
	case "UNAVAILABLE":
		return 503, true
	case "DEADLINE_EXCEEDED":
		return 504, true
	}
	return 0, false
}

// httpStatusName maps an HTTP status code to a google.rpc status name.
func httpStatusName(code int) string {
	switch code {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 409:
		return "ABORTED"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 499:
		return "CANCELLED"
	case 500:
		return "INTERNAL"
	case 501:
		return "UNIMPLEMENTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	return "UNKNOWN"
}

// canonicalMessage is Google's default message for a status.
func canonicalMessage(status string) string {
	switch status {
	case "INVALID_ARGUMENT":
		return "Request contains an invalid argument."
	case "NOT_FOUND":
		return "Requested entity was not found."
	case "PERMISSION_DENIED":
		return "The caller does not have permission"
	case "UNAUTHENTICATED":
		return msgUnauthenticated
	case "RESOURCE_EXHAUSTED":
		return "Resource has been exhausted (e.g. check quota)."
	case "INTERNAL":
		return "Internal error encountered."
	case "UNAVAILABLE":
		return "The service is currently unavailable."
	case "DEADLINE_EXCEEDED":
		return "The request timed out."
	case "ABORTED":
		return "The operation was aborted."
	case "UNIMPLEMENTED":
		return "Operation is not implemented, or supported, or enabled."
	}
	return ""
}

// msgUnauthenticated is Google's message for a missing or bad access token.
const msgUnauthenticated = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."

// normalize fills in the zero fields of f and checks the result.
func (f Failure) normalize() (Failure, error) {
	if p, ok := presetFor(f.ErrorCode); ok {
		if f.HTTPStatus == 0 && f.Status == "" {
			f.HTTPStatus, f.Status = p.HTTPStatus, p.Status
		}
		if f.Message == "" {
			f.Message = p.Message
		}
	}
	if f.HTTPStatus == 0 && f.Status == "" {
		f.HTTPStatus, f.Status = 500, "INTERNAL"
	}
	if f.HTTPStatus == 0 {
		code, ok := statusHTTP(f.Status)
		if !ok {
			return f, fmt.Errorf("unknown status %q", f.Status)
		}
		f.HTTPStatus = code
	}
	if f.Status == "" {
		f.Status = httpStatusName(f.HTTPStatus)
	}
	if f.HTTPStatus < 400 || f.HTTPStatus > 599 {
		return f, fmt.Errorf("http status %d is not an error status", f.HTTPStatus)
	}
	if f.Message == "" {
		f.Message = canonicalMessage(f.Status)
		if f.Message == "" {
			f.Message = http.StatusText(f.HTTPStatus)
		}
	}
	if f.Times < 0 {
		return f, errors.New("times must not be negative")
	}
	if f.RetryAfter < 0 {
		return f, errors.New("retry after must not be negative")
	}
	return f, nil
}

// failureJSON is the control API form of a Failure.
type failureJSON struct {
	HTTPStatus int             `json:"httpStatus,omitempty"`
	Status     string          `json:"status,omitempty"`
	ErrorCode  string          `json:"errorCode,omitempty"`
	Message    string          `json:"message,omitempty"`
	Field      string          `json:"field,omitempty"`
	RetryAfter json.RawMessage `json:"retryAfter,omitempty"`
	Times      int             `json:"times,omitempty"`
}

// MarshalJSON encodes f for the control API, with retryAfter as a Go
// duration string such as "30s".
func (f Failure) MarshalJSON() ([]byte, error) {
	j := failureJSON{HTTPStatus: f.HTTPStatus, Status: f.Status, ErrorCode: f.ErrorCode,
		Message: f.Message, Field: f.Field, Times: f.Times}
	if f.RetryAfter > 0 {
		j.RetryAfter = json.RawMessage(strconv.Quote(f.RetryAfter.String()))
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the control API form of a Failure; retryAfter may
// be a Go duration string ("30s") or a number of seconds.
func (f *Failure) UnmarshalJSON(b []byte) error {
	var j failureJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Failure{HTTPStatus: j.HTTPStatus, Status: j.Status, ErrorCode: j.ErrorCode,
		Message: j.Message, Field: j.Field, Times: j.Times}
	if len(j.RetryAfter) > 0 && string(j.RetryAfter) != "null" {
		var str string
		var secs float64
		switch {
		case json.Unmarshal(j.RetryAfter, &str) == nil:
			d, err := time.ParseDuration(str)
			if err != nil {
				return fmt.Errorf("retryAfter: %w", err)
			}
			f.RetryAfter = d
		case json.Unmarshal(j.RetryAfter, &secs) == nil:
			f.RetryAfter = time.Duration(secs * float64(time.Second))
		default:
			return errors.New("retryAfter must be a duration string or a number of seconds")
		}
	}
	return nil
}

type failureState struct {
	f         Failure
	remaining int // 0 = forever
}

// FailToken makes requests for token fail with f, for f.Times requests or
// forever; it replaces any failure already set for token. Invalid failures
// (an unknown Status, or an HTTPStatus that is not an error) panic.
func (s *Server) FailToken(token string, f Failure) {
	if err := s.setTokenFailure(token, f); err != nil {
		panic("fcmtest: " + err.Error())
	}
}

func (s *Server) setTokenFailure(token string, f Failure) error {
	f, err := f.normalize()
	if err != nil {
		return err
	}
	s.failMu.Lock()
	s.failTok[token] = &failureState{f: f, remaining: f.Times}
	s.updateFailCount()
	s.failMu.Unlock()
	return nil
}

// FailAll makes every request that has no token-specific failure fail with
// *f, for f.Times requests or forever; nil removes it. Invalid failures
// panic, as in FailToken.
func (s *Server) FailAll(f *Failure) {
	if err := s.setAllFailure(f); err != nil {
		panic("fcmtest: " + err.Error())
	}
}

func (s *Server) setAllFailure(f *Failure) error {
	var st *failureState
	if f != nil {
		nf, err := f.normalize()
		if err != nil {
			return err
		}
		st = &failureState{f: nf, remaining: nf.Times}
	}
	s.failMu.Lock()
	s.failAll = st
	s.updateFailCount()
	s.failMu.Unlock()
	return nil
}

// ClearFailure removes the failure set for token, if any.
func (s *Server) ClearFailure(token string) {
	s.failMu.Lock()
	delete(s.failTok, token)
	s.updateFailCount()
	s.failMu.Unlock()
}

// ClearFailures removes all token failures and the FailAll failure.
func (s *Server) ClearFailures() {
	s.failMu.Lock()
	clear(s.failTok)
	s.failAll = nil
	s.updateFailCount()
	s.failMu.Unlock()
}

// updateFailCount must be called with failMu held.
func (s *Server) updateFailCount() {
	n := len(s.failTok)
	if s.failAll != nil {
		n++
	}
	s.failCount.Store(int32(n))
}

// takeFailure returns the failure that applies to a request for token, and
// consumes one of its Times.
func (s *Server) takeFailure(token string) (Failure, bool) {
	if s.failCount.Load() == 0 {
		return Failure{}, false
	}
	s.failMu.Lock()
	defer s.failMu.Unlock()
	st, ok := s.failTok[token]
	if !ok || token == "" {
		st = s.failAll
	}
	if st == nil {
		return Failure{}, false
	}
	f := st.f
	if st.remaining > 0 {
		st.remaining--
		if st.remaining == 0 {
			if st == s.failAll {
				s.failAll = nil
			} else {
				delete(s.failTok, token)
			}
			s.updateFailCount()
		}
	}
	return f, true
}
