package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// Defaults for Config fields left zero.
const (
	DefaultInterval    = time.Minute
	DefaultConcurrency = 4
	DefaultSyncTimeout = 10 * time.Minute
	maxBackoff         = 10 * time.Minute
	firstBackoff       = 5 * time.Second
)

// Config configures a Manager. Store is required.
type Config struct {
	Store *storage.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Concurrency bounds syncs running at once across all mirrors.
	// Default 4.
	Concurrency int
	// SyncTimeout bounds one sync. Default 10 minutes.
	SyncTimeout time.Duration
	// Git is the git binary; empty means "git" from PATH.
	Git string
}

// Manager schedules and runs mirror syncs. Run must be running for
// scheduled, webhook and manual syncs to happen.
type Manager struct {
	store   *storage.Store
	log     *slog.Logger
	git     string
	timeout time.Duration
	sem     *semaphore.Weighted
	metrics *metrics

	requests chan request // to Run's loop

	mu     sync.Mutex
	states map[string]*state
}

// state is the scheduling state of one mirror.
type state struct {
	running *call // the sync in progress, if any
	queued  *call // at most one sync waiting behind it
	timer   *time.Timer
	removed bool
}

// call is one sync that callers may wait for.
type call struct {
	trigger string
	done    chan struct{}
	rec     storage.MirrorSync
	err     error
}

type request struct {
	repo string
	c    *call
}

// New returns a Manager; call Run to start it.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("mirror: Config.Store is required")
	}
	m := &Manager{
		store:    cfg.Store,
		log:      cfg.Logger,
		git:      cfg.Git,
		timeout:  cfg.SyncTimeout,
		requests: make(chan request),
		states:   make(map[string]*state),
		metrics:  newMetrics(cfg.Registerer),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.git == "" {
		m.git = "git"
	}
	if m.timeout <= 0 {
		m.timeout = DefaultSyncTimeout
	}
	n := cfg.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	m.sem = semaphore.NewWeighted(int64(n))
	return m, nil
}

// Run schedules every stored mirror and serves sync requests until ctx is
// done, then waits for running syncs to stop. Overdue mirrors sync soon
// after start, spread over a few seconds so a restart is no thundering
// herd.
func (m *Manager) Run(ctx context.Context) error {
	mirrors, err := m.store.Mirrors()
	if err != nil {
		return fmt.Errorf("mirror: load mirrors: %w", err)
	}
	now := time.Now()
	for _, mir := range mirrors {
		due := mir.LastSuccess.Add(interval(mir))
		if mir.Failures > 0 {
			due = mir.LastAttempt.Add(backoff(mir.Failures))
		}
		wait := due.Sub(now)
		if wait <= 0 {
			wait = time.Duration(rand.Int64N(int64(min(interval(mir), 5*time.Second)))) + 1
		}
		m.schedule(mir.Repo, wait)
	}
	pushes, err := m.store.PushMirrors("")
	if err != nil {
		return fmt.Errorf("mirror: load push mirrors: %w", err)
	}
	for _, p := range pushes {
		// A push may have been accepted while fjord was down: a full
		// pass soon after start catches up.
		m.schedule(pushKey(p.Repo, p.ID), time.Duration(rand.Int64N(int64(5*time.Second)))+1)
	}
	sub := m.store.Subscribe()
	defer sub.Close()
	go m.watchPushes(sub)
	m.log.Info("mirrors scheduled", "pull", len(mirrors), "push", len(pushes))

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for _, st := range m.states {
				if st.timer != nil {
					st.timer.Stop()
				}
			}
			m.mu.Unlock()
			return nil
		case req := <-m.requests:
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.run(ctx, req.repo, req.c)
			}()
		}
	}
}

func interval(m storage.Mirror) time.Duration {
	if m.Interval > 0 {
		return m.Interval
	}
	return DefaultInterval
}

