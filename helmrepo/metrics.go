package helmrepo

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	fetchFailures *prometheus.CounterVec // index reads that failed, by helmrepo
	lastFetch     *prometheus.GaugeVec   // time of the last good index read, by helmrepo
	charts        *prometheus.CounterVec // Chart calls, by outcome: local, fetched, failed
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fetchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_helmrepo_index_failures_total", Help: "Failed reads of a Helm repository's index (the last good index stays in use).",
		}, []string{"helmrepo"}),
		lastFetch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fjord_helmrepo_last_index_timestamp_seconds", Help: "Unix time of the last good read of a Helm repository's index.",
		}, []string{"helmrepo"}),
		charts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_helmrepo_chart_requests_total", Help: "Charts asked for by renders, by outcome: local (served from the kept copy), fetched (downloaded and kept), failed.",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.fetchFailures, m.lastFetch, m.charts)
	}
	return m
}
