package notify

import (
	"strconv"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Labels are notifier names, which operators choose and bound; never a
// URL (Slack's carries its token in the path).
type metrics struct {
	deliveries *prometheus.CounterVec   // finished deliveries, by notifier and outcome: delivered, failed
	attempts   *prometheus.CounterVec   // recorded POSTs, by notifier and result: 2xx, 4xx, 5xx, error, ...
	latency    *prometheus.HistogramVec // queued to delivered, by notifier
	pending    prometheus.Gauge         // deliveries being sent: queued or waiting to retry
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_notify_deliveries_total", Help: "Notification deliveries finished, by outcome: delivered (answered 2xx), failed (attempts spent).",
		}, []string{"notifier", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fjord_notify_attempts_total", Help: "Notification POSTs, by result: the answer's status class (2xx, 4xx, 5xx, ...) or error (no answer).",
		}, []string{"notifier", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fjord_notify_delivery_seconds", Help: "Time from an event queued for a notifier to its delivery, retries included.",
			// From one local POST (milliseconds) to a receiver down for
			// all of the default retries (about 4 minutes) and beyond, as
			// a delivery pending over a restart.
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"notifier"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fjord_notify_pending_deliveries", Help: "Notification deliveries this replica is sending, neither delivered nor failed yet.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.attempts, m.latency, m.pending)
	}
	return m
}

// attempt counts one recorded POST.
func (m *metrics) attempt(notifier string, at storage.Attempt) {
	m.attempts.WithLabelValues(notifier, resultClass(at.Code)).Inc()
}

// resultClass is an attempt's result label: the status class, or error
// when no answer came. Any code outside 1xx-5xx is "other", so a strange
// receiver cannot add label values.
func resultClass(code int) string {
	switch {
	case code == 0:
		return "error"
	case code >= 100 && code < 600:
		return strconv.Itoa(code/100) + "xx"
	default:
		return "other"
	}
}

// finished counts a delivery that ended delivered or failed and, when
// delivered, how long it took since it was queued.
func (m *metrics) finished(d storage.Delivery, now time.Time) {
	m.deliveries.WithLabelValues(d.Notifier, d.State).Inc()
	if d.State != storage.DeliveryDelivered {
		return
	}
	// Every delivery queued by RecordNotifyEvent has Created; the first
	// attempt stands in for one without.
	since := d.Created
	if since.IsZero() && len(d.Attempts) > 0 {
		since = d.Attempts[0].Time
	}
	if !since.IsZero() {
		m.latency.WithLabelValues(d.Notifier).Observe(now.Sub(since).Seconds())
	}
}
