package replication

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descPosition    = prometheus.NewDesc("fjord_replication_position", "Position of the newest change in this replica's change log.", nil, nil)
	descAcked       = prometheus.NewDesc("fjord_replication_follower_acked_position", "Newest position a follower acked (holds durably).", []string{"replica"}, nil)
	descLagChanges  = prometheus.NewDesc("fjord_replication_follower_lag_changes", "Changes a follower lacks.", []string{"replica"}, nil)
	descLagSeconds  = prometheus.NewDesc("fjord_replication_follower_lag_seconds", "Age of the oldest change a follower lacks (0 when it lacks none).", []string{"replica"}, nil)
	descConnected   = prometheus.NewDesc("fjord_replication_follower_connected", "1 while a follower's stream is open.", []string{"replica"}, nil)
	descLastContact = prometheus.NewDesc("fjord_replication_follower_last_ack_age_seconds", "Time since a follower last acked or was sent anything.", []string{"replica"}, nil)
	descFullCopies  = prometheus.NewDesc("fjord_replication_follower_full_copies_total", "Full copies sent to a follower since this process started.", []string{"replica"}, nil)
)

// Collector returns the primary side's metrics, computed when scraped:
// the position, and per follower its acked position, lag, connection,
// time since its last ack and full copies. Register it once per process.
func (p *Primary) Collector() prometheus.Collector { return primaryCollector{p} }

type primaryCollector struct{ p *Primary }

func (c primaryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPosition, descAcked, descLagChanges, descLagSeconds, descConnected, descLastContact, descFullCopies} {
		ch <- d
	}
}

func (c primaryCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descPosition, prometheus.GaugeValue, float64(c.p.store.Position()))
	for _, f := range c.p.Followers() {
		connected := 0.0
		if f.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(descAcked, prometheus.GaugeValue, float64(f.Acked), f.ID)
		ch <- prometheus.MustNewConstMetric(descLagChanges, prometheus.GaugeValue, float64(f.LagChanges), f.ID)
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, f.LagSeconds, f.ID)
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected, f.ID)
		ch <- prometheus.MustNewConstMetric(descLastContact, prometheus.GaugeValue, time.Since(f.LastContact).Seconds(), f.ID)
		ch <- prometheus.MustNewConstMetric(descFullCopies, prometheus.CounterValue, float64(f.FullCopies), f.ID)
	}
}

// FollowerMetrics are the follower side's metrics. Make them once per
// process and give them to every Follower (FollowerOptions.Metrics), so a
// new Follower for a new primary keeps counting in the same series.
type FollowerMetrics struct {
	primaryPos prometheus.Gauge
	connected  prometheus.Gauge
	apply      prometheus.Histogram
	fullCopies prometheus.Counter
	streams    prometheus.Counter
	fetches    prometheus.Counter
}

// NewFollowerMetrics registers the follower metrics with reg (nil: none).
func NewFollowerMetrics(reg prometheus.Registerer) *FollowerMetrics {
	m := &FollowerMetrics{
		primaryPos: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fjord_replication_primary_position", Help: "Position the primary last said it holds, as this follower heard."}),
		connected:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "fjord_replication_stream_connected", Help: "1 while this follower's stream from the primary is open."}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fjord_replication_apply_seconds", Help: "Time to apply one change on this follower: objects, ref transaction, metadata.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		fullCopies: prometheus.NewCounter(prometheus.CounterOpts{Name: "fjord_replication_full_copies_total", Help: "Full copies this follower made of its primary."}),
		streams:    prometheus.NewCounter(prometheus.CounterOpts{Name: "fjord_replication_streams_total", Help: "Streams this follower opened to a primary (reconnects included)."}),
		fetches: prometheus.NewCounter(prometheus.CounterOpts{Name: "fjord_replication_git_fetches_total",
			Help: "git fetches from the primary for objects a change's sent packs did not hold (big pushes, mirror syncs, full copies); small pushes need none."}),
	}
	if reg != nil {
		reg.MustRegister(m.primaryPos, m.connected, m.apply, m.fullCopies, m.streams, m.fetches)
	}
	return m
}
