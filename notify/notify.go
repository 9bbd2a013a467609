// Package notify sends what happens to apps and mirrors to webhooks: a
// failed sync, a degraded app, a deploy, a reverted drift, a failed
// mirror sync. Each event is one HTTP POST per notifier that asks for it,
// signed with HMAC-SHA256 when the notifier has a secret, retried with
// backoff until the receiver answers 2xx, and recorded with every
// attempt's response code. An event is sent once: a resync that finds the
// same failure sends nothing, and a restart neither repeats nor loses one.
//
// Events are derived from the store, not reported by the reconciler or
// the mirrors: on every app or mirror record change the manager reads the
// record and compares what it holds with what each notifier was last
// given (storage keeps that, and queues the delivery, in one transaction).
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Formats of a notifier's body.
const (
	// FormatJSON is the Event document.
	FormatJSON = "json"
	// FormatSlack is a Slack incoming-webhook message ({"text": ...}).
	FormatSlack = "slack"
)

// Defaults of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultRetryBase   = 2 * time.Second
	DefaultRetryMax    = 5 * time.Minute
	DefaultMaxAttempts = 8
)

// Config configures a Manager. Store is required; every other zero value
// picks the default its comment names.
type Config struct {
	Store *storage.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Client sends the POSTs. Nil means a client with no proxy from the
	// environment's defaults beyond http.DefaultTransport's.
	Client *http.Client
	// Timeout bounds one POST. Zero means DefaultTimeout.
	Timeout time.Duration
	// RetryBase is the wait after the first failed attempt, doubled after
	// each further one up to RetryMax. Zero means DefaultRetryBase.
	RetryBase time.Duration
	// RetryMax caps the wait between attempts. Zero means DefaultRetryMax.
	RetryMax time.Duration
	// MaxAttempts is how often a delivery is tried before it is marked
	// failed. Zero means DefaultMaxAttempts.
	MaxAttempts int
	// Registerer receives the fjord_notify_* metrics, labelled by
	// notifier name (never its URL). Nil registers none; the Manager
	// works the same.
	Registerer prometheus.Registerer
}

// Manager watches the store and delivers events. Run starts it.
type Manager struct {
	store     *storage.Store
	log       *slog.Logger
	client    *http.Client
	timeout   time.Duration
	retryBase time.Duration
	retryMax  time.Duration
	attempts  int
	metrics   *metrics

	mu sync.Mutex // serializes scans, so two cannot queue one event twice
	wg sync.WaitGroup
}

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("notify: Config.Store is required")
	}
	m := &Manager{store: cfg.Store, log: cfg.Logger, client: cfg.Client, timeout: cfg.Timeout,
		retryBase: cfg.RetryBase, retryMax: cfg.RetryMax, attempts: cfg.MaxAttempts, metrics: newMetrics(cfg.Registerer)}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.client == nil {
		m.client = &http.Client{}
	}
	if m.timeout == 0 {
		m.timeout = DefaultTimeout
	}
	if m.retryBase == 0 {
		m.retryBase = DefaultRetryBase
	}
	if m.retryMax == 0 {
		m.retryMax = DefaultRetryMax
	}
	if m.attempts == 0 {
		m.attempts = DefaultMaxAttempts
	}
	return m, nil
}

// ErrInvalid marks a notifier Validate refuses; the message says why.
var ErrInvalid = errors.New("invalid notifier")

type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Validate checks a notifier as `fjord notify add` gives it. The error
// names the field and what to give instead.
func Validate(n storage.Notifier) error {
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("notifier %q: --url must be an http:// or https:// URL with a host", n.Name)
	}
	if u.User != nil {
		return invalid("notifier %q: --url must not hold a user or password: give a secret with --secret-file, which signs each POST", n.Name)
	}
	if n.Format != FormatJSON && n.Format != FormatSlack {
		return invalid("notifier %q: --format %q: choose json or slack", n.Name, n.Format)
	}
	if len(n.On) == 0 {
		return invalid("notifier %q: no events: give --on with some of %s", n.Name, joinTypes())
	}
	for _, t := range n.On {
		if !knownType(t) {
			return invalid("notifier %q: unknown event %q: choose from %s", n.Name, t, joinTypes())
		}
	}
	if _, err := path.Match(n.AppGlob, ""); err != nil {
		return invalid("notifier %q: --app %q is not a glob: %v", n.Name, n.AppGlob, err)
	}
	return nil
}

