package event

import (
	"context"
	"fmt"
	"strings"
	"time"

	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeviceRemoved says that pushsync removed a device, with its
// subscriptions, because its push service declared the device's token dead
// (APNs Unregistered, BadDeviceToken or DeviceTokenNotForTopic; FCM
// UNREGISTERED or SENDER_ID_MISMATCH). Apps learn of it at their next
// RegisterDevice, which registers the device again with a fresh token.
type DeviceRemoved struct {
	Version        int    `json:"version"`
	IdentityPoolID string `json:"identityPoolId"`
	IdentityID     string `json:"identityId"`
	DeviceID       string `json:"deviceId"`
	Platform       string `json:"platform"`
	// Reason is the push service's reason, e.g. Unregistered.
	Reason    string    `json:"reason"`
	RemovedAt time.Time `json:"removedAt"`
}

// DeviceRemovedSubject returns the subject of a DeviceRemoved event:
// prefix.removed.<pool>.<identity>.<device>, the ids base64url-encoded as
// in dataset events.
func DeviceRemovedSubject(prefix string, e *DeviceRemoved) string {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(".removed")
	writeToken(&b, e.IdentityPoolID)
	writeToken(&b, e.IdentityID)
	writeToken(&b, e.DeviceID)
	return b.String()
}

// PublishDeviceRemoved publishes a DeviceRemoved event on the device
// subject prefix the publisher was given.
func (p *Publisher) PublishDeviceRemoved(ctx context.Context, e *DeviceRemoved) error {
	if p.devicePrefix == "" {
		return fmt.Errorf("event: the publisher has no device subject prefix")
	}
	c := *e
	c.Version = Version
	c.RemovedAt = c.RemovedAt.UTC()
	data, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	subject := DeviceRemovedSubject(p.devicePrefix, &c)
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, subject[len(p.devicePrefix)+1:])
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(p.stream)); err != nil {
		return fmt.Errorf("event: publish %s: %w", subject, err)
	}
	return nil
}
