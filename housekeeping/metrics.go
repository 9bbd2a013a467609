package housekeeping

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	steps    *prometheus.CounterVec // by step: repack, commit_graph, pack_refs, prune
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_housekeeping_steps_total",
			Help: "Housekeeping steps run, by step: repack (geometric, with multi-pack index and bitmap), commit_graph, pack_refs, prune.",
		}, []string{"step"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fjord_housekeeping_duration_seconds",
			Help:    "Duration of one repo's housekeeping, including the wait for its upkeep lock.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.steps, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("housekeeping: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(r Result) {
	for step, did := range map[string]bool{"repack": r.Repacked, "commit_graph": r.CommitGraph, "pack_refs": r.PackedRefs, "prune": r.Pruned} {
		if did {
			m.steps.WithLabelValues(step).Inc()
		}
	}
	if r.Did() {
		m.duration.Observe(r.Duration.Seconds())
	}
}
