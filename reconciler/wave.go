package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fjordhq/fjord/storage"
)

// DefaultWaveTimeout bounds the wait for one wave to become healthy and
// for one hook to finish.
const DefaultWaveTimeout = 3 * time.Minute

// outcome is what executing a plan did.
type outcome struct {
	cs ChangeSet
	// next is the inventory after the sync: what was applied, plus what
	// a failure left from the previous inventory, plus kept orphans.
	next Inventory
	// kept are stale objects not pruned, reported as orphans; quiet
	// among them are those marked IgnoreExtraneous (not OutOfSync).
	kept  []Entry
	quiet map[ObjectRef]bool
	// drifts are the changes made outside git that the sync found:
	// reverted, or reported when it may not revert them.
	drifts []storage.DriftEvent
	err    error
}

// execute runs a plan: the server-side dry run of everything that would
// change, the Namespaces and CRDs, then each phase's waves in order —
// resources applied, hooks created, and, unless it is the last step, all
// of the wave healthy (hooks finished) before the next — then prune
// (after the Sync phase, or after everything with PruneLast). A failure
// stops the sync where it is and runs the SyncFail hooks.
//
// heal sends back objects changed outside git; without it (selfHeal off
// and git did not move) they are reported in outcome.drifts.
func (r *Reconciler) execute(ctx context.Context, st *appState, p *plan, opts SyncOptions, heal bool) outcome {
	app, c := p.app, p.cluster
	name := app.Metadata.Name
	out := outcome{next: Inventory{}, quiet: map[ObjectRef]bool{}}
	done := map[ObjectRef]bool{} // resources whose result is in out.next
	var hookRuns []*hookRun

	// The desired state is published before anything is sent, so the
	// watch events of fjord's own writes compare equal and are not drift.
	desired := make(map[ObjectRef]*unstructured.Unstructured, len(p.objs))
	for _, u := range p.objs {
		desired[RefOf(u)] = u
	}
	st.mu.Lock()
	st.desired = desired
	clear(st.reported)
	st.mu.Unlock()

	pruned := false // prune ran: out.kept is its verdict
	finish := func(err error) outcome {
		// What was not reached keeps its previous entry: it is still
		// this app's, as it was.
		for _, u := range p.objs {
			ref := RefOf(u)
			if done[ref] {
				continue
			}
			if e, ok := p.prev[ref]; ok {
				out.next[ref] = e
			}
		}
		if err == nil {
			r.cleanupHooks(ctx, c, hookRuns, true, &out.cs)
		} else {
			if !pruned {
				// Not pruned: what git dropped stays this app's.
				out.kept = Diff(p.prev, out.next)
			}
			r.cleanupHooks(ctx, c, hookRuns, false, &out.cs)
			if len(p.syncFail) > 0 && ctx.Err() == nil {
				r.progress(name, PhaseSyncFail, 0)
				for _, s := range p.syncFail {
					runs, ferr := r.runHooks(ctx, c, name, s, &out.cs)
					r.cleanupHooks(ctx, c, runs, ferr == nil, &out.cs)
					if ferr != nil {
						err = errors.Join(err, fmt.Errorf("SyncFail hook: %w", ferr))
						break
					}
				}
			}
		}
		out.err = err
		return out
	}

	targets, err := r.classify(ctx, c, app, p.objs, p.prev, heal)
	if err != nil {
		return finish(err)
	}
	if app.CreateNamespace() && needsNamespace(p, targets) {
		if err := r.ensureNamespace(ctx, c, app.Spec.Destination.Namespace, app.Spec.SyncPolicy.ManagedNamespaceMetadata, desired); err != nil {
			return finish(err)
		}
	}
	for _, t := range targets {
		if d := t.drift; d != nil && !t.send {
			out.drifts = append(out.drifts, *d)
			// Reported once: the watch's next event of it is not news.
			st.mu.Lock()
			st.reported[t.ref] = fmt.Sprint(d.Deleted, d.Fields, d.Manager)
			st.mu.Unlock()
		}
	}
	// A bad commit leaves the last good state: nothing is applied when
	// the API server refuses any object.
	if err := r.dryRun(ctx, c, app, targets, p); err != nil {
		return finish(err)
	}

	apply := func(list []*target) error {
		var (
			mu   sync.Mutex
			errs []error
		)
		each(ctx, applyConcurrency, list, func(ctx context.Context, t *target) {
			ch, err := r.applyTarget(ctx, c, app, t)
			mu.Lock()
			defer mu.Unlock()
			done[t.ref] = true
			e := Entry{Ref: t.ref, Version: t.u.GroupVersionKind().Version, Hash: hashObject(t.u)}
			if err != nil {
				errs = append(errs, fmt.Errorf("apply %s: %w", t.ref, err))
				if old, ok := p.prev[t.ref]; ok {
					out.next[t.ref] = old
				} else {
					e.Hash = ""
					out.next[t.ref] = e
				}
				return
			}
			out.cs = append(out.cs, ch)
			if ch.Action != Skipped {
				out.next[t.ref] = e
			}
			if t.drift != nil && t.send && ch.Action != Unchanged {
				out.drifts = append(out.drifts, *t.drift)
			}
		})
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return errors.Join(errs...)
	}

	// Namespaces and CRDs first; the kinds of new CRDs are classified
	// once they are served.
	var first []*target
	for _, u := range p.first {
		first = append(first, targets[RefOf(u)])
	}
	if err := apply(first); err != nil {
		return finish(err)
	}
	var crds []*unstructured.Unstructured
	for _, u := range p.first {
		if u.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, u)
		}
	}
	if len(crds) > 0 {
		if err := r.waitEstablished(ctx, c, crds); err != nil {
			return finish(err)
		}
		c.mapper.Reset()
	}

	prune := func() error {
		pruned = true
		if len(p.objs)+len(p.children) > 0 || app.AllowEmpty() {
			// An empty render drops no child app either (allowEmpty).
			out.cs = append(out.cs, r.pruneChildren(ctx, name, p.children, app.Prune() || opts.Prune)...)
		}
		stale := Diff(p.prev, inventoryOf(p.objs))
		if len(stale) == 0 {
			return nil
		}
		if len(p.objs) == 0 && !app.AllowEmpty() {
			out.kept = append(out.kept, stale...)
			return fmt.Errorf("the render of %s at %.12s is empty; not pruning %d objects (set spec.syncPolicy.automated.allowEmpty: true if that is intended)", pathOrRoot(app.Spec.Source.Path), p.commit, len(stale))
		}
		res := r.prune(ctx, c, name, stale, pruneOpts{enabled: app.Prune() || opts.Prune, propagation: prunePropagation(app)})
		out.cs = append(out.cs, res.cs...)
		out.kept = append(out.kept, res.kept...)
		for ref := range res.quiet {
			out.quiet[ref] = true
		}
		return nil
	}
	pruneLast := app.PruneLast()

	for i, s := range p.steps {
		if s.phase == PhasePostSync && !pruned && !pruneLast {
			if err := prune(); err != nil {
				return finish(err)
			}
		}
		if len(p.steps) > 1 || len(s.hooks) > 0 {
			// Only a sync that waits has a place worth showing; a
			// plain one-wave sync spares the write.
			r.progress(name, s.phase, s.wave)
		}
		var list []*target
		for _, u := range s.objs {
			t := targets[RefOf(u)]
			if t.m == nil {
				// A kind of a CRD applied above: map it now.
				if err := r.classifyOne(ctx, c, app, t, p.prev[t.ref], heal); err != nil {
					return finish(fmt.Errorf("apply %s: %w", t.ref, err))
				}
			}
			list = append(list, t)
		}
		if err := apply(list); err != nil {
			return finish(err)
		}
		if p.noHooks {
			s.hooks = nil
		}
		runs, err := r.runHooks(ctx, c, name, s, &out.cs)
		hookRuns = append(hookRuns, runs...)
		if err != nil {
			return finish(fmt.Errorf("%s wave %d: %w", s.phase, s.wave, err))
		}
		if ch := p.children[s.wave]; s.phase == PhaseSync && len(ch) > 0 {
			ccs, err := r.syncChildren(ctx, st, s.wave, ch, i < len(p.steps)-1)
			out.cs = append(out.cs, ccs...)
			if err != nil {
				return finish(fmt.Errorf("wave %d: %w", s.wave, err))
			}
		}
		// Argo CD's rule: the last wave's resources are not waited for (a
		// sync without waves is an asynchronous apply); every earlier
		// wave is healthy before the next starts.
		if i < len(p.steps)-1 && len(list) > 0 {
			if err := r.waitHealthy(ctx, c, name, s, list); err != nil {
				return finish(err)
			}
		}
	}
	if !pruned {
		if err := prune(); err != nil {
			return finish(err)
		}
	}
	return finish(nil)
}

