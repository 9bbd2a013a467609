// Package housekeeping keeps fjord's repos fast as they age, the way
// Gitaly's heuristic housekeeping does: after a push or a sync it looks at
// the repo (loose objects, packs, multi-pack index, bitmap, commit-graph,
// loose refs) and does only what is due: a repack (whole for a small
// repo, geometric for a large one) with a multi-pack index and its bitmap, a commit-graph, packed refs, and, at
// most once per FullRepackInterval, a full repack that puts unreachable
// objects into a cruft pack and drops those older than a grace period
// (git's gc.pruneExpire, two weeks, so a push in flight never loses an
// object it counted on). Objects kept
// only by fjord's hidden refs (refs/fjord/backup/...) are reachable and so
// never pruned, and no ref is ever deleted.
//
// One repo is housekept at a time, off the request path, holding the
// repo's upkeep lock (storage.LockRepoUpkeep): pushes and syncs wait while
// its packs are rewritten, and a backup never copies them half-replaced.
//
// A replica that follows a primary housekeeps its own copy in Follower
// mode: the same repacks, indexes and commit-graphs, so the packs it
// installs one per push do not pile up, but never the full repack, so it
// drops no object (its primary may later point a ref at an object the
// follower holds unreachable, such as a deleted branch's) and records
// nothing (a follower's store takes only its primary's changes).
package housekeeping

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config's zero fields.
const (
	// DefaultPruneGrace is git's own gc.pruneExpire: an unreachable object
	// younger than this may still be wanted by a push in flight.
	DefaultPruneGrace = 14 * 24 * time.Hour
	// DefaultDelay batches a burst of pushes into one look at the repo.
	DefaultDelay = 2 * time.Second
	// DefaultLooseObjectLimit is the loose-object count above which the
	// repo is repacked; Gitaly's limit.
	DefaultLooseObjectLimit = 1024
	// DefaultLooseRefLimit is the loose-ref count above which refs are
	// packed.
	DefaultLooseRefLimit = 64
	// DefaultFullRepackInterval spaces the full repacks that prune.
	DefaultFullRepackInterval = 24 * time.Hour
)

// newPackLimit is how many packs pushes and fetches may add beside the
// multi-pack index before a repack folds them in: writing the index and
// its bitmap walks the whole repo, too much to do for every push.
const newPackLimit = 8

// DefaultWholeRepackBelow is the pack size below which a repack rewrites
// the whole repo rather than merging packs geometrically: rewriting it
// takes well under a second, and one pack serves clones fastest.
const DefaultWholeRepackBelow = 64 << 20

// Config configures a Manager. Store is required.
type Config struct {
	Store *storage.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Git is the git binary; empty means "git" from PATH.
	Git string
	// PruneGrace: unreachable objects older than this are pruned (in
	// Primary mode; a Follower prunes none). Zero means DefaultPruneGrace.
	PruneGrace time.Duration
	// Delay between a repo's change and its housekeeping. Zero means
	// DefaultDelay.
	Delay time.Duration
	// LooseObjectLimit and LooseRefLimit: zero means the defaults.
	LooseObjectLimit int
	LooseRefLimit    int
	// FullRepackInterval: in Primary mode, a repack due at least this
	// long after the last full one is a full repack, which prunes. Zero
	// means DefaultFullRepackInterval.
	FullRepackInterval time.Duration
	// WholeRepackBelow: a repo whose packs are smaller than this many
	// bytes is repacked whole (reachable objects into one pack, nothing
	// pruned) instead of geometrically. Zero means
	// DefaultWholeRepackBelow; negative means always geometric.
	WholeRepackBelow int64
}

// Mode is what a Run or a Housekeep may do to a repo's objects.
type Mode int

const (
	// Primary housekeeping, for a server alone or a group's primary, runs
	// every step, including the full repack that drops unreachable
	// objects older than Config.PruneGrace.
	Primary Mode = iota
	// Follower housekeeping, for a replica that follows a primary, never
	// drops an object: a repack keeps the unreachable objects in a cruft
	// pack without expiry (or, geometric, packs whatever it merges), and
	// git prune never runs. It writes to the repo's own files only, never
	// to the store.
	Follower
)