// Add checks and stores a new notifier. It is sent what happens from now
// on: the state of every app and mirror at this moment counts as seen.
func (m *Manager) Add(ctx context.Context, n storage.Notifier) (storage.Notifier, error) {
	if n.Format == "" {
		n.Format = FormatJSON
	}
	if err := Validate(n); err != nil {
		return storage.Notifier{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]string{}
	apps, err := m.store.Apps()
	if err != nil {
		return storage.Notifier{}, err
	}
	for _, a := range apps {
		drifts, err := m.store.AppDrifts(a.Name, driftsRead)
		if err != nil {
			return storage.Notifier{}, err
		}
		for _, o := range appOccurrences(a, drifts) {
			if o.key != "" {
				seen[o.subject] = o.key
			}
		}
	}
	mirrors, err := m.store.Mirrors()
	if err != nil {
		return storage.Notifier{}, err
	}
	for _, mi := range mirrors {
		if o := mirrorOccurrence(mi); o.key != "" {
			seen[o.subject] = o.key
		}
	}
	return m.store.AddNotifier(n, seen)
}

// Run delivers what is still pending from before, looks at every app and
// mirror once (what changed while fjord was down), then at each one whose
// record changes, until ctx ends. Deliveries in flight then stop and stay
// pending for the next start.
func (m *Manager) Run(ctx context.Context) error {
	sub := m.store.SubscribeEvents()
	defer sub.Close()
	defer m.wg.Wait()
	pending, err := m.store.PendingDeliveries()
	if err != nil {
		return fmt.Errorf("notify: read pending deliveries: %w", err)
	}
	for _, d := range pending {
		m.start(ctx, d)
	}
	m.scanAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil
			}
			switch ev.Kind {
			case storage.EventApp:
				m.scanApp(ctx, ev.Name)
			case storage.EventMirror:
				m.scanMirror(ctx, ev.Name)
			}
		}
	}
}

func (m *Manager) start(ctx context.Context, d storage.Delivery) {
	m.wg.Add(1)
	m.metrics.pending.Inc()
	go func() {
		defer m.wg.Done()
		defer m.metrics.pending.Dec()
		m.deliver(ctx, d)
	}()
}

func (m *Manager) scanAll(ctx context.Context) {
	apps, err := m.store.Apps()
	if err != nil {
		m.log.Error("notify: list apps", "err", err)
	}
	for _, a := range apps {
		m.scanApp(ctx, a.Name)
	}
	mirrors, err := m.store.Mirrors()
	if err != nil {
		m.log.Error("notify: list mirrors", "err", err)
	}
	for _, mi := range mirrors {
		m.scanMirror(ctx, mi.Repo)
	}
}

// driftsRead bounds how many recent drifts a scan looks at: more than a
// burst between two scans holds.
const driftsRead = 50

func (m *Manager) scanApp(ctx context.Context, name string) {
	a, err := m.store.App(name)
	if err != nil {
		return // deleted meanwhile
	}
	drifts, err := m.store.AppDrifts(name, driftsRead)
	if err != nil {
		m.log.Error("notify: read drifts", "app", name, "err", err)
		return
	}
	m.offer(ctx, appOccurrences(a, drifts), name)
}

func (m *Manager) scanMirror(ctx context.Context, repo string) {
	mi, err := m.store.Mirror(repo)
	if err != nil {
		return
	}
	m.offer(ctx, []occurrence{mirrorOccurrence(mi)}, "")
}

// offer gives each notifier the occurrences it asks for that it has not
// seen. app is the app they are about ("" for a mirror), for --app.
func (m *Manager) offer(ctx context.Context, occ []occurrence, app string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ns, err := m.store.Notifiers()
	if err != nil {
		m.log.Error("notify: list notifiers", "err", err)
		return
	}
	for _, n := range ns {
		if app != "" && n.AppGlob != "" {
			if ok, _ := path.Match(n.AppGlob, app); !ok {
				continue
			}
		}
		for _, o := range occ {
			m.offerOne(ctx, n, o)
		}
	}
}

func (m *Manager) offerOne(ctx context.Context, n storage.Notifier, o occurrence) {
	seen, err := m.store.NotifySeen(n.Name, o.subject)
	if err != nil {
		m.log.Error("notify: read what was sent", "notifier", n.Name, "err", err)
		return
	}
	drift := strings.HasSuffix(o.subject, "/"+string(DriftReverted))
	switch {
	case o.key == seen:
		return
	case drift && o.key < seen:
		return // an older drift than the last one sent
	case o.key == "" && drift:
		return // drifts never reset
	}
	var d *storage.Delivery
	if o.key != "" && wants(n, o.ev.Type) {
		b, err := body(n.Format, o.ev)
		if err != nil {
			m.log.Error("notify: encode event", "notifier", n.Name, "err", err)
			return
		}
		d = &storage.Delivery{Event: string(o.ev.Type), Body: b}
	}
	q, queued, err := m.store.RecordNotifyEvent(n.Name, o.subject, o.key, d)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			m.log.Error("notify: record event", "notifier", n.Name, "subject", o.subject, "err", err)
		}
		return
	}
	if queued {
		m.start(ctx, q)
	}
}

func wants(n storage.Notifier, t EventType) bool {
	for _, o := range n.On {
		if o == string(t) {
			return true
		}
	}
	return false
}