// needsNamespace reports whether a sync must make sure of the namespace
// CreateNamespace=true creates: when it sends an object or runs a hook,
// or sets the namespace's metadata. A resync whose objects are all live
// and unchanged (so their namespace exists) sends nothing, not even a
// GET of the namespace.
func needsNamespace(p *plan, targets map[ObjectRef]*target) bool {
	if p.app.Spec.SyncPolicy.ManagedNamespaceMetadata != nil || len(targets) == 0 {
		return true
	}
	for _, t := range targets {
		if t.send {
			return true
		}
	}
	for _, s := range append(append([]step{}, p.steps...), p.syncFail...) {
		if len(s.hooks) > 0 {
			return true
		}
	}
	return false
}

// progress records the phase and wave a running sync is in, for `fjord
// app get`.
func (r *Reconciler) progress(app string, ph Phase, wave int) {
	_ = r.store.UpdateAppStatus(app, func(s *storage.AppStatus) {
		s.Progress = &storage.SyncProgress{Phase: string(ph), Wave: wave, Since: time.Now().UTC()}
	})
}

// waitHealthy waits until every resource of a wave is Current (kstatus),
// woken by the watch events of the app's objects: one wait for the whole
// wave. A Failed object fails at once; at the timeout the error names
// the objects that held the wave.
func (r *Reconciler) waitHealthy(ctx context.Context, c *cluster, app string, s step, list []*target) error {
	pending := make([]*target, 0, len(list))
	for _, t := range list {
		if t.skipped {
			continue
		}
		pending = append(pending, t)
	}
	return r.waitUntil(ctx, c, app, func() (bool, string, error) {
		var holders []string
		rest := pending[:0]
		for _, t := range pending {
			st, msg := r.objectStatus(ctx, c, t)
			switch st {
			case status.CurrentStatus:
				continue
			case status.FailedStatus:
				return false, "", fmt.Errorf("%s wave %d: %s is Failed: %s", s.phase, s.wave, t.ref, msg)
			}
			rest = append(rest, t)
			holders = append(holders, fmt.Sprintf("%s is %s (%s)", t.ref, st, msg))
		}
		pending = rest
		if len(pending) == 0 {
			return true, "", nil
		}
		return false, fmt.Sprintf("%s wave %d is not healthy after %s: %s", s.phase, s.wave, r.waveTimeout, strings.Join(firstN(holders, 5), "; ")), nil
	})
}

