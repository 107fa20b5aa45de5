package api

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/removals"
)

// deviceView is a registered device as the admin API shows it.
type deviceView struct {
	DeviceID     string    `json:"deviceId"`
	Platform     string    `json:"platform"`
	Token        string    `json:"token"`
	RegisteredAt time.Time `json:"registeredAt"`
	// Subscriptions are the datasets the device is subscribed to, by
	// name.
	Subscriptions []subscriptionView `json:"subscriptions"`
}

// subscriptionView is one dataset a device is subscribed to.
type subscriptionView struct {
	DatasetName string `json:"datasetName"`
	// SentSyncCount is the highest sync count of the dataset a push to
	// the device has carried; 0 before the first push.
	SentSyncCount int64 `json:"sentSyncCount"`
}

// listDevices answers an identity's devices, oldest registration first,
// each with its subscriptions and what was pushed to it, so that an
// operator can see why a device gets no pushes.
func (s *Server) listDevices(r *request) (any, error) {
	pool, identity, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	reg, err := s.reg.Registration(r.Context(), pool, identity)
	if err != nil {
		return nil, err
	}
	subs := map[string][]subscriptionView{}
	for dataset, ids := range reg.Subscriptions {
		for _, id := range ids {
			subs[id] = append(subs[id], subscriptionView{DatasetName: dataset, SentSyncCount: reg.Sent[registry.SentKey(id, dataset)]})
		}
	}
	out := make([]deviceView, 0, len(reg.Devices))
	for id, d := range reg.Devices {
		ds := subs[id]
		if ds == nil {
			ds = []subscriptionView{}
		}
		slices.SortFunc(ds, func(a, b subscriptionView) int { return strings.Compare(a.DatasetName, b.DatasetName) })
		out = append(out, deviceView{DeviceID: id, Platform: string(d.Platform), Token: d.Token, RegisteredAt: d.RegisteredAt.UTC(), Subscriptions: ds})
	}
	slices.SortFunc(out, func(a, b deviceView) int {
		if c := a.RegisteredAt.Compare(b.RegisteredAt); c != 0 {
			return c
		}
		return cmp.Compare(a.DeviceID, b.DeviceID)
	})
	return map[string]any{"identityPoolId": pool, "identityId": identity, "devices": out}, nil
}

// removeDevice removes one device of an identity, with its subscriptions,
// and announces it with a DeviceRemoved event.
func (s *Server) removeDevice(r *request) (any, error) {
	pool, identity, _, device, err := labels(r)
	if err != nil {
		return nil, err
	}
	reason := ""
	if s.opts.DeviceEvents != nil {
		reason = event.ReasonRemovedByOperator
	}
	dev, err := s.reg.RemoveDevice(r.Context(), pool, identity, device, reason)
	if err != nil {
		return nil, registryError(err)
	}
	if s.opts.DeviceEvents != nil {
		// The device is gone: a caller that hangs up now still gets its
		// event published.
		if err := removals.Announce(context.WithoutCancel(r.Context()), s.reg, s.opts.DeviceEvents, registry.Removal{
			IdentityPoolID: pool, IdentityID: identity, DeviceID: device,
			Platform: dev.Platform, Reason: reason, RemovedAt: s.opts.Now(),
		}); err != nil {
			s.log.Warn().Err(err).Str("pool", pool).Str("identity", identity).Str("device", device).
				Msg("could not publish the device-removed event now; the sweep for unannounced removals publishes it")
		}
	}
	return struct{}{}, nil
}
