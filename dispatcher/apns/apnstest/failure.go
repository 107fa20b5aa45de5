package apnstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Failure is a configured error answer for pushes that pass validation.
//
// In JSON (control API) it reads
// {"status":410,"reason":"Unregistered","timestamp":"2025-01-02T15:04:05Z","retryAfter":"30s","times":2};
// timestamp may also be milliseconds since the epoch and retryAfter a number
// of seconds.
type Failure struct {
	// Status is the HTTP status to answer with; zero means 500.
	Status int
	// Reason is the APNs reason in the JSON body; empty means the usual
	// reason for Status (Unregistered for 410, TooManyRequests for 429, …).
	Reason string
	// Timestamp is reported, in milliseconds since the epoch, with status
	// 410; zero means the time of the push.
	Timestamp time.Time
	// RetryAfter, if positive, is sent as a Retry-After header in whole
	// seconds, rounded up.
	RetryAfter time.Duration
	// Times is how many pushes fail before pushes succeed again; zero (or
	// less) means every push fails until the failure is cleared.
	Times int
}

// Unregistered returns a failure answering 410 Unregistered with the given
// timestamp, the last time APNs confirmed the token was no longer valid.
func Unregistered(at time.Time) Failure {
	return Failure{Status: http.StatusGone, Reason: reasonUnregistered, Timestamp: at}
}

// BadDeviceToken returns a failure answering 400 BadDeviceToken, as APNs does
// for a token of the wrong environment.
func BadDeviceToken() Failure {
	return Failure{Status: http.StatusBadRequest, Reason: reasonBadDeviceToken}
}

// DeviceTokenNotForTopic returns a failure answering 400
// DeviceTokenNotForTopic.
func DeviceTokenNotForTopic() Failure {
	return Failure{Status: http.StatusBadRequest, Reason: reasonDeviceTokenNotForTopic}
}

// TooManyRequests returns a failure answering 429 TooManyRequests, with a
// Retry-After header when retryAfter is positive.
func TooManyRequests(retryAfter time.Duration) Failure {
	return Failure{Status: http.StatusTooManyRequests, Reason: reasonTooManyRequests, RetryAfter: retryAfter}
}

// ServiceUnavailable returns a failure answering 503 ServiceUnavailable.
func ServiceUnavailable() Failure {
	return Failure{Status: http.StatusServiceUnavailable, Reason: reasonServiceUnavailable}
}

// InternalServerError returns a failure answering 500 InternalServerError.
func InternalServerError() Failure {
	return Failure{Status: http.StatusInternalServerError, Reason: reasonInternalServerError}
}

// answer returns the status and reason to send.
func (f *Failure) answer() (int, string) {
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	reason := f.Reason
	if reason == "" {
		switch status {
		case http.StatusGone:
			reason = reasonUnregistered
		case http.StatusTooManyRequests:
			reason = reasonTooManyRequests
		case http.StatusServiceUnavailable:
			reason = reasonServiceUnavailable
		case http.StatusRequestEntityTooLarge:
			reason = reasonPayloadTooLarge
		case http.StatusForbidden:
			reason = reasonInvalidProviderToken
		case http.StatusBadRequest:
			reason = reasonBadDeviceToken
		default:
			reason = reasonInternalServerError
		}
	}
	return status, reason
}

// FailToken makes pushes to deviceToken (compared case-insensitively) that
// pass validation fail with f, replacing any failure set for it before.
func (s *Server) FailToken(deviceToken string, f Failure) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	s.failures[strings.ToLower(deviceToken)] = &f
	s.anyFailure.Store(true)
}

// ClearToken forgets the failure configured for deviceToken, if any.
func (s *Server) ClearToken(deviceToken string) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	delete(s.failures, strings.ToLower(deviceToken))
	s.anyFailure.Store(len(s.failures) > 0 || s.failAll != nil)
}

// FailAll makes every push that passes validation, and has no failure of its
// own token, fail with *f, to simulate an outage; nil clears it.
func (s *Server) FailAll(f *Failure) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if f != nil {
		c := *f
		f = &c
	}
	s.failAll = f
	s.anyFailure.Store(len(s.failures) > 0 || s.failAll != nil)
}

// ClearFailures forgets every configured failure, FailAll's included.
func (s *Server) ClearFailures() {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	clear(s.failures)
	s.failAll = nil
	s.anyFailure.Store(false)
}

// takeFailure returns the failure answering a push to token, if any, and
// counts it against the failure's Times.
func (s *Server) takeFailure(token string) *Failure {
	if !s.anyFailure.Load() {
		return nil
	}
	s.failMu.Lock()
	defer s.failMu.Unlock()
	key := strings.ToLower(token)
	f := s.failures[key]
	if f == nil {
		f = s.failAll
		if f == nil {
			return nil
		}
	}
	answer := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			if f == s.failAll {
				s.failAll = nil
			} else {
				delete(s.failures, key)
			}
			s.anyFailure.Store(len(s.failures) > 0 || s.failAll != nil)
		}
	}
	return &answer
}

type failureJSON struct {
	Status     int             `json:"status"`
	Reason     string          `json:"reason,omitempty"`
	Timestamp  json.RawMessage `json:"timestamp,omitempty"`
	RetryAfter json.RawMessage `json:"retryAfter,omitempty"`
	Times      int             `json:"times,omitempty"`
}

// MarshalJSON encodes f as described on Failure, with an RFC 3339 timestamp
// and a Go duration string for retryAfter.
func (f Failure) MarshalJSON() ([]byte, error) {
	out := failureJSON{Status: f.Status, Reason: f.Reason, Times: f.Times}
	if !f.Timestamp.IsZero() {
		out.Timestamp, _ = json.Marshal(f.Timestamp.Format(time.RFC3339Nano))
	}
	if f.RetryAfter > 0 {
		out.RetryAfter, _ = json.Marshal(f.RetryAfter.String())
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes f as described on Failure.
func (f *Failure) UnmarshalJSON(b []byte) error {
	var in failureJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	out := Failure{Status: in.Status, Reason: in.Reason, Times: in.Times}
	if out.Status != 0 && (out.Status < 400 || out.Status > 599) {
		return fmt.Errorf("apnstest: failure status %d is not an error status", out.Status)
	}
	if len(in.Timestamp) > 0 && string(in.Timestamp) != "null" {
		var ms int64
		var str string
		switch {
		case json.Unmarshal(in.Timestamp, &ms) == nil:
			out.Timestamp = time.UnixMilli(ms)
		case json.Unmarshal(in.Timestamp, &str) == nil:
			t, err := time.Parse(time.RFC3339Nano, str)
			if err != nil {
				return fmt.Errorf("apnstest: failure timestamp: %w", err)
			}
			out.Timestamp = t
		default:
			return errors.New("apnstest: failure timestamp must be RFC 3339 or milliseconds since the epoch")
		}
	}
	if len(in.RetryAfter) > 0 && string(in.RetryAfter) != "null" {
		var secs float64
		var str string
		switch {
		case json.Unmarshal(in.RetryAfter, &secs) == nil:
			out.RetryAfter = time.Duration(secs * float64(time.Second))
		case json.Unmarshal(in.RetryAfter, &str) == nil:
			d, err := time.ParseDuration(str)
			if err != nil {
				return fmt.Errorf("apnstest: failure retryAfter: %w", err)
			}
			out.RetryAfter = d
		default:
			return errors.New("apnstest: failure retryAfter must be a duration string or seconds")
		}
	}
	*f = out
	return nil
}