// backoff is the wait after n consecutive failures: 5s doubling, capped.
func backoff(n int) time.Duration {
	d := firstBackoff
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// jitter spreads d by ±10% so mirrors added together drift apart.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// schedule arms the mirror's timer.
func (m *Manager) schedule(repo string, after time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stateLocked(repo)
	if st.removed {
		return
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	st.timer = time.AfterFunc(after, func() { m.Trigger(repo, "schedule") })
}

func (m *Manager) stateLocked(repo string) *state {
	st, ok := m.states[repo]
	if !ok {
		st = &state{}
		m.states[repo] = st
	}
	return st
}

// Trigger asks for a sync of repo and returns at once with a channel that
// is closed when a sync that started after this call has finished. If one
// is running, the request joins the single queued sync behind it (a
// webhook storm gives at most one running and one queued).
func (m *Manager) Trigger(repo, trigger string) <-chan struct{} {
	return m.trigger(repo, trigger).done
}

func (m *Manager) trigger(repo, trigger string) *call {
	m.mu.Lock()
	st := m.stateLocked(repo)
	if st.running != nil {
		if st.queued == nil {
			st.queued = &call{trigger: trigger, done: make(chan struct{})}
		}
		c := st.queued
		m.mu.Unlock()
		return c
	}
	c := &call{trigger: trigger, done: make(chan struct{})}
	st.running = c
	m.mu.Unlock()
	go func() { m.requests <- request{repo: repo, c: c} }()
	return c
}

// Sync runs a sync of repo now (or joins the queued one) and waits for its
// result.
func (m *Manager) Sync(ctx context.Context, repo string) (storage.MirrorSync, error) {
	return m.syncNow(ctx, repo, "manual")
}

// syncNow is Sync with the trigger recorded in the mirror's history.
func (m *Manager) syncNow(ctx context.Context, repo, trigger string) (storage.MirrorSync, error) {
	if _, err := m.store.Mirror(repo); err != nil {
		return storage.MirrorSync{}, err
	}
	c := m.trigger(repo, trigger)
	select {
	case <-c.done:
		return c.rec, c.err
	case <-ctx.Done():
		return storage.MirrorSync{}, ctx.Err()
	}
}

// run performs one sync (or push mirror pass) with the concurrency bound, records it, schedules
// the next one and starts the queued sync, if any.
func (m *Manager) run(ctx context.Context, repo string, c *call) {
	defer func() {
		m.mu.Lock()
		st := m.stateLocked(repo)
		st.running = nil
		if q := st.queued; q != nil {
			st.queued = nil
			if st.removed {
				q.err = fmt.Errorf("mirror %q was removed", repo)
				close(q.done)
			} else {
				st.running = q
				go func() { m.requests <- request{repo: repo, c: q} }()
			}
		}
		m.mu.Unlock()
		close(c.done)
	}()
	if err := m.sem.Acquire(ctx, 1); err != nil {
		c.err = err
		return
	}
	defer m.sem.Release(1)
	if r, id, ok := parsePushKey(repo); ok {
		c.rec, c.err = m.pushAndRecord(ctx, r, id, c.trigger)
		return
	}
	c.rec, c.err = m.syncAndRecord(ctx, repo, c.trigger)
}

// syncAndRecord runs one sync with the timeout and stores its outcome.
func (m *Manager) syncAndRecord(ctx context.Context, repo, trigger string) (storage.MirrorSync, error) {
	mir, err := m.store.Mirror(repo)
	if err != nil {
		return storage.MirrorSync{}, err
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, m.timeout)
	res, err := m.syncMirror(sctx, mir)
	cancel()
	if errors.Is(sctx.Err(), context.DeadlineExceeded) && err != nil {
		err = fmt.Errorf("sync took longer than %s and was stopped: %w", m.timeout, err)
	}
	rec := storage.MirrorSync{Start: start.UTC(), Duration: time.Since(start), Fetched: res.fetched, Changes: res.changes, Trigger: trigger}
	if err != nil {
		rec.Error = err.Error()
	}
	if ctx.Err() != nil {
		// Shutting down: not the upstream's fault, leave the status alone.
		return rec, err
	}
	var failures int
	recErr := m.store.RecordMirrorSync(repo, rec, func(s *storage.Mirror) {
		s.LastAttempt = start.UTC()
		if err != nil {
			s.LastError = rec.Error
			s.Failures++
		} else {
			s.LastSuccess = start.UTC()
			s.LastError = ""
			s.Failures = 0
			if len(res.changes) > 0 {
				s.UpstreamChanged = start.UTC()
			}
		}
		failures = s.Failures
	})
	if recErr != nil {
		m.log.Error("record mirror sync", "mirror", repo, "err", recErr)
	}
	if len(res.events) > 0 {
		m.protect(ctx, mir, res.events)
	}
	m.metrics.observe(repo, rec, len(res.events))
	if err != nil {
		wait := backoff(failures)
		m.log.Warn("mirror sync failed", "mirror", repo, "trigger", trigger, "err", err, "failures", failures, "retry_in", wait)
		m.schedule(repo, wait)
		return rec, err
	}
	if len(res.changes) > 0 {
		m.log.Info("mirror synced", "mirror", repo, "trigger", trigger, "refs_changed", len(res.changes), "duration", rec.Duration)
	} else {
		m.log.Debug("mirror unchanged", "mirror", repo, "trigger", trigger, "duration", rec.Duration)
	}
	m.schedule(repo, jitter(interval(mir)))
	return rec, nil
}

// protect records history-protection events and drops backup refs beyond
// the mirror's retention.
func (m *Manager) protect(ctx context.Context, mir storage.Mirror, evs []storage.MirrorEvent) {
	for _, ev := range evs {
		m.log.Warn("upstream rewrote history; old tip kept", "mirror", mir.Repo, "ref", ev.Ref, "kind", ev.Kind, "old", ev.Old, "new", ev.New, "backup", ev.BackupRef)
	}
	keep := mir.Retention
	if keep <= 0 {
		keep = 100
	}
	dropped, err := m.store.RecordMirrorEvents(mir.Repo, evs, keep)
	if err != nil {
		m.log.Error("record history protection events", "mirror", mir.Repo, "err", err)
		return
	}
	if err := m.dropBackups(ctx, mir.Repo, dropped); err != nil {
		m.log.Error("drop old backup refs", "mirror", mir.Repo, "err", err)
	}
}

// dropBackups deletes the backup refs of events retention let go.
func (m *Manager) dropBackups(ctx context.Context, repo string, dropped []storage.MirrorEvent) error {
	if len(dropped) == 0 {
		return nil
	}
	var tx string
	for _, ev := range dropped {
		tx += "delete " + ev.BackupRef + "\n"
	}
	if _, err := m.runGit(ctx, m.store.RepoPath(repo), nil, credentials{}, tx, "update-ref", "--stdin"); err != nil {
		return fmt.Errorf("drop backup refs beyond retention of %q: %w", repo, err)
	}
	return nil
}

// AllowPush refuses pushes to mirrors; gitserver asks before every push.
func (m *Manager) AllowPush(_ context.Context, repo string) error {
	mir, err := m.store.Mirror(repo)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot tell whether %q is a mirror: %w", repo, err)
	}
	return fmt.Errorf("%q is a read-only mirror of %s; push to the upstream instead (fjord picks the change up on its next sync or webhook)", repo, mir.Upstream)
}

// Add creates the repo and the mirror, stores its credentials and runs the
// first sync. If that sync fails, everything Add created is removed again
// and the error says why; nothing that existed before changes.
func (m *Manager) Add(ctx context.Context, mir storage.Mirror, creds map[string][]byte) (storage.MirrorSync, error) {
	name, err := storage.NormalizeRepoName(mir.Repo)
	if err != nil {
		return storage.MirrorSync{}, err
	}
	mir.Repo = name
	up, err := ParseUpstream(mir.Upstream)
	if err != nil {
		return storage.MirrorSync{}, err
	}
	mir.Upstream = up.URL
	if up.Scheme == "ssh" && len(creds[CredKnownHosts]) == 0 {
		return storage.MirrorSync{}, fmt.Errorf("an ssh upstream needs --known-hosts FILE with the upstream's host key (fjord never trusts a host key on first use); get one with `ssh-keyscan -p PORT HOST`")
	}
	if _, err := m.store.Repo(name); err == nil {
		return storage.MirrorSync{}, fmt.Errorf("repo %q: %w; choose another name or delete it first", name, storage.ErrExists)
	}
	if mir.Interval <= 0 {
		mir.Interval = DefaultInterval
	}
	for k := range creds {
		mir.Credentials = append(mir.Credentials, k)
	}
	if _, err := m.store.CreateRepo(ctx, storage.Repo{Name: name, Description: "mirror of " + up.URL}); err != nil {
		return storage.MirrorSync{}, err
	}
	undo := func() {
		if err := m.store.DeleteRepo(context.WithoutCancel(ctx), name); err != nil {
			m.log.Error("undo mirror add", "mirror", name, "err", err)
		}
	}
	if err := m.store.WriteCredentials(m.store.CredentialDir("mirror", name), name, creds); err != nil {
		undo()
		return storage.MirrorSync{}, err
	}
	if err := m.store.CreateMirror(mir); err != nil {
		undo()
		return storage.MirrorSync{}, err
	}
	m.mu.Lock()
	m.stateLocked(name).removed = false
	m.mu.Unlock()
	rec, err := m.syncNow(ctx, name, "add")
	if err != nil {
		m.forget(name)
		undo()
		return rec, fmt.Errorf("first sync of %q failed, so nothing was added; fix the cause and run mirror add again: %w", name, err)
	}
	return rec, nil
}

// Delete removes a mirror and, unless keepRepo, its repo.
func (m *Manager) Delete(ctx context.Context, repo string, keepRepo bool) error {
	if _, err := m.store.Mirror(repo); err != nil {
		return err
	}
	m.forget(repo)
	if keepRepo {
		return m.store.DeleteMirror(repo)
	}
	return m.store.DeleteRepo(ctx, repo)
}

func (m *Manager) forget(repo string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stateLocked(repo)
	st.removed = true
	if st.timer != nil {
		st.timer.Stop()
	}
}
