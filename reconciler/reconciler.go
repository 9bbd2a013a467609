package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/util/workqueue"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fjordhq/fjord/storage"
)

// Defaults for Config's zero values.
const (
	DefaultResyncInterval     = 3 * time.Minute
	DefaultFieldManager       = "fjord"
	DefaultInventoryNamespace = "kube-system"
	defaultWorkers            = 2
)

// Tracking marks on every object fjord applies. The label selects the
// objects the watches see; the annotation pins the object's identity, so
// a copy of the object (same label, other name or kind) is never pruned.
const (
	LabelApp           = "fjord.dev/app"
	AnnotationTracking = "fjord.dev/tracking-id"
	// AnnotationPrune set to "disabled" keeps an object when git drops it.
	AnnotationPrune = "fjord.dev/prune"
)

// Config configures a Reconciler. Store and RESTConfig are required.
type Config struct {
	Store *storage.Store
	// RESTConfig reaches fjord's own cluster (in-cluster): the default
	// destination. The clusters of `fjord cluster add` come from Store.
	RESTConfig *rest.Config
	// WrapTransport, if set, wraps the transport of every cluster's
	// clients (after fjord's own request counting): for tracing, or a
	// test that counts requests.
	WrapTransport transport.WrapperFunc
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// ResyncInterval is the period of the full reconcile that backs up
	// the push notifications. Zero means DefaultResyncInterval.
	ResyncInterval time.Duration
	// SSHAddr is fjord's SSH listen address; a repoURL ssh://HOST:PORT/NAME
	// with its port names a local repo. Empty accepts names and mirror
	// upstreams only.
	SSHAddr string
	// InventoryNamespace holds the ConfigMaps that copy each app's
	// inventory into the cluster. Empty means each app's destination
	// namespace, or kube-system for an app without one.
	InventoryNamespace string
	// FieldManager is the server-side apply field manager. Empty means
	// "fjord".
	FieldManager string
	// Workers is how many apps sync at once. Zero means 2.
	Workers int
	// Registerer receives the reconciler's metrics; nil registers none.
	Registerer prometheus.Registerer
	// WaveTimeout bounds the wait for a sync wave to become healthy and
	// for a hook to finish. Zero means DefaultWaveTimeout.
	WaveTimeout time.Duration
	// Charts gives local copies of charts from Helm repositories, for
	// apps with source.chart and charts with remote dependencies; nil
	// fails those apps with an error that says so.
	Charts ChartSource
}

// Reconciler syncs Applications from fjord's repos to a cluster. Create it
// with New, drive it with Run; its methods are safe for concurrent use.
type Reconciler struct {
	store        *storage.Store
	log          *slog.Logger
	fieldManager string
	invNamespace string
	sshPort      string
	resync       time.Duration
	workers      int
	waveTimeout  time.Duration
	metrics      *metrics
	charts       ChartSource

	// work holds the queues the running term's workers drain. Run
	// shuts its queues down when it returns and stores fresh ones, so
	// the reconciler runs again in the same process: a replica that
	// stepped down from primary and is elected again.
	work atomic.Pointer[queues]

	wrapTransport transport.WrapperFunc
	local         *cluster // the kubeconfig's: in-cluster
	clustersMu    sync.Mutex
	clusters      map[string]*cluster // by name, local included; built on first use

	mu        sync.Mutex
	apps      map[string]*appState
	triggers  map[string]storage.Trigger // pending trigger per queued app
	driftSeen driftSeen

	// parents names the apps that have, or once had, child apps or
	// projects (app of apps), so that a sync of an app that never had
	// children does not read and decode every stored app to look for
	// them: that made a full resync quadratic in the number of apps.
	// parents is nil until loaded from the store; declared holds the
	// parents seen declaring children since New, so a load racing with a
	// child being stored cannot lose one.
	parents  map[string]bool
	declared map[string]bool
}

