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
// subscriptions: because its push service declared the device's token dead
// (APNs Unregistered, BadDeviceToken or DeviceTokenNotForTopic; FCM
// UNREGISTERED or SENDER_ID_MISMATCH), or because an operator removed it
// (the admin API's DELETE of the device, pushsyncctl device remove).
// Apps learn of it at their next RegisterDevice, which registers the
// device again.
type DeviceRemoved struct {
	Version        int    `json:"version"`
	IdentityPoolID string `json:"identityPoolId"`
	IdentityID     string `json:"identityId"`
	DeviceID       string `json:"deviceId"`
	Platform       string `json:"platform"`
	// Reason is the push service's reason, e.g. Unregistered, or
	// ReasonRemovedByOperator.
	Reason    string    `json:"reason"`
	RemovedAt time.Time `json:"removedAt"`
}

// ReasonRemovedByOperator is the Reason of a DeviceRemoved event for a
// device an operator removed through the admin API.
const ReasonRemovedByOperator = "RemovedByOperator"

// deviceRemovedTimeout bounds the tries of PublishDeviceRemoved when its
// context has no deadline: as long as one publish waits for its answer
// (the JetStream client's default), so that the tries of a worker removing
// dead devices while NATS is away wait no longer than one.
const deviceRemovedTimeout = 5 * time.Second

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
// subject prefix the publisher was given, trying again as Publish does
// while no stream answers (one electing its leader, say): the device is
// gone already, so nothing publishes the event later. Without a deadline
// of ctx's, the tries share deviceRemovedTimeout.
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
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deviceRemovedTimeout)
		defer cancel()
	}
	_, err = p.publish(ctx, msg)
	return err
}
