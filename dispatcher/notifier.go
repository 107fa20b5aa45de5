package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// Push is one notification for one device: the change, the device and the
// platform app to send it through.
type Push struct {
	Event  *event.DatasetChanged
	Device registry.Device
	App    *registry.App
	// Expires is when the push is stale: the change time plus the push
	// TTL. Notifiers pass it on (apns-expiration, FCM TTL). Zero means the
	// notifier's own TTL from now.
	Expires time.Time
}

// Notifier sends pushes through one push service. Implementations keep one
// long-lived client per platform app and must be safe for concurrent use.
type Notifier interface {
	// Notify sends one push and returns nil once the service has accepted
	// it. Any other outcome is returned as an *Error that classifies it;
	// an error of another type counts as a retryable transport failure.
	Notify(ctx context.Context, p *Push) error
}

// NotifierFunc adapts a function to the Notifier interface.
type NotifierFunc func(ctx context.Context, p *Push) error

// Notify calls f(ctx, p).
func (f NotifierFunc) Notify(ctx context.Context, p *Push) error { return f(ctx, p) }

// Class says what the dispatcher does about a failed push.
type Class int

// The classes of push failure.
const (
	// Retry: a temporary failure (the service is down, busy or timed
	// out); the push is tried again later.
	Retry Class = iota + 1
	// Permanent: this push can never succeed as it is; it is dropped and
	// counted.
	Permanent
	// TokenDead: the device token is no longer valid; the push is dropped
	// and counted.
	TokenDead
	// Config: the platform app's credentials or settings are wrong; the
	// event is kept and retried until an operator fixes them.
	Config
)

func (c Class) String() string {
	switch c {
	case Retry:
		return "retry"
	case Permanent:
		return "permanent"
	case TokenDead:
		return "token_dead"
	case Config:
		return "config"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is a classified push failure.
type Error struct {
	Class Class
	// Reason is the service's own short reason (BadDeviceToken,
	// UNREGISTERED, …) or a transport reason; it comes from a bounded set
	// and is used as a metric label.
	Reason string
	// RetryAfter is how long the service asked us to wait, if it did.
	RetryAfter time.Duration
	// DeadSince is, for TokenDead, when the service learned the token was
	// dead (APNs reports it with 410); zero if it did not say.
	DeadSince time.Time
	// ForApp is set, for TokenDead, when the service refused the token as
	// not one of the app's topic, environment or project (APNs
	// BadDeviceToken and DeviceTokenNotForTopic, FCM SENDER_ID_MISMATCH):
	// the token is dead only if the app's own settings are right, which an
	// accepted push shows. Until the app has accepted one, the device is
	// kept and the push tried again.
	ForApp bool
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	s := e.Class.String() + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ParseRetryAfter reads an HTTP Retry-After value, seconds or an HTTP date,
// as the wait it asks for; an empty or unreadable value asks for none.
func ParseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(time.Until(at), 0)
	}
	return 0
}

// Classify returns err as an *Error; an error that is not one is a
// retryable transport failure.
func Classify(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	reason := "transport"
	if errors.Is(err, context.DeadlineExceeded) {
		reason = "timeout"
	}
	return &Error{Class: Retry, Reason: reason, Err: err}
}