// appState is what the reconciler keeps in memory for one app.
type appState struct {
	name   string
	syncMu sync.Mutex // one sync of an app at a time

	mu       sync.Mutex // guards the fields below
	app      *Application
	repo     string
	desired  map[ObjectRef]*unstructured.Unstructured // as last applied, for drift
	reported map[ObjectRef]string                     // last drift reported, to report once
	deleting bool
	// render cache: the same commit and path render the same objects.
	renderKey    string
	renderObjs   []*unstructured.Unstructured
	renderInputs []*renderInputs // what the cached render read, by source
	retry        retryState      // syncPolicy.retry after a failure
	cluster      *cluster        // where it deploys, as its last sync resolved it
}

// New returns a Reconciler. It does not contact the cluster until Run or a
// sync.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Store == nil || cfg.RESTConfig == nil {
		return nil, errors.New("reconciler: Config.Store and Config.RESTConfig are required")
	}
	r := &Reconciler{
		store:         cfg.Store,
		log:           cfg.Logger,
		wrapTransport: cfg.WrapTransport,
		clusters:      map[string]*cluster{},
		fieldManager:  cfg.FieldManager,
		invNamespace:  cfg.InventoryNamespace,
		resync:        cfg.ResyncInterval,
		workers:       cfg.Workers,
		waveTimeout:   cfg.WaveTimeout,
		metrics:       newMetrics(cfg.Registerer),
		charts:        cfg.Charts,
		apps:          map[string]*appState{},
		triggers:      map[string]storage.Trigger{},
		driftSeen:     driftSeen{},
	}
	r.work.Store(newQueues())
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.fieldManager == "" {
		r.fieldManager = DefaultFieldManager
	}
	if r.resync <= 0 {
		r.resync = DefaultResyncInterval
	}
	if r.workers <= 0 {
		r.workers = defaultWorkers
	}
	if r.waveTimeout <= 0 {
		r.waveTimeout = DefaultWaveTimeout
	}
	if cfg.SSHAddr != "" {
		if _, port, err := net.SplitHostPort(cfg.SSHAddr); err == nil {
			r.sshPort = port
		}
	}
	local, err := r.newCluster(InClusterName, cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	r.local = local
	r.clusters[InClusterName] = local
	return r, nil
}

// Run loads the stored apps, syncs each once, then syncs on every ref
// change of their repos and every ResyncInterval, and reverts drift, until
// ctx is done. It returns nil on cancellation.
func (r *Reconciler) Run(ctx context.Context) error {
	q := r.work.Load()
	r.startClusters()
	sub := r.store.Subscribe()
	defer sub.Close()
	defer r.stopClusters()

	apps, err := r.store.Apps()
	if err != nil {
		return fmt.Errorf("reconciler: load apps: %w", err)
	}
	// Another primary may have added children while this one was not
	// running: start from what the store says.
	if err := r.loadParents(apps); err != nil {
		return fmt.Errorf("reconciler: load apps: %w", err)
	}
	for _, a := range apps {
		app, err := ParseApplication([]byte(a.Manifest))
		if err != nil {
			// A newer fjord wrote it, or the rules tightened: say so on
			// the app and keep the objects as they are.
			r.log.Error("stored app no longer parses; leaving its objects alone", "app", a.Name, "err", err)
			st := a.Status
			st.Sync, st.Error = "Error", err.Error()
			_ = r.store.SetAppStatus(a.Name, st)
			continue
		}
		r.state(app.Metadata.Name, app)
		r.enqueue(app.Metadata.Name, storage.TriggerStart)
	}

	var wg sync.WaitGroup
	for range r.workers {
		wg.Go(func() { r.worker(ctx, q.sync) })
	}
	for range 2 {
		wg.Go(func() { r.driftWorker(ctx, q.drift) })
	}
	wg.Go(func() { r.healthWorker(ctx, q.health) })
	// Shutting the queues down ends the workers once their item is done;
	// only then may Run return. The next Run drains fresh queues: what
	// is queued between terms waits for it (and it queues every app).
	defer func() {
		q.shutDown()
		wg.Wait()
		r.work.Store(newQueues())
	}()

	tick := time.NewTicker(r.resync)
	defer tick.Stop()
	r.log.Info("reconciler running", "apps", len(apps), "resync", r.resync, "fieldManager", r.fieldManager)
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-sub.C:
			if !ok {
				return nil
			}
			r.onRefChange(c)
		case <-tick.C:
			for _, name := range r.appNames() {
				r.enqueue(name, storage.TriggerResync)
			}
		}
	}
}

