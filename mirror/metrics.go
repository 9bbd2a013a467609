package mirror

import (
	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	duration    *prometheus.HistogramVec // by outcome: unchanged, fetched, failed
	failures    *prometheus.CounterVec   // by mirror
	lastSuccess *prometheus.GaugeVec     // by mirror
	refsChanged *prometheus.CounterVec   // by mirror
	forcePushes *prometheus.CounterVec   // by mirror
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fjord_mirror_sync_duration_seconds",
			Help:    "Duration of mirror syncs, by outcome: unchanged (no fetch needed), fetched, failed.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 600},
		}, []string{"outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_mirror_sync_failures_total", Help: "Failed mirror syncs.",
		}, []string{"mirror"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fjord_mirror_last_success_timestamp_seconds", Help: "Unix time of the last successful sync.",
		}, []string{"mirror"}),
		refsChanged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_mirror_refs_changed_total", Help: "Refs created, updated or deleted by syncs.",
		}, []string{"mirror"}),
		forcePushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_mirror_history_rewrites_total", Help: "Upstream force-pushes and ref deletions seen (old tips kept under refs/fjord/backup/).",
		}, []string{"mirror"}),
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.failures, m.lastSuccess, m.refsChanged, m.forcePushes)
	}
	return m
}

func (m *metrics) observe(repo string, rec storage.MirrorSync, events int) {
	outcome := "unchanged"
	switch {
	case rec.Error != "":
		outcome = "failed"
		m.failures.WithLabelValues(repo).Inc()
	case rec.Fetched:
		outcome = "fetched"
	}
	m.duration.WithLabelValues(outcome).Observe(rec.Duration.Seconds())
	if rec.Error == "" {
		m.lastSuccess.WithLabelValues(repo).Set(float64(rec.Start.Unix()))
	}
	m.refsChanged.WithLabelValues(repo).Add(float64(len(rec.Changes)))
	m.forcePushes.WithLabelValues(repo).Add(float64(events))
}
