package reconciler

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fjordhq/fjord/storage"
)

// syncApp plans an app's revision and, when its policy (or opts) says
// so, executes the plan and records the result. It returns the history
// record; the error is the sync's failure, already recorded on the status.
func (r *Reconciler) syncApp(ctx context.Context, st *appState, trigger storage.Trigger, opts SyncOptions) (storage.AppSync, error) {
	st.syncMu.Lock()
	defer st.syncMu.Unlock()
	parent := ctx
	// A hung API server must not hold the app's lock forever.
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	start := time.Now()
	rec := storage.AppSync{Start: start.UTC(), Trigger: trigger}

	st.mu.Lock()
	app := st.app
	deleting := st.deleting
	st.mu.Unlock()
	if app == nil || deleting {
		return rec, fmt.Errorf("app %q: %w", st.name, storage.ErrNotFound)
	}
	name := app.Metadata.Name
	prevStatus := storage.AppStatus{}
	if a, err := r.store.App(name); err == nil {
		prevStatus = a.Status
	}
	status := prevStatus
	status.LastAttempt = start.UTC()
	status.Progress = nil

	fail := func(err error) (storage.AppSync, error) {
		rec.Error = err.Error()
		rec.Duration = time.Since(start)
		if c := st.clusterOf(); c != nil && c.down() && parent.Err() == nil {
			// Not a failure of the app: its cluster is away. The app is
			// Unknown until the cluster answers and it is synced again.
			r.markUnknown(name, c)
			return rec, c.downError()
		}
		status.Sync, status.Error = "Error", err.Error()
		if status.Health == "" {
			status.Health = "Unknown"
		}
		if parent.Err() != nil {
			// Shutting down: the sync was cut short, not failed; the
			// previous status stands and the next start syncs again.
			return rec, err
		}
		r.metrics.observeSync(clusterName(st), rec)
		if serr := r.store.RecordAppSync(name, status, nil, rec); serr != nil {
			r.log.Error("record sync", "app", name, "err", serr)
		}
		r.syncFailedEvent(st.clusterOf(), app, nil, prevStatus, status)
		return rec, err
	}

	p, err := r.plan(ctx, st, app)
	if p != nil {
		status.Repo = p.repo
		status.Refused = p.refused
		rec.Revision, status.Revision = p.commit, p.commit
		status.Sources = sourceRevisions(app, p.revisions, prevStatus.Sources)
	}
	if err != nil {
		return fail(err)
	}
	commit := p.commit

	if !app.Auto() && !opts.Manual {
		// Manual policy: report whether git and the last sync agree,
		// touch nothing.
		status.Sync = "Synced"
		for _, u := range p.objs {
			if e, ok := p.prev[RefOf(u)]; !ok || e.Hash != hashObject(u) {
				status.Sync = "OutOfSync"
				break
			}
		}
		if len(Diff(p.prev, inventoryOf(p.objs))) > 0 {
			status.Sync = "OutOfSync"
		}
		status.Error = ""
		rec.Duration = time.Since(start)
		status.Health, status.Objects = r.health(ctx, p.cluster, p.prev)
		return rec, r.store.SetAppStatus(name, status)
	}

	// Drift is sent back when selfHeal says so, when asked (app sync,
	// app apply), and when git moved (a new commit is applied whole, as
	// Argo CD does); a resync of the same commit only reports it.
	heal := app.SelfHeal() || opts.Manual || trigger == storage.TriggerApply || commit != prevStatus.SyncedCommit || sourcesMoved(status.Sources)
	// Hooks run when the sync changes something, as an Argo CD auto-sync
	// runs only for an app that is OutOfSync: a resync, a restart, or a
	// push that renders what the last good sync applied creates no hook
	// (a chart's pre-upgrade Job is not run again every resync).
	switch trigger {
	case storage.TriggerPush, storage.TriggerMirror, storage.TriggerResync, storage.TriggerStart, storage.TriggerParent:
		p.noHooks = !opts.Manual && prevStatus.Sync == storage.Synced && sameAsInventory(p)
	}
	o := r.execute(ctx, st, p, opts, heal)
	cs, next, applyErr := o.cs, o.next, o.err
	// Objects not pruned stay in the inventory: they are still this
	// app's, reported as orphans, and a later prune may delete them.
	status.Orphans = nil
	loud := 0
	for _, e := range o.kept {
		next[e.Ref] = e
		status.Orphans = append(status.Orphans, e.Ref.String())
		if !o.quiet[e.Ref] {
			loud++
		}
	}
	cs.sort()

	inv := next.toStorage(commit)
	if !sameInventory(p.prev, next) {
		if err := r.saveClusterInventory(ctx, p.cluster, app, inv); err != nil && applyErr == nil {
			applyErr = err
		}
	}
	for _, c := range cs {
		if c.Action != Unchanged {
			rec.Changes = append(rec.Changes, storage.ObjectChange{ID: c.Ref.String(), Action: string(c.Action), Reason: c.Reason})
		} else {
			rec.Unchanged++
		}
	}
	status.Health, status.Objects = r.health(ctx, p.cluster, next)
	rec.Duration = time.Since(start)
	if applyErr != nil {
		status.Sync, status.Error = "Error", applyErr.Error()
		rec.Error = applyErr.Error()
		if p.cluster.down() {
			// Cut short by its cluster going away: Unknown, not the
			// app's error. What was applied stays in the inventory.
			status.Sync, status.Health, status.Objects, status.Error = storage.SyncUnknown, "Unknown", nil, p.cluster.downError().Error()
		}
	} else {
		status.Sync, status.Error = "Synced", ""
		if loud > 0 {
			status.Sync = "OutOfSync"
		}
		for _, d := range o.drifts {
			if d.Action == storage.DriftReported {
				status.Sync = "OutOfSync" // drift that stands
			}
		}
		// An object another app manages is not this app's to apply: the
		// app cannot be in sync until one of the two lets go of it.
		var conflicts []string
		for _, c := range cs {
			if c.Owner != "" {
				conflicts = append(conflicts, c.Ref.String()+" is "+c.Reason)
			}
		}
		if len(conflicts) > 0 {
			status.Sync, status.Error = "OutOfSync", strings.Join(conflicts, "; ")
		}
		status.SyncedCommit = commit
		for i := range status.Sources {
			status.Sources[i].Synced = status.Sources[i].Revision
		}
		status.LastSynced = time.Now().UTC()
	}
	if parent.Err() != nil && applyErr != nil {
		return rec, applyErr // cut short by shutdown; see fail
	}
	r.metrics.observeSync(p.cluster.name, rec)
	if err := r.store.RecordAppSync(name, status, &inv, rec); err != nil {
		return rec, fmt.Errorf("record sync of app %q: %w", name, err)
	}
	for _, d := range o.drifts {
		r.metrics.drift.WithLabelValues(p.cluster.name, name, string(d.Action)).Inc()
		if err := r.store.RecordDrift(name, d); err != nil {
			r.log.Error("record drift", "app", name, "object", d.Object, "err", err)
		}
		r.driftRevertedEvent(p.cluster, name, objectByRef(p.objs, d.Object), d)
	}
	if applyErr != nil {
		r.syncFailedEvent(p.cluster, app, p.objs, prevStatus, status)
	}
	if len(rec.Changes) > 0 || applyErr != nil {
		attrs := []any{"app", name, "trigger", trigger, "commit", short(commit), "changed", len(rec.Changes), "unchanged", rec.Unchanged, "took", rec.Duration.Round(time.Millisecond)}
		if applyErr != nil {
			attrs = append(attrs, "err", applyErr) // a successful sync logs no err=<nil>
		}
		r.log.Info("app synced", attrs...)
	}
	return rec, applyErr
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func pathOrRoot(p string) string {
	if p == "" || p == "." {
		return "the repo root"
	}
	return p
}

func sameInventory(a, b Inventory) bool {
	if len(a) != len(b) {
		return false
	}
	for ref, e := range a {
		if f, ok := b[ref]; !ok || f != e {
			return false
		}
	}
	return true
}

func inventoryOf(objs []*unstructured.Unstructured) Inventory {
	inv := Inventory{}
	for _, u := range objs {
		inv[RefOf(u)] = Entry{Ref: RefOf(u), Version: u.GroupVersionKind().Version, Hash: hashObject(u)}
	}
	return inv
}

// render returns the objects of a commit, from the app's cache when the
// commit and path have not changed (a resync of an unchanged repo renders
// nothing). The objects returned must not be modified.
func (r *Reconciler) render(ctx context.Context, c *cluster, st *appState, app *Application, revs []sourceRev) ([]*unstructured.Unstructured, error) {
	key := sourcesKey(revs)
	st.mu.Lock()
	if st.renderKey == key {
		objs := st.renderObjs
		st.mu.Unlock()
		return objs, nil
	}
	st.mu.Unlock()
	r.metrics.renders.WithLabelValues(st.name).Inc()
	env := renderEnv{
		helm: helmEnv{
			ctx:       ctx,
			charts:    r.charts,
			caps:      helmCapabilities(c.disco),
			appName:   app.Metadata.Name,
			namespace: app.Spec.Destination.Namespace,
		},
		repoPath: r.store.RepoPath,
	}
	objs, inputs, err := renderSources(env, app, revs)
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	st.renderKey, st.renderObjs, st.renderInputs = key, objs, inputs
	st.mu.Unlock()
	return objs, nil
}

// previousInventory is the inventory in bbolt or, when the data dir lost
// it, the copy in the cluster.
func (r *Reconciler) previousInventory(ctx context.Context, c *cluster, a *Application) (Inventory, error) {
	app := a.Metadata.Name
	s, ok, err := r.store.AppInventory(app)
	if err != nil {
		return nil, err
	}
	if !ok {
		if s, ok, err = r.loadClusterInventory(ctx, c, a); err != nil {
			return nil, err
		}
		if ok {
			r.log.Info("inventory restored from the cluster", "app", app, "objects", len(s.Entries))
		}
	}
	return inventoryFrom(s)
}
