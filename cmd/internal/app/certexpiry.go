package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/registry"
)

// certificateExpiry exports, at every scrape, when the certificate of each
// APNs app that authenticates with one expires: APNs refuses every
// connection made with an expired certificate, and Apple's last a year, so
// operators alert on it well before.
type certificateExpiry struct {
	reg  *registry.Registry
	desc *prometheus.Desc
	log  zerolog.Logger
}

func newCertificateExpiry(reg *registry.Registry, log zerolog.Logger) *certificateExpiry {
	return &certificateExpiry{reg: reg, log: log, desc: prometheus.NewDesc("pushsync_app_certificate_expiry_timestamp_seconds",
		"When the APNs certificate of a platform app expires, in seconds since the epoch.", []string{"app"}, nil)}
}

func (c *certificateExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reads the apps from the registry; if it cannot, the metric is
// missing from this scrape, which an alert on its absence notices.
func (c *certificateExpiry) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	apps, err := c.reg.Apps(ctx)
	if err != nil {
		c.log.Debug().Err(err).Msg("could not read the platform apps for their certificates' expiry")
		return
	}
	for _, a := range apps {
		if leaf := a.CertificateLeaf(); leaf != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), a.Name)
		}
	}
}
