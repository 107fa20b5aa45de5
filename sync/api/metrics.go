package api

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// purgeKeys counts the keys purges of deleted identity pools scanned
	// and removed.
	purgeKeys *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_api_requests_total",
			Help: "API requests by operation and status class (2xx, 4xx, 5xx).",
		}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushsync_api_request_duration_seconds",
			Help:    "API request time by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"operation"}),
		purgeKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_pool_purge_keys_total",
			Help: "Keys that purges of deleted identity pools scanned and removed (what: scanned, removed).",
		}, []string{"what"}),
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.purgeKeys} {
			if err := r.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
