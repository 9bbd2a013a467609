package gitserver

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus series.
type metrics struct {
	sessionsActive prometheus.Gauge
	sessions       prometheus.Counter
	requests       *prometheus.CounterVec   // by service and outcome
	duration       *prometheus.HistogramVec // by service and path (advert, pack)
	authFailures   prometheus.Counter
	refused        *prometheus.CounterVec // by reason
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fjord_ssh_sessions_active", Help: "SSH session channels open now.",
		}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fjord_ssh_sessions_total", Help: "SSH session channels opened.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_git_requests_total", Help: "Git commands served, by service (upload-pack = fetch, receive-pack = push) and outcome.",
		}, []string{"service", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fjord_git_request_duration_seconds",
			Help:    "Duration of git commands, by service and path: advert = answered from the ref snapshot without git, pack = git ran.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"service", "path"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fjord_ssh_auth_failures_total", Help: "SSH connections that failed to authenticate.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_ssh_refused_total", Help: "Requests refused, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.sessionsActive, m.sessions, m.requests, m.duration, m.authFailures, m.refused)
	}
	return m
}
