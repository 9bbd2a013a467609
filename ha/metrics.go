package ha

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

type metrics struct {
	failovers prometheus.Counter
	syncWait  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, e *Elector) *metrics {
	m := &metrics{
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fjord_ha_failovers_total",
			Help: "Times this member took the primary Lease over from another member.",
		}),
		syncWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fjord_ha_sync_wait_seconds",
			Help:    "Time a change waited for its synchronous replicas before it was acknowledged or refused.",
			Buckets: []float64{.0005, .001, .002, .003, .004, .005, .0075, .01, .015, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.failovers, m.syncWait,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "fjord_ha_role",
			Help:        "1 for the role this member has now: primary (holds the Lease and takes writes) or replica.",
			ConstLabels: prometheus.Labels{"role": string(RolePrimary)},
		}, func() float64 { return b2f(e.Writable() == nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "fjord_ha_role",
			Help:        "1 for the role this member has now: primary (holds the Lease and takes writes) or replica.",
			ConstLabels: prometheus.Labels{"role": string(RoleReplica)},
		}, func() float64 { return b2f(e.Writable() != nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fjord_ha_seconds_since_last_ack",
			Help: "Seconds since the primary last acknowledged a change (its synchronous replicas confirmed it); -1 before the first.",
		}, func() float64 {
			t := e.sync.lastAckAt.Load()
			if t == 0 {
				return -1
			}
			return time.Since(time.Unix(0, t)).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fjord_ha_replication_lag_max_changes",
			Help: "On the primary, the most changes any connected follower is behind.",
		}, func() float64 {
			pos := e.cfg.Position()
			var lag uint64
			for _, f := range e.followers() {
				if pos > f.Acked && pos-f.Acked > lag {
					lag = pos - f.Acked
				}
			}
			return float64(lag)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fjord_ha_replication_lag_max_seconds",
			Help: "On the primary, the largest lag in seconds of any connected follower.",
		}, func() float64 {
			var lag time.Duration
			for _, f := range e.followers() {
				lag = max(lag, f.Lag)
			}
			return lag.Seconds()
		}),
	)
	return m
}

func isConflict(err error) bool { return apierrors.IsConflict(err) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
