package helmrepo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Defaults for Config and HelmRepo fields left zero.
const (
	DefaultInterval = 5 * time.Minute
	DefaultTimeout  = 2 * time.Minute
	// maxConcurrent bounds index fetches running at once.
	maxConcurrent = 4
	firstBackoff  = 5 * time.Second
	maxBackoff    = 10 * time.Minute
	// missRefetch is how old an index must be before a version it does not
	// have makes Chart read it again at once (a chart just published).
	missRefetch = 15 * time.Second
)

// Errors callers branch on with errors.Is.
var (
	// ErrCredentials is returned when a repository answers 401 or 403.
	ErrCredentials = errors.New("the repository refused access")
	// ErrDigest is returned when a chart archive does not match the digest
	// its index or registry gives.
	ErrDigest = errors.New("digest mismatch")
	// ErrNoVersion is returned when no version of a chart matches.
	ErrNoVersion = errors.New("no such chart version")
)

// Config configures a Manager. Store is required.
type Config struct {
	Store *storage.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Timeout bounds one index fetch or chart download. Default 2 minutes.
	Timeout time.Duration
	// TLSConfig is used for https repositories and registries; nil means
	// the system's roots.
	TLSConfig *tls.Config
}

// Manager keeps Helm repositories: their indexes, read again on an
// interval while Run runs, and the chart versions asked for, on local disk.
type Manager struct {
	store     *storage.Store
	log       *slog.Logger
	timeout   time.Duration
	transport *http.Transport
	flights   singleflight.Group
	sem       chan struct{}
	metrics   *metrics

	mu      sync.Mutex
	indexes map[string]*index // by repo name: the parsed index.yaml
	timers  map[string]*time.Timer
	due     chan string   // timers' repos, to Run's loop; nil when not running
	stop    chan struct{} // closed when Run ends
}

// New returns a Manager. Chart works at once; call Run for the periodic
// index fetches.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("helmrepo: Config.Store is required")
	}
	m := &Manager{
		store:   cfg.Store,
		log:     cfg.Logger,
		timeout: cfg.Timeout,
		sem:     make(chan struct{}, maxConcurrent),
		indexes: make(map[string]*index),
		timers:  make(map[string]*time.Timer),
		metrics: newMetrics(cfg.Registerer),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.timeout <= 0 {
		m.timeout = DefaultTimeout
	}
	m.transport = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     cfg.TLSConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		// Archives are gzip already; an index is sent as is.
		DisableCompression: true,
		ForceAttemptHTTP2:  true,
	}
	return m, nil
}

// Run schedules the index fetch of every stored repository and runs them
// until ctx is done, then waits for running fetches to stop. Overdue
// repositories are read soon after start, spread over a few seconds.
func (m *Manager) Run(ctx context.Context) error {
	repos, err := m.store.HelmRepos()
	if err != nil {
		return fmt.Errorf("helmrepo: load repositories: %w", err)
	}
	due := make(chan string)
	stop := make(chan struct{})
	m.mu.Lock()
	m.due, m.stop = due, stop
	m.mu.Unlock()
	now := time.Now()
	for _, r := range repos {
		next := r.LastFetch.Add(interval(r))
		if r.Failures > 0 {
			next = r.LastAttempt.Add(backoff(r.Failures))
		}
		wait := next.Sub(now)
		if wait <= 0 {
			wait = time.Duration(rand.Int64N(int64(5*time.Second))) + 1
		}
		m.schedule(r.Name, wait)
	}
	m.log.Info("helm repositories scheduled", "repos", len(repos))

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for _, t := range m.timers {
				t.Stop()
			}
			m.due, m.stop = nil, nil
			m.mu.Unlock()
			close(stop)
			return nil
		case name := <-due:
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.Refresh(ctx, name)
			}()
		}
	}
}

func interval(r storage.HelmRepo) time.Duration {
	if r.Interval > 0 {
		return r.Interval
	}
	return DefaultInterval
}

// backoff is the wait after n consecutive failures: 5s doubling, capped,
// and never longer than the repository's interval.
func backoff(n int) time.Duration {
	d := firstBackoff
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// jitter spreads d by ±10% so repositories added together drift apart.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// schedule arms a repository's timer; it does nothing unless Run runs.
func (m *Manager) schedule(name string, after time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.due == nil {
		return
	}
	if t := m.timers[name]; t != nil {
		t.Stop()
	}
	due, stop := m.due, m.stop
	m.timers[name] = time.AfterFunc(after, func() {
		select {
		case due <- name:
		case <-stop:
		}
	})
}

func (m *Manager) forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.timers[name]; t != nil {
		t.Stop()
	}
	delete(m.timers, name)
	delete(m.indexes, name)
}