// String names the mode in logs.
func (md Mode) String() string {
	if md == Follower {
		return "follower"
	}
	return "primary"
}

// Manager schedules and runs housekeeping.
type Manager struct {
	store   *storage.Store
	log     *slog.Logger
	git     gitrun.Runner
	grace   time.Duration
	delay   time.Duration
	loose   int
	refs    int
	full    time.Duration
	whole   int64
	metrics *metrics

	// running is held by the one Run in progress: a member that changes
	// roles starts the next mode's Run while the last one may still be
	// finishing its repo.
	running chan struct{}

	mu      sync.Mutex
	pending map[string]time.Time // repo -> when it is due
	wake    chan struct{}
}

// New returns a Manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("housekeeping: Config.Store is required")
	}
	m := &Manager{
		store:   cfg.Store,
		log:     cfg.Logger,
		git:     gitrun.Runner{Git: cfg.Git},
		grace:   cfg.PruneGrace,
		delay:   cfg.Delay,
		loose:   cfg.LooseObjectLimit,
		refs:    cfg.LooseRefLimit,
		full:    cfg.FullRepackInterval,
		whole:   cfg.WholeRepackBelow,
		running: make(chan struct{}, 1),
		pending: make(map[string]time.Time),
		wake:    make(chan struct{}, 1),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.grace == 0 {
		m.grace = DefaultPruneGrace
	}
	if m.delay == 0 {
		m.delay = DefaultDelay
	}
	if m.loose == 0 {
		m.loose = DefaultLooseObjectLimit
	}
	if m.whole == 0 {
		m.whole = DefaultWholeRepackBelow
	}
	if m.full == 0 {
		m.full = DefaultFullRepackInterval
	}
	if m.refs == 0 {
		m.refs = DefaultLooseRefLimit
	}
	var err error
	if m.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return m, nil
}

