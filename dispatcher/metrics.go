package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushsync/pushsync/registry"
)

type metrics struct {
	events         *prometheus.CounterVec
	malformed      *prometheus.CounterVec
	pushes         *prometheus.CounterVec
	fanoutSeconds  prometheus.Histogram
	sendSeconds    *prometheus.HistogramVec
	eventAge       prometheus.Histogram
	inflightEvents prometheus.Gauge
	inflightPushes prometheus.Gauge
	coalescing     prometheus.Gauge
	removed        *prometheus.CounterVec
	misconfigured  *prometheus.GaugeVec
	pending        prometheus.Gauge
	ackPending     prometheus.Gauge
	batch          prometheus.Histogram
	byPlatform     map[registry.Platform]*platformMetrics
}

// platformMetrics are the series every push of a platform touches, looked
// up once rather than per push.
type platformMetrics struct {
	accepted    prometheus.Counter
	sendSeconds prometheus.Observer
}

func (m *metrics) platform(p registry.Platform) *platformMetrics {
	if pm, ok := m.byPlatform[p]; ok {
		return pm
	}
	return m.newPlatformMetrics(p)
}

func (m *metrics) newPlatformMetrics(p registry.Platform) *platformMetrics {
	return &platformMetrics{
		accepted:    m.pushes.WithLabelValues(string(p), "accepted", ""),
		sendSeconds: m.sendSeconds.WithLabelValues(string(p)),
	}
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_events_consumed_total",
			Help: "Events consumed, by result: delivered, coalesced (superseded by a newer event of the dataset), no_subscribers, no_app (subscribers, but the pool has no platform app for theirs, or names one that does not exist), push_disabled, expired, retry, dead_lettered, abandoned or malformed.",
		}, []string{"result"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_events_malformed_total",
			Help: "Malformed events terminated without delivery, by reason.",
		}, []string{"reason"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_pushes_total",
			Help: "Pushes by platform, result (accepted, retry, permanent, token_dead, config, skipped, deferred) and the service's reason. token_dead counts the service's verdict; the device is kept while its app has accepted no push (pushsync_devices_removed_total counts removals).",
		}, []string{"platform", "result", "reason"}),
		fanoutSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushsync_fanout_duration_seconds",
			Help:    "Time from receiving an event to settling all its pushes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		sendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushsync_push_duration_seconds",
			Help:    "Time of one push request to the push service, by platform.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"platform"}),
		eventAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushsync_event_delivery_delay_seconds",
			Help:    "Time from an event's change to the end of its fan-out, for delivered events.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}),
		inflightEvents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushsync_events_in_flight",
			Help: "Events being handled now.",
		}),
		inflightPushes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushsync_pushes_in_flight",
			Help: "Push requests waiting for an answer now.",
		}),
		coalescing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushsync_events_coalescing",
			Help: "Events held for coalescing now, from their arrival until their dataset's group settles: in a coalescing window, waiting for a worker, or being pushed.",
		}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_devices_removed_total",
			Help: "Devices removed because their push service declared the token dead, by platform and reason.",
		}, []string{"platform", "reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushsync_consumer_pending_messages",
			Help: "Events in the stream not yet delivered to any worker (the consumer's backlog); scale workers on it.",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushsync_consumer_ack_pending_messages",
			Help: "Events delivered to workers and not yet acked.",
		}),
		misconfigured: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushsync_app_suspended",
			Help: "1 while a platform app is not used because its push service refused its credentials.",
		}, []string{"app"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushsync_redis_batch_size",
			Help:    "Commands per pipelined Redis round trip of the dispatcher: registrations read and events whose accepted pushes were recorded.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
	}
	m.byPlatform = make(map[registry.Platform]*platformMetrics, len(registry.Platforms))
	for _, p := range registry.Platforms {
		m.byPlatform[p] = m.newPlatformMetrics(p)
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.events, m.malformed, m.pushes, m.fanoutSeconds, m.sendSeconds, m.eventAge, m.inflightEvents, m.inflightPushes, m.coalescing, m.removed, m.misconfigured, m.pending, m.ackPending, m.batch} {
			if err := r.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
