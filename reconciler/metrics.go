package reconciler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fjordhq/fjord/storage"
)

// metrics are the reconciler's Prometheus series.
type metrics struct {
	syncDuration *prometheus.HistogramVec // by trigger and outcome
	objects      *prometheus.CounterVec   // objects changed, by action
	drift        *prometheus.CounterVec   // by app and action
	revert       prometheus.Histogram     // drift event seen -> reverted
	renders      *prometheus.CounterVec   // renders run (not served from the cache), by app
	apiRequests  *prometheus.CounterVec   // requests sent to API servers, by cluster
	clusterUp    *prometheus.GaugeVec     // 1 when a cluster answers, by cluster
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fjord_app_sync_duration_seconds",
			Help:    "Duration of app syncs (render, apply, prune), by trigger (push, resync, manual, apply, start) and outcome (ok, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"cluster", "trigger", "outcome"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_app_objects_changed_total", Help: "Objects created, configured, deleted or skipped by syncs, by cluster and action.",
		}, []string{"cluster", "action"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_app_drift_total", Help: "Changes made outside git, by cluster, app and action (reverted, recreated, reported).",
		}, []string{"cluster", "app", "action"}),
		revert: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fjord_app_drift_revert_seconds",
			Help:    "From the watch event of a drift to fjord's revert acknowledged by the API server.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		renders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_app_renders_total", Help: "Renders of an app's source (kustomize or directory), by app; a commit that touches none of an app's inputs renders nothing.",
		}, []string{"app"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_cluster_api_requests_total", Help: "Requests fjord sent to a cluster's API server (watches included), by cluster; an idle resync of unchanged apps sends none.",
		}, []string{"cluster"}),
		clusterUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fjord_cluster_up", Help: "1 while a cluster's API server answers, 0 while it is unreachable (its apps are Unknown), by cluster.",
		}, []string{"cluster"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.objects, m.drift, m.revert, m.renders, m.apiRequests, m.clusterUp)
	}
	return m
}

func (m *metrics) observeSync(cluster string, rec storage.AppSync) {
	outcome := "ok"
	if rec.Error != "" {
		outcome = "error"
	}
	m.syncDuration.WithLabelValues(cluster, string(rec.Trigger), outcome).Observe(rec.Duration.Seconds())
	for _, c := range rec.Changes {
		m.objects.WithLabelValues(cluster, c.Action).Inc()
	}
}
