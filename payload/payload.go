// Package payload builds the silent push sync notifications for APNs and
// FCM. Its functions are pure: they do no I/O and read no clock (the caller
// passes the time), so their output is fixed by their input and checked
// against golden files.
//
// Every notification carries the five keys Amazon Cognito push sync sent,
// which the AWS Mobile SDKs read: source ("cognito-sync"), identityPoolId,
// identityId, datasetName and syncCount.
package payload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushsync/pushsync/sync/cognito"
)

// Change is what a push reports: a dataset of an identity has a new sync
// count.
type Change struct {
	IdentityPoolID string
	IdentityID     string
	DatasetName    string
	SyncCount      int64
}

// Size limits of the platforms, in bytes.
const (
	// MaxAPNsPayload is APNs' limit for a notification payload.
	MaxAPNsPayload = 4096
	// MaxFCMData is FCM's limit for the data of a message.
	MaxFCMData = 4096
	// MaxCollapseID is APNs' limit for apns-collapse-id.
	MaxCollapseID = 64
)

// ErrTooLarge is returned for a notification over its platform's size limit.
var ErrTooLarge = errors.New("payload: notification too large")

// APNs header values for a background notification.
const (
	APNsPushTypeBackground = "background"
	// APNsPriorityBackground is the priority Apple requires for a
	// notification that only sets content-available.
	APNsPriorityBackground = 5
)

// APNsNotification is a background notification ready for apns2: the JSON
// payload and the header values.
type APNsNotification struct {
	Payload    []byte
	PushType   string
	Priority   int
	Topic      string
	CollapseID string
	// Expiration is when APNs stops trying to deliver it.
	Expiration time.Time
}

// APNs builds the background notification of a change for an app with the
// given topic (bundle id), expiring at expiration:
//
//	{"aps":{"content-available":1},"data":{"source":"cognito-sync","identityPoolId":…,"identityId":…,"datasetName":…,"syncCount":…}}
//
// syncCount is a JSON number. The collapse id is per dataset, so a newer
// change to a dataset replaces an undelivered older one.
func APNs(c Change, topic string, expiration time.Time) (APNsNotification, error) {
	buf := make([]byte, 0, 160+len(c.IdentityPoolID)+len(c.IdentityID)+len(c.DatasetName))
	buf = append(buf, `{"aps":{"content-available":1},"data":{"source":"`...)
	buf = append(buf, cognito.Source...)
	buf = append(buf, `","identityPoolId":`...)
	buf = appendString(buf, c.IdentityPoolID)
	buf = append(buf, `,"identityId":`...)
	buf = appendString(buf, c.IdentityID)
	buf = append(buf, `,"datasetName":`...)
	buf = appendString(buf, c.DatasetName)
	buf = append(buf, `,"syncCount":`...)
	buf = strconv.AppendInt(buf, c.SyncCount, 10)
	buf = append(buf, "}}"...)
	if len(buf) > MaxAPNsPayload {
		return APNsNotification{}, fmt.Errorf("%w: APNs payload of %d bytes is over %d", ErrTooLarge, len(buf), MaxAPNsPayload)
	}
	return APNsNotification{
		Payload:    buf,
		PushType:   APNsPushTypeBackground,
		Priority:   APNsPriorityBackground,
		Topic:      topic,
		CollapseID: CollapseID(c.DatasetName),
		Expiration: expiration,
	}, nil
}

// CollapseID returns the collapse id (APNs) and collapse key (FCM) of a
// dataset: its name when that fits APNs' 64-byte limit, otherwise a prefix
// of the name and a hash of the whole, which stays unique per dataset.
func CollapseID(dataset string) string {
	if len(dataset) <= MaxCollapseID {
		return dataset
	}
	sum := sha256.Sum256([]byte(dataset))
	cut := MaxCollapseID - 17
	for cut > 0 && !utf8.RuneStart(dataset[cut]) {
		cut--
	}
	return dataset[:cut] + "~" + hex.EncodeToString(sum[:8])
}

// FCMPriority is the Android delivery priority of a message.
type FCMPriority string

// Android priorities. Normal suits background sync; high may wake a
// dozing device, and Android demotes apps that send high-priority
// messages without showing a notification.
const (
	FCMPriorityNormal FCMPriority = "normal"
	FCMPriorityHigh   FCMPriority = "high"
)

// FCM builds the data-only message of a change for a registration token:
// the five keys flat in data, every value a string (syncCount in decimal),
// with the Android priority, a time to live and the dataset's collapse key.
func FCM(c Change, token string, priority FCMPriority, ttl time.Duration) (*messaging.Message, error) {
	data := map[string]string{
		"source":         cognito.Source,
		"identityPoolId": c.IdentityPoolID,
		"identityId":     c.IdentityID,
		"datasetName":    c.DatasetName,
		"syncCount":      strconv.FormatInt(c.SyncCount, 10),
	}
	size := 0
	for k, v := range data {
		size += len(k) + len(v)
	}
	if size > MaxFCMData {
		return nil, fmt.Errorf("%w: FCM data of %d bytes is over %d", ErrTooLarge, size, MaxFCMData)
	}
	if priority == "" {
		priority = FCMPriorityNormal
	}
	return &messaging.Message{
		Token: token,
		Data:  data,
		Android: &messaging.AndroidConfig{
			Priority:    string(priority),
			TTL:         &ttl,
			CollapseKey: CollapseID(c.DatasetName),
		},
	}, nil
}

// appendString appends s as a JSON string.
func appendString(buf []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