// Run looks at every repo once, then at each repo whose refs change (a
// push, a sync, or on a follower a change applied from its primary), one
// repo at a time, in mode, until ctx is done.
//
// Run may be called again after it returned, in either mode, as a replica
// changes roles. A Run called while another runs waits for that one to
// return (or for ctx to end), so two Runs never housekeep at once.
func (m *Manager) Run(ctx context.Context, mode Mode) error {
	select {
	case m.running <- struct{}{}:
		defer func() { <-m.running }()
	case <-ctx.Done():
		return nil
	}
	sub := m.store.Subscribe()
	defer sub.Close()
	repos, err := m.store.Repos()
	if err != nil {
		return fmt.Errorf("housekeeping: %w", err)
	}
	for _, r := range repos {
		m.Schedule(r.Name)
	}
	go func() {
		for c := range sub.C {
			m.Schedule(c.Repo)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		repo, wait := m.next()
		if repo != "" {
			if _, err := m.Housekeep(ctx, repo, mode); err != nil && ctx.Err() == nil {
				m.log.Warn("housekeeping failed; it is tried again after the next change", "repo", repo, "err", err)
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// Schedule asks for repo to be housekept after Config.Delay; a repo
// already waiting keeps its turn.
func (m *Manager) Schedule(repo string) {
	m.mu.Lock()
	if _, ok := m.pending[repo]; !ok {
		m.pending[repo] = time.Now().Add(m.delay)
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// next returns a repo that is due, or how long until one is.
func (m *Manager) next() (string, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	wait := time.Hour
	now := time.Now()
	for repo, due := range m.pending {
		if !due.After(now) {
			delete(m.pending, repo)
			return repo, 0
		}
		wait = min(wait, due.Sub(now))
	}
	return "", wait
}

// Result says what one housekeeping of a repo found and did.
type Result struct {
	Before, After Stats
	// Repacked, CommitGraph, PackedRefs and Pruned are the steps run.
	Repacked, CommitGraph, PackedRefs, Pruned bool
	Duration                                  time.Duration
}

// Did reports whether any step ran.
func (r Result) Did() bool { return r.Repacked || r.CommitGraph || r.PackedRefs || r.Pruned }

// Housekeep looks at repo now and runs the steps that are due in mode,
// holding the repo's upkeep lock.
func (m *Manager) Housekeep(ctx context.Context, repo string, mode Mode) (Result, error) {
	start := time.Now()
	unlock, err := m.store.LockRepoUpkeep(ctx, repo)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	dir := m.store.RepoPath(repo)
	if _, err := os.Stat(dir); err != nil {
		return Result{}, nil // deleted meanwhile
	}
	res := Result{}
	if res.Before, err = Inspect(dir); err != nil {
		return res, fmt.Errorf("housekeeping %s: %w", repo, err)
	}
	if err := m.configure(ctx, dir); err != nil {
		return res, fmt.Errorf("housekeeping %s: %w", repo, err)
	}
	st := res.Before
	if st.LooseObjects >= m.loose || st.Packs > 1 && !st.MultiPackIndex || st.Packs > 0 && !st.Bitmap || st.PacksOutsideMIDX >= newPackLimit {
		if mode == Primary && m.fullRepackDue(ctx, dir, start) {
			// All into one pack, the unreachable objects into a cruft pack
			// that remembers their age; those older than the grace period
			// are dropped. Only this prunes: a geometric repack packs
			// unreachable loose objects too. Never on a follower: the
			// primary decides when an object is garbage, and may still
			// point a ref at one the follower holds unreachable.
			expire := "--cruft-expiration=@" + strconv.FormatInt(start.Add(-m.grace).Unix(), 10)
			if _, err := m.run(ctx, dir, "repack", "--cruft", "-d", expire, "--write-midx", "--write-bitmap-index", "-q"); err != nil {
				return res, fmt.Errorf("housekeeping %s: %w", repo, err)
			}
			// The expired objects the repack left loose go, as git gc does.
			if _, err := m.run(ctx, dir, "prune", "--expire=@"+strconv.FormatInt(start.Add(-m.grace).Unix(), 10)); err != nil {
				return res, fmt.Errorf("housekeeping %s: %w", repo, err)
			}
			if _, err := m.run(ctx, dir, "config", keyFullRepack, strconv.FormatInt(start.Unix(), 10)); err != nil {
				return res, fmt.Errorf("housekeeping %s: %w", repo, err)
			}
			res.Pruned = true
		} else if st.PackBytes < m.whole {
			// A small repo (most GitOps repos) is repacked whole: every
			// reachable object into one pack, the unreachable ones into a
			// cruft pack that keeps their ages, so nothing is pruned here
			// (no --cruft-expiration: git then expires none; a plain
			// -a -d would drop them all) and the full repack still drops
			// them on time. git before
			// 2.44 reuses objects only from a bitmap's preferred pack, so
			// a clone of several geometric packs recompresses the others:
			// 1.66x the time of a fresh repo in BenchmarkAgedRepo.
			if _, err := m.run(ctx, dir, "repack", "--cruft", "-d", "--write-midx", "--write-bitmap-index", "-q"); err != nil {
				return res, fmt.Errorf("housekeeping %s: %w", repo, err)
			}
		} else {
			// Geometric: packs are merged only until each is at least twice
			// the size of the next smaller, so the big pack of an old repo
			// is not rewritten for every push. Loose objects are rolled into
			// the new pack; -d removes what the new pack replaced.
			if _, err := m.run(ctx, dir, "repack", "--geometric=2", "-d", "--write-midx", "--write-bitmap-index", "-q"); err != nil {
				return res, fmt.Errorf("housekeeping %s: %w", repo, err)
			}
		}
		res.Repacked = true
	}
	if res.Repacked || !st.CommitGraph && st.Packs+st.LooseObjects > 0 {
		if _, err := m.run(ctx, dir, "commit-graph", "write", "--reachable", "--split", "--changed-paths"); err != nil {
			return res, fmt.Errorf("housekeeping %s: %w", repo, err)
		}
		res.CommitGraph = true
	}
	if st.LooseRefs >= m.refs {
		if _, err := m.run(ctx, dir, "pack-refs", "--all"); err != nil {
			return res, fmt.Errorf("housekeeping %s: %w", repo, err)
		}
		res.PackedRefs = true
	}
	res.Duration = time.Since(start)
	if res.After, err = Inspect(dir); err != nil {
		return res, fmt.Errorf("housekeeping %s: %w", repo, err)
	}
	m.metrics.observe(res)
	if res.Did() {
		m.log.Info("repo housekept", "repo", repo, "mode", mode, "repacked", res.Repacked, "commitGraph", res.CommitGraph,
			"packedRefs", res.PackedRefs, "pruned", res.Pruned, "packs", fmt.Sprintf("%d->%d", res.Before.Packs, res.After.Packs),
			"looseObjects", fmt.Sprintf("%d->%d", res.Before.LooseObjects, res.After.LooseObjects), "took", res.Duration.Round(time.Millisecond))
	}
	return res, nil
}

// repoConfig is what housekeeping sets in every repo's own config: git's
// automatic gc and maintenance off (receive-pack and fetch would start
// them outside the upkeep lock; housekeeping does that work instead), and
// every push and fetch kept as the pack it arrived in rather than
// exploded into loose objects, which a clone would have to compress again
// until the next repack.
var repoConfig = [][2]string{{"gc.auto", "0"}, {"receive.autogc", "false"}, {"maintenance.auto", "false"}, {"transfer.unpackLimit", "1"}}

// configure writes repoConfig into the repo's config where it differs.
func (m *Manager) configure(ctx context.Context, dir string) error {
	for _, kv := range repoConfig {
		out, _ := m.run(ctx, dir, "config", "--get", kv[0])
		if strings.TrimSpace(out) == kv[1] {
			continue
		}
		if _, err := m.run(ctx, dir, "config", kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func (m *Manager) run(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := m.git.Output(ctx, dir, nil, args...)
	return string(out), err
}

// Stats describe a repo's object storage.
type Stats struct {
	// LooseObjects counts the objects in objects/xx/ (names only: 256
	// directory reads, no stat).
	LooseObjects int `json:"looseObjects"`
	Packs        int `json:"packs"`
	// PackBytes is the size of the packs together.
	PackBytes int64 `json:"packBytes"`
	// PacksOutsideMIDX counts packs newer than the multi-pack index.
	PacksOutsideMIDX int  `json:"packsOutsideMidx"`
	MultiPackIndex   bool `json:"multiPackIndex"`
	Bitmap           bool `json:"bitmap"`
	CommitGraph      bool `json:"commitGraph"`
	LooseRefs        int  `json:"looseRefs"`
}

// Inspect reads a bare repo's Stats from its files, without running git.
func Inspect(dir string) (Stats, error) {
	var st Stats
	objects := filepath.Join(dir, "objects")
	for i := 0; i < 256; i++ {
		names, err := readNames(filepath.Join(objects, fmt.Sprintf("%02x", i)))
		if err != nil {
			return st, err
		}
		for _, n := range names {
			if len(n) == 38 {
				st.LooseObjects++
			}
		}
	}
	packDir := filepath.Join(objects, "pack")
	var midx time.Time
	if fi, err := os.Stat(filepath.Join(packDir, "multi-pack-index")); err == nil {
		st.MultiPackIndex, midx = true, fi.ModTime()
	}
	ents, err := os.ReadDir(packDir)
	if err != nil && !os.IsNotExist(err) {
		return st, err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".pack") && !strings.HasPrefix(name, "tmp_"):
			st.Packs++
			if fi, err := e.Info(); err == nil {
				st.PackBytes += fi.Size()
				if st.MultiPackIndex && fi.ModTime().After(midx) {
					st.PacksOutsideMIDX++
				}
			}
		case strings.HasSuffix(name, ".bitmap"):
			st.Bitmap = true
		}
	}
	for _, p := range []string{"info/commit-graph", "info/commit-graphs/commit-graph-chain"} {
		if _, err := os.Stat(filepath.Join(objects, p)); err == nil {
			st.CommitGraph = true
		}
	}
	err = filepath.WalkDir(filepath.Join(dir, "refs"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			st.LooseRefs++
		}
		return err
	})
	return st, err
}

// keyFullRepack is the repo config key recording the last full repack.
const keyFullRepack = "fjord.lastFullRepack"

// fullRepackDue reports whether the last full repack of the repo is older
// than Config.FullRepackInterval.
func (m *Manager) fullRepackDue(ctx context.Context, dir string, now time.Time) bool {
	out, _ := m.run(ctx, dir, "config", "--get", keyFullRepack)
	last, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return true
	}
	return now.Sub(time.Unix(last, 0)) >= m.full
}

// readNames lists a directory's entry names; a missing one has none.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