// onRefChange queues the apps whose repo moved and whose revision now
// resolves to a commit other than the one they last rendered (or whose
// last sync failed). An app's repo is resolved again each time, so a repo
// deleted and created again, or a mirror added later, is followed. When
// the commit touches none of the app's inputs (the files its last render
// read, or its manifest-generate-paths), the cached render is carried to
// the new commit: the sync that follows renders nothing.
func (r *Reconciler) onRefChange(c storage.RefChange) {
	if _, ok := r.store.Refs(c.Repo); !ok {
		return
	}
	trigger := storage.TriggerPush
	if _, err := r.store.Mirror(c.Repo); err == nil {
		trigger = storage.TriggerMirror
	}
	r.mu.Lock()
	states := make([]*appState, 0, len(r.apps))
	for _, st := range r.apps {
		states = append(states, st)
	}
	r.mu.Unlock()
	diffs := map[string][]string{} // "repo from to" -> changed paths
	for _, st := range states {
		st.mu.Lock()
		app, last, inputs := st.app, st.renderKey, st.renderInputs
		st.mu.Unlock()
		if app == nil {
			continue
		}
		if !r.refChangeConcerns(st, app, c.Repo, last, inputs, diffs) {
			continue
		}
		r.enqueue(st.name, trigger)
	}
}

// inputsTouched reports whether changed paths reach an app's render: its
// manifest-generate-paths when set, else what its last render read.
func inputsTouched(app *Application, in *renderInputs, changed []string) bool {
	if paths := app.ManifestGeneratePaths(); paths != nil {
		for _, c := range changed {
			for _, p := range paths {
				if p == "" || c == p || strings.HasPrefix(c, p+"/") {
					return true
				}
			}
		}
		return false
	}
	return in == nil || in.touchedBy(changed)
}

// lastSyncFailed reports whether the app's stored status is an error.
func (r *Reconciler) lastSyncFailed(name string) bool {
	a, err := r.store.App(name)
	return err != nil || a.Status.Sync == storage.SyncError
}

func (r *Reconciler) enqueue(name string, trigger storage.Trigger) {
	r.mu.Lock()
	if _, queued := r.triggers[name]; !queued {
		r.triggers[name] = trigger
	}
	r.mu.Unlock()
	r.work.Load().sync.Add(name)
}

// queues are one term's work: app syncs, drifted objects to heal, apps
// whose health to read again.
type queues struct {
	sync   workqueue.TypedInterface[string]
	drift  workqueue.TypedInterface[driftKey]
	health workqueue.TypedDelayingInterface[string]
}

func newQueues() *queues {
	return &queues{
		sync:   workqueue.NewTyped[string](),
		drift:  workqueue.NewTyped[driftKey](),
		health: workqueue.NewTypedDelayingQueue[string](),
	}
}

func (q *queues) shutDown() {
	q.sync.ShutDown()
	q.drift.ShutDown()
	q.health.ShutDown()
}

func (r *Reconciler) worker(ctx context.Context, queue workqueue.TypedInterface[string]) {
	for {
		name, quit := queue.Get()
		if quit {
			return
		}
		r.mu.Lock()
		trigger := r.triggers[name]
		delete(r.triggers, name)
		st := r.apps[name]
		r.mu.Unlock()
		if st != nil {
			if _, err := r.syncAndRetry(ctx, st, trigger, SyncOptions{}); err != nil && ctx.Err() == nil {
				r.log.Warn("sync failed", "app", name, "trigger", trigger, "err", err)
			}
		}
		queue.Done(name)
	}
}

// state returns the in-memory state of an app, creating or updating it.
func (r *Reconciler) state(name string, app *Application) *appState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.apps[name]
	if !ok {
		st = &appState{name: name, desired: map[ObjectRef]*unstructured.Unstructured{}, reported: map[ObjectRef]string{}}
		r.apps[name] = st
	}
	if app != nil {
		st.mu.Lock()
		st.app = app
		st.renderKey, st.renderObjs = "", nil
		st.mu.Unlock()
	}
	return st
}

