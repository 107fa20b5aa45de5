// Package event is the contract between sync servers and the pushsync
// dispatcher: the DatasetChanged event, its JSON form, the NATS subject it is
// published on and its deduplication id, and the Publisher that sync servers
// use to put events on the JetStream stream.
//
// The JSON form is documented with an example in docs/events.md.
package event

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushsync/pushsync/sync/cognito"
)

// Version is the version of the event schema this package writes. Decode
// accepts events of this version and rejects newer ones.
const Version = 1

// MaxSize is the largest encoded event Decode accepts, in bytes. A valid
// event is well under 1 KiB.
const MaxSize = 4096

// MaxSyncCount is the largest sync count an event may carry, 2^53 - 1: the
// largest integer that a JSON number keeps exactly in every client (the
// push payload carries it) and that Redis scripts compare exactly.
const MaxSyncCount = 1<<53 - 1

// DatasetChanged says that a dataset of one identity has changed and now has
// the given sync count.
type DatasetChanged struct {
	// Version is the schema version; Publish sets it to [Version].
	Version int `json:"version"`
	// IdentityPoolID is the Cognito identity pool, e.g. "us-east-1:0f1e…".
	IdentityPoolID string `json:"identityPoolId"`
	// IdentityID is the identity whose dataset changed.
	IdentityID string `json:"identityId"`
	// DatasetName is the dataset that changed.
	DatasetName string `json:"datasetName"`
	// SyncCount is the dataset's sync count after the change (at least 1).
	SyncCount int64 `json:"syncCount"`
	// OriginDeviceID is the DeviceId of the device that made the change, if
	// known; that device gets no push for its own change.
	OriginDeviceID string `json:"originDeviceId,omitempty"`
	// ChangedAt is when the change was committed.
	ChangedAt time.Time `json:"changedAt"`
}

// ErrInvalid is wrapped by every error that Validate returns.
var ErrInvalid = errors.New("invalid event")

// Validate reports the first way in which the event breaks the contract.
func (e *DatasetChanged) Validate() error {
	if e.Version != Version {
		return fmt.Errorf("%w: version %d is not supported (want %d)", ErrInvalid, e.Version, Version)
	}
	for _, err := range []error{
		cognito.ValidateIdentityPoolID(e.IdentityPoolID),
		cognito.ValidateIdentityID(e.IdentityID),
		cognito.ValidateDatasetName(e.DatasetName),
	} {
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if e.SyncCount < 1 || e.SyncCount > MaxSyncCount {
		return fmt.Errorf("%w: syncCount must be from 1 to %d, got %d", ErrInvalid, int64(MaxSyncCount), e.SyncCount)
	}
	if e.OriginDeviceID != "" {
		if err := cognito.ValidateDeviceID(e.OriginDeviceID); err != nil {
			return fmt.Errorf("%w: originDeviceId: %w", ErrInvalid, err)
		}
	}
	if e.ChangedAt.IsZero() {
		return fmt.Errorf("%w: changedAt must be set", ErrInvalid)
	}
	return nil
}

// Subject returns the NATS subject the event is published on:
// prefix.<pool>.<identity>.<dataset>, each of the three tokens the unpadded
// base64url encoding of the raw value. Raw values never appear in a subject,
// so a dataset name holding '.' (or any other character) cannot add a token
// or form a wildcard, and one identity's events can be selected with a
// filter such as prefix.<pool>.<identity>.>.
func Subject(prefix string, e *DatasetChanged) string {
	var b strings.Builder
	b.Grow(len(prefix) + 3 + base64.RawURLEncoding.EncodedLen(len(e.IdentityPoolID)+len(e.IdentityID)+len(e.DatasetName)) + 3)
	b.WriteString(prefix)
	writeToken(&b, e.IdentityPoolID)
	writeToken(&b, e.IdentityID)
	writeToken(&b, e.DatasetName)
	return b.String()
}

// MsgID returns the JetStream deduplication id (the Nats-Msg-Id header) of
// the event: it is the same for the same pool, identity, dataset, sync
// count and change time (to the millisecond), so a publish that is retried
// is stored once. The time tells apart two changes with one sync count,
// which a Redis failover that lost the first can make.
func MsgID(e *DatasetChanged) string {
	var b strings.Builder
	writeToken(&b, e.IdentityPoolID)
	writeToken(&b, e.IdentityID)
	writeToken(&b, e.DatasetName)
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(e.SyncCount, 10))
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(e.ChangedAt.UnixMilli(), 10))
	return b.String()[1:]
}

func writeToken(b *strings.Builder, raw string) {
	b.WriteByte('.')
	enc := base64.RawURLEncoding
	buf := make([]byte, enc.EncodedLen(len(raw)))
	enc.Encode(buf, []byte(raw))
	b.Write(buf)
}

// Marshal validates the event and returns its JSON form.
func Marshal(e *DatasetChanged) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	c := *e
	c.ChangedAt = c.ChangedAt.UTC()
	return json.Marshal(&c)
}

// Reasons a message is rejected by Decode. They are bounded, for use as a
// metric label.
const (
	ReasonTooLarge           = "too_large"
	ReasonInvalidJSON        = "invalid_json"
	ReasonUnsupportedVersion = "unsupported_version"
	ReasonInvalidField       = "invalid_field"
	ReasonSubjectMismatch    = "subject_mismatch"
)

// DecodeError is returned by Decode for a message that is not a valid event.
type DecodeError struct {
	// Reason is one of the Reason constants.
	Reason string
	// Err says what exactly is wrong.
	Err error
}

func (e *DecodeError) Error() string { return "malformed event (" + e.Reason + "): " + e.Err.Error() }

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode parses and validates an event received on subject; the subject
// must be the one Subject gives for the event under prefix. Unknown JSON
// members are ignored, so that producers can add members before consumers
// know them.
func Decode(prefix, subject string, data []byte) (*DatasetChanged, error) {
	if len(data) > MaxSize {
		return nil, &DecodeError{ReasonTooLarge, fmt.Errorf("%d bytes is over the %d byte limit", len(data), MaxSize)}
	}
	var e DatasetChanged
	if err := json.Unmarshal(data, &e); err != nil { // also refuses data after the object
		return nil, &DecodeError{ReasonInvalidJSON, err}
	}
	if e.Version > Version || e.Version < 1 {
		return nil, &DecodeError{ReasonUnsupportedVersion, fmt.Errorf("version %d (this worker understands %d)", e.Version, Version)}
	}
	if err := e.Validate(); err != nil {
		return nil, &DecodeError{ReasonInvalidField, err}
	}
	e.ChangedAt = e.ChangedAt.UTC()
	if want := Subject(prefix, &e); subject != want {
		return nil, &DecodeError{ReasonSubjectMismatch, fmt.Errorf("published on %q, but the event belongs on %q", subject, want)}
	}
	return &e, nil
}