// acquire takes one of the maxConcurrent fetch slots.
func (m *Manager) acquire(ctx context.Context) error {
	select {
	case m.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) release() { <-m.sem }

// do runs fn once for all concurrent callers with the same key; a caller
// whose ctx ends stops waiting, the work goes on for the others (and is
// kept).
func (m *Manager) do(ctx context.Context, key string, fn func() (any, error)) (any, error) {
	ch := m.flights.DoChan(key, fn)
	select {
	case res := <-ch:
		return res.Val, res.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Status is a repository as `fjord helmrepo list` shows it.
type Status struct {
	storage.HelmRepo
	// Charts are the chart versions kept on local disk.
	Charts []storage.HelmChart `json:"charts"`
}

// List returns every repository with the chart versions it keeps.
func (m *Manager) List() ([]Status, error) {
	repos, err := m.store.HelmRepos()
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(repos))
	for _, r := range repos {
		cs, err := m.store.HelmCharts(r.Name)
		if err != nil {
			return nil, err
		}
		if cs == nil {
			cs = []storage.HelmChart{}
		}
		out = append(out, Status{HelmRepo: r, Charts: cs})
	}
	return out, nil
}

// Find returns the repository named nameOrURL, or the one mirroring that
// URL.
func (m *Manager) Find(nameOrURL string) (storage.HelmRepo, error) {
	r, err := m.store.HelmRepo(nameOrURL)
	if err == nil || !errors.Is(err, storage.ErrNotFound) {
		return r, err
	}
	if u, uerr := NormalizeURL(nameOrURL); uerr == nil {
		if r, ok, err := m.byURL(u); err != nil || ok {
			return r, err
		}
	}
	return storage.HelmRepo{}, err
}

func (m *Manager) byURL(u string) (storage.HelmRepo, bool, error) {
	repos, err := m.store.HelmRepos()
	if err != nil {
		return storage.HelmRepo{}, false, err
	}
	for _, r := range repos {
		if r.URL == u {
			return r, true, nil
		}
	}
	return storage.HelmRepo{}, false, nil
}

// Add stores a repository and its credentials (file contents keyed by
// CredUsername and CredPassword) and reads its index once. If that fails,
// nothing is added and the error says why. An empty Name is derived from
// the URL.
func (m *Manager) Add(ctx context.Context, r storage.HelmRepo, creds map[string][]byte) (storage.HelmRepo, error) {
	return m.add(ctx, r, creds, "")
}

// add is Add; probe is the chart an OCI repository is tried with (an OCI
// registry has no index to read without one).
func (m *Manager) add(ctx context.Context, r storage.HelmRepo, creds map[string][]byte, probe string) (storage.HelmRepo, error) {
	u, err := NormalizeURL(r.URL)
	if err != nil {
		return storage.HelmRepo{}, err
	}
	r.URL = u
	if (len(creds[CredUsername]) == 0) != (len(creds[CredPassword]) == 0) {
		return storage.HelmRepo{}, errors.New("give both --username and --password-file, or neither")
	}
	if r.PlainHTTP && !isOCI(u) {
		return storage.HelmRepo{}, errors.New("--plain-http is for oci:// repositories; an HTTP repository says http:// in its URL")
	}
	if old, ok, err := m.byURL(u); err != nil {
		return storage.HelmRepo{}, err
	} else if ok {
		return storage.HelmRepo{}, fmt.Errorf("helm repository %s is already mirrored as %q: %w; to change its credentials, delete it and add it again", u, old.Name, storage.ErrExists)
	}
	if r.Name == "" {
		if r.Name, err = m.freeName(nameFor(u)); err != nil {
			return storage.HelmRepo{}, err
		}
	}
	if err := storage.ValidateHelmRepoName(r.Name); err != nil {
		return storage.HelmRepo{}, err
	}
	if r.Interval <= 0 {
		r.Interval = DefaultInterval
	}
	r.Credentials = nil
	for _, k := range []string{CredUsername, CredPassword} {
		if len(creds[k]) > 0 {
			r.Credentials = append(r.Credentials, k)
		}
	}
	if err := m.store.CreateHelmRepo(r); err != nil {
		return storage.HelmRepo{}, err
	}
	undo := func() {
		m.forget(r.Name)
		if err := m.store.DeleteHelmRepo(r.Name); err != nil {
			m.log.Error("undo helm repository add", "helmrepo", r.Name, "err", err)
		}
	}
	if len(r.Credentials) > 0 {
		if err := m.store.WriteCredentials(m.store.CredentialDir("helmrepo", r.Name), r.Name, creds); err != nil {
			undo()
			return storage.HelmRepo{}, err
		}
	}
	var ferr error
	if isOCI(u) && probe != "" {
		_, ferr = m.refreshTags(context.WithoutCancel(ctx), r, probe)
	} else {
		ferr = m.fetch(context.WithoutCancel(ctx), r)
	}
	if ferr != nil {
		undo()
		if errors.Is(ferr, ErrCredentials) && len(r.Credentials) == 0 {
			return storage.HelmRepo{}, fmt.Errorf("helm repository %s needs credentials: add it with `fjord helmrepo add %s --username U --password-file FILE` first: %w", u, u, ferr)
		}
		return storage.HelmRepo{}, fmt.Errorf("first read of helm repository %s failed, so nothing was added; fix the cause and add it again: %w", u, ferr)
	}
	r, err = m.record(r.Name, nil)
	if err != nil {
		return r, err
	}
	m.schedule(r.Name, jitter(interval(r)))
	return r, nil
}

// freeName returns base, or base-2, base-3… whichever is not taken.
func (m *Manager) freeName(base string) (string, error) {
	for i := 1; i < 100; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		if _, err := m.store.HelmRepo(name); errors.Is(err, storage.ErrNotFound) {
			return name, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for helm repository %q: give one with --name", base)
}

// Delete removes a repository (by name or URL), its credentials and every
// chart it keeps. Apps that still name it add it again by themselves on
// their next render if it is public.
func (m *Manager) Delete(_ context.Context, nameOrURL string) (storage.HelmRepo, error) {
	r, err := m.Find(nameOrURL)
	if err != nil {
		return r, err
	}
	m.forget(r.Name)
	return r, m.store.DeleteHelmRepo(r.Name)
}

// Refresh reads a repository's index (OCI: the tag lists of the charts it
// keeps) now, records the outcome and schedules the next read. A failure
// keeps the last good index.
func (m *Manager) Refresh(ctx context.Context, name string) (storage.HelmRepo, error) {
	v, err := m.do(ctx, "refresh\x00"+name, func() (any, error) {
		r, err := m.store.HelmRepo(name)
		if err != nil {
			return r, err
		}
		if err := m.acquire(ctx); err != nil {
			return r, err
		}
		defer m.release()
		ferr := m.fetch(ctx, r)
		if ctx.Err() != nil {
			// Shutting down: not the repository's fault.
			return r, ferr
		}
		r, err = m.record(name, ferr)
		if errors.Is(err, storage.ErrNotFound) {
			// Deleted while the fetch ran: drop what it wrote.
			os.RemoveAll(m.store.HelmDir(name))
			return r, err
		}
		if ferr != nil {
			wait := min(backoff(r.Failures), interval(r))
			m.log.Warn("helm repository index fetch failed; the last good index stays in use", "helmrepo", name, "err", ferr, "failures", r.Failures, "retry_in", wait)
			m.schedule(name, wait)
			return r, ferr
		}
		m.schedule(name, jitter(interval(r)))
		return r, nil
	})
	r, _ := v.(storage.HelmRepo)
	return r, err
}

// record stores the outcome of a fetch in the repository's status.
func (m *Manager) record(name string, ferr error) (storage.HelmRepo, error) {
	now := time.Now().UTC()
	return m.store.UpdateHelmRepo(name, func(r *storage.HelmRepo) error {
		r.LastAttempt = now
		if ferr != nil {
			r.LastError = ferr.Error()
			r.Failures++
			m.metrics.fetchFailures.WithLabelValues(name).Inc()
			return nil
		}
		r.LastFetch = now
		m.metrics.lastFetch.WithLabelValues(name).Set(float64(now.Unix()))
		r.LastError = ""
		r.Failures = 0
		return nil
	})
}

// fetch reads what a refresh reads: the index, or the OCI tag lists of the
// charts asked for so far.
func (m *Manager) fetch(ctx context.Context, r storage.HelmRepo) error {
	if isOCI(r.URL) {
		return m.refreshAllTags(ctx, r)
	}
	_, err := m.fetchIndex(ctx, r)
	return err
}

func (m *Manager) credentials(r storage.HelmRepo) (credentials, error) {
	if len(r.Credentials) == 0 {
		return credentials{}, nil
	}
	c, err := loadCredentials(m.store.CredentialDir("helmrepo", r.Name))
	if err != nil {
		return c, fmt.Errorf("helm repository %q: credentials: %w", r.Name, err)
	}
	return c, nil
}