// waitUntil calls check on every watch event of the app's objects until
// it is done, fails, or r.waveTimeout passes (the error is then the
// message check gave last). Objects fjord may not watch are read on a
// slow tick instead.
func (r *Reconciler) waitUntil(ctx context.Context, c *cluster, app string, check func() (bool, string, error)) error {
	timeout := time.NewTimer(r.waveTimeout)
	defer timeout.Stop()
	// The tick only matters where there is no watch (RBAC): there, GETs.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := c.watcher().changed(app)
		ok, why, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-timeout.C:
			return errors.New(why)
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", why, ctx.Err())
		}
	}
}

// objectStatus is the kstatus of a resource as fjord last sent it: from
// the apply response when that already says Current, else from the watch
// cache once the cache holds that write (same UID, same generation).
func (r *Reconciler) objectStatus(ctx context.Context, c *cluster, t *target) (status.Status, string) {
	if t.applied != nil {
		if res, err := status.Compute(t.applied); err == nil && res.Status == status.CurrentStatus {
			return res.Status, res.Message
		}
	}
	live, watched := c.watcher().cached(t.m.Resource, t.ref.Namespace, t.ref.Name)
	if !watched {
		got, err := c.resource(t.m, t.ref.Namespace).Get(ctx, t.ref.Name, metav1.GetOptions{})
		if err != nil {
			return status.UnknownStatus, err.Error()
		}
		live = got
	}
	if live == nil {
		return status.NotFoundStatus, "not in the cluster yet"
	}
	if a := t.applied; a != nil && (live.GetUID() != a.GetUID() || live.GetGeneration() < a.GetGeneration()) {
		return status.UnknownStatus, "waiting for the watch to see fjord's write"
	}
	res, err := status.Compute(live)
	if err != nil {
		return status.UnknownStatus, err.Error()
	}
	return res.Status, res.Message
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}