func (r *Reconciler) lookup(name string) *appState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.apps[name]
}

func (r *Reconciler) appNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.apps))
	for n := range r.apps {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Apply stores an Application (YAML or JSON) and, if its sync policy is
// automated, syncs it before returning. A document fjord refuses is an
// error wrapping ErrInvalidApp and changes nothing.
func (r *Reconciler) Apply(ctx context.Context, manifest []byte) (storage.App, error) {
	app, err := ParseApplication(manifest)
	if err != nil {
		return storage.App{}, err
	}
	if err := r.admit(app); err != nil {
		return storage.App{}, err
	}
	if _, err := r.store.PutApp(app.Metadata.Name, string(manifest), r.storageMeta(app, "")); err != nil {
		return storage.App{}, err
	}
	st := r.state(app.Metadata.Name, app)
	trigger := storage.TriggerApply
	if _, err := r.syncAndRetry(ctx, st, trigger, SyncOptions{}); err != nil && ctx.Err() != nil {
		return storage.App{}, err
	}
	return r.store.App(app.Metadata.Name)
}

// SyncOptions change one sync.
type SyncOptions struct {
	// Manual applies even when the app has no automated policy.
	Manual bool
	// Prune deletes objects git dropped even when the policy does not.
	Prune bool
}

// Sync syncs an app now, as `fjord app sync` does, and returns the record
// it added to the app's history.
func (r *Reconciler) Sync(ctx context.Context, name string, opts SyncOptions) (storage.AppSync, error) {
	st := r.lookup(name)
	if st == nil {
		return storage.AppSync{}, fmt.Errorf("app %q: %w", name, storage.ErrNotFound)
	}
	opts.Manual = true
	return r.syncAndRetry(ctx, st, storage.TriggerManual, opts)
}

// Delete removes an app. With cascade, or when the app carries the
// resources finalizer, the objects it applied (and that still carry its
// tracking mark) are deleted too, with the finalizer's propagation, and so
// are its child apps (each per its own finalizer); without, they stay in
// the cluster, unmanaged but still labelled.
func (r *Reconciler) Delete(ctx context.Context, name string, cascade bool) (ChangeSet, error) {
	st := r.lookup(name)
	if st == nil {
		return nil, fmt.Errorf("app %q: %w", name, storage.ErrNotFound)
	}
	st.syncMu.Lock()
	defer st.syncMu.Unlock()
	st.mu.Lock()
	app := st.app
	st.deleting = true
	st.desired = map[ObjectRef]*unstructured.Unstructured{}
	st.retry.stop()
	st.mu.Unlock()

	finalizer, propagation := app.DeleteCascade()
	if !finalizer {
		propagation = "" // --cascade alone deletes in the background, as it always did
	}
	cascade = cascade || finalizer
	c, err := r.clusterFor(nil, app)
	if err != nil {
		if cascade {
			return nil, fmt.Errorf("delete app %q with its objects: %w", name, err)
		}
		// Without cascade nothing in the cluster is needed but the
		// inventory copy; an app whose cluster is gone is still deleted.
		r.log.Warn("app deleted without removing its inventory ConfigMap", "app", name, "err", err)
	}
	cs, err := r.deleteChildren(ctx, name, cascade)
	if err != nil {
		return cs, err
	}
	if cascade {
		inv, err := r.previousInventory(ctx, c, app)
		if err != nil {
			return nil, err
		}
		res := r.prune(ctx, c, name, Diff(inv, Inventory{}), pruneOpts{enabled: true, cascade: true, propagation: propagation})
		cs = append(cs, res.cs...)
		if len(res.kept) > 0 {
			r.log.Info("app deleted; objects kept", "app", name, "kept", len(res.kept))
		}
	}
	if c != nil && !c.down() {
		if err := r.deleteClusterInventory(ctx, c, app); err != nil {
			return cs, err
		}
	}
	if err := r.store.DeleteApp(name); err != nil {
		return cs, err
	}
	r.mu.Lock()
	delete(r.apps, name)
	r.mu.Unlock()
	return cs, nil
}
