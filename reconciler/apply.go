package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/fjordhq/fjord/storage"
)

// Action is what a sync did to one object.
type Action string

// Actions, as in fluxcd/pkg/ssa.
const (
	// Created: the object did not exist.
	Created Action = "created"
	// Configured: the object existed (or was adopted) and changed.
	Configured Action = "configured"
	// Unchanged: nothing was sent, or the server changed nothing.
	Unchanged Action = "unchanged"
	// Deleted: pruned, or deleted with the app (--cascade).
	Deleted Action = "deleted"
	// Skipped: left alone; Change.Reason says why.
	Skipped Action = "skipped"
)

// Change is the Action taken on one object, with why when skipped.
type Change struct {
	Ref    ObjectRef
	Action Action
	Reason string
}

// ChangeSet is the result of a sync, sorted by object.
type ChangeSet []Change

// String lists one change per line: "Deployment/ns/web configured".
func (cs ChangeSet) String() string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%s %s", c.Ref, c.Action)
		if c.Reason != "" {
			fmt.Fprintf(&b, " (%s)", c.Reason)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Count returns how many changes have action a.
func (cs ChangeSet) Count(a Action) int {
	n := 0
	for _, c := range cs {
		if c.Action == a {
			n++
		}
	}
	return n
}

func (cs ChangeSet) sort() {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Ref.ID() < cs[j].Ref.ID() })
}

// applyConcurrency bounds requests in flight during one sync.
const applyConcurrency = 16

// syncTimeout bounds one sync, render to prune.
const syncTimeout = 5 * time.Minute

// crdWait bounds the wait for a new CRD to be Established.
const crdWait = 60 * time.Second

func renderKey(commit, path string) string { return commit + "\x00" + path }

// syncApp renders an app's revision and, when its policy (or opts) says
// so, applies it, prunes, and records the result. It returns the history
// record; the error is the sync's failure, already recorded on the status.
func (r *Reconciler) syncApp(ctx context.Context, st *appState, trigger string, opts SyncOptions) (storage.AppSync, error) {
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

	fail := func(err error) (storage.AppSync, error) {
		status.Sync, status.Error = "Error", err.Error()
		if status.Health == "" {
			status.Health = "Unknown"
		}
		rec.Error = err.Error()
		rec.Duration = time.Since(start)
		if parent.Err() != nil {
			// Shutting down: the sync was cut short, not failed; the
			// previous status stands and the next start syncs again.
			return rec, err
		}
		r.metrics.observeSync(rec)
		if serr := r.store.RecordAppSync(name, status, nil, rec); serr != nil {
			r.log.Error("record sync", "app", name, "err", serr)
		}
		return rec, err
	}

	repo, err := r.resolveRepo(app.Spec.Source.RepoURL)
	if err != nil {
		return fail(err)
	}
	st.mu.Lock()
	st.repo = repo
	st.mu.Unlock()
	status.Repo = repo
	refs, ok := r.store.Refs(repo)
	if !ok {
		return fail(fmt.Errorf("repo %q: %w", repo, storage.ErrNotFound))
	}
	commit, err := ResolveRevision(refs, app.Revision())
	if err != nil {
		return fail(fmt.Errorf("repo %q: %w", repo, err))
	}
	rec.Revision, status.Revision = commit, commit

	objs, err := r.render(st, repo, commit, app.Spec.Source.Path)
	if err != nil {
		return fail(err)
	}
	objs, err = r.prepare(app, objs)
	if err != nil {
		return fail(err)
	}
	prev, err := r.previousInventory(ctx, app)
	if err != nil {
		return fail(err)
	}

	if !app.Auto() && !opts.Manual {
		// Manual policy: report whether git and the last sync agree,
		// touch nothing.
		status.Sync = "Synced"
		for _, u := range objs {
			if e, ok := prev[RefOf(u)]; !ok || e.Hash != hashObject(u) {
				status.Sync = "OutOfSync"
				break
			}
		}
		if len(Diff(prev, inventoryOf(objs))) > 0 {
			status.Sync = "OutOfSync"
		}
		status.Error = ""
		rec.Duration = time.Since(start)
		status.Health, status.Objects = r.health(ctx, prev)
		return rec, r.store.SetAppStatus(name, status)
	}

	cs, next, applyErr := r.applyAll(ctx, st, app, objs, prev)

	// Prune only after a clean apply: a half-applied render is no basis
	// for deleting anything.
	var kept []Entry
	pruneOn := app.Prune() || opts.Prune
	stale := Diff(prev, next)
	if applyErr == nil && len(stale) > 0 {
		switch {
		case len(objs) == 0 && !app.AllowEmpty():
			kept = stale
			applyErr = fmt.Errorf("the render of %s at %.12s is empty; not pruning %d objects (set spec.syncPolicy.automated.allowEmpty: true if that is intended)", pathOrRoot(app.Spec.Source.Path), commit, len(stale))
		default:
			var pcs ChangeSet
			pcs, kept = r.prune(ctx, name, stale, pruneOn)
			cs = append(cs, pcs...)
		}
	} else {
		kept = stale
	}
	// Objects not pruned stay in the inventory: they are still this
	// app's, reported as orphans, and a later prune may delete them.
	status.Orphans = nil
	for _, e := range kept {
		next[e.Ref] = e
		status.Orphans = append(status.Orphans, e.Ref.String())
	}
	cs.sort()

	inv := next.toStorage(commit)
	if !sameInventory(prev, next) {
		if err := r.saveClusterInventory(ctx, app, inv); err != nil && applyErr == nil {
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
	status.Health, status.Objects = r.health(ctx, next)
	rec.Duration = time.Since(start)
	if applyErr != nil {
		status.Sync, status.Error = "Error", applyErr.Error()
		rec.Error = applyErr.Error()
	} else {
		status.Sync, status.Error = "Synced", ""
		if len(status.Orphans) > 0 {
			status.Sync = "OutOfSync"
		}
		// An object another app manages is not this app's to apply: the
		// app cannot be in sync until one of the two lets go of it.
		var conflicts []string
		for _, c := range cs {
			if c.Action == Skipped && strings.HasPrefix(c.Reason, "owned by app") {
				conflicts = append(conflicts, c.Ref.String()+" is "+c.Reason)
			}
		}
		if len(conflicts) > 0 {
			status.Sync, status.Error = "OutOfSync", strings.Join(conflicts, "; ")
		}
		status.SyncedCommit = commit
		status.LastSynced = time.Now().UTC()
	}
	if parent.Err() != nil && applyErr != nil {
		return rec, applyErr // cut short by shutdown; see fail
	}
	r.metrics.observeSync(rec)
	if err := r.store.RecordAppSync(name, status, &inv, rec); err != nil {
		return rec, fmt.Errorf("record sync of app %q: %w", name, err)
	}
	if len(rec.Changes) > 0 || applyErr != nil {
		r.log.Info("app synced", "app", name, "trigger", trigger, "commit", short(commit), "changed", len(rec.Changes), "unchanged", rec.Unchanged, "took", rec.Duration.Round(time.Millisecond), "err", applyErr)
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
func (r *Reconciler) render(st *appState, repo, commit, path string) ([]*unstructured.Unstructured, error) {
	key := renderKey(commit, path)
	st.mu.Lock()
	if st.renderKey == key {
		objs := st.renderObjs
		st.mu.Unlock()
		return objs, nil
	}
	st.mu.Unlock()
	objs, err := Render(r.store.RepoPath(repo), commit, path)
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	st.renderKey, st.renderObjs = key, objs
	st.mu.Unlock()
	return objs, nil
}

// previousInventory is the inventory in bbolt or, when the data dir lost
// it, the copy in the cluster.
func (r *Reconciler) previousInventory(ctx context.Context, a *Application) (Inventory, error) {
	app := a.Metadata.Name
	s, ok, err := r.store.AppInventory(app)
	if err != nil {
		return nil, err
	}
	if !ok {
		if s, ok, err = r.loadClusterInventory(ctx, a); err != nil {
			return nil, err
		}
		if ok {
			r.log.Info("inventory restored from the cluster", "app", app, "objects", len(s.Entries))
		}
	}
	return inventoryFrom(s)
}

// prepare copies the rendered objects and gives them what fjord adds: the
// destination namespace where none is set, and the tracking marks.
func (r *Reconciler) prepare(app *Application, rendered []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	name := app.Metadata.Name
	// Kinds defined by CRDs in this very render are not served yet; their
	// scope comes from the CRD.
	crdScope := map[schema.GroupKind]string{}
	for _, u := range rendered {
		if u.GetKind() == "CustomResourceDefinition" && u.GroupVersionKind().Group == "apiextensions.k8s.io" {
			g, _, _ := unstructured.NestedString(u.Object, "spec", "group")
			k, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
			sc, _, _ := unstructured.NestedString(u.Object, "spec", "scope")
			crdScope[schema.GroupKind{Group: g, Kind: k}] = sc
		}
	}
	seen := map[ObjectRef]bool{}
	out := make([]*unstructured.Unstructured, 0, len(rendered))
	for _, in := range rendered {
		u := in.DeepCopy()
		namespaced := false
		if sc, ok := crdScope[u.GroupVersionKind().GroupKind()]; ok {
			namespaced = sc == "Namespaced"
		} else {
			m, err := r.mapping(u.GroupVersionKind())
			if err != nil {
				return nil, err
			}
			namespaced = m.Scope.Name() == meta.RESTScopeNameNamespace
		}
		if namespaced {
			if u.GetNamespace() == "" {
				if app.Spec.Destination.Namespace == "" {
					return nil, fmt.Errorf("%s has no namespace and the app has no spec.destination.namespace: set one of them", RefOf(u))
				}
				u.SetNamespace(app.Spec.Destination.Namespace)
			}
		} else {
			u.SetNamespace("")
		}
		ref := RefOf(u)
		if seen[ref] {
			return nil, fmt.Errorf("%s is rendered twice: remove one copy from git", ref)
		}
		seen[ref] = true
		labels := u.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelApp] = name
		u.SetLabels(labels)
		ann := u.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[AnnotationTracking] = trackingID(name, ref)
		u.SetAnnotations(ann)
		out = append(out, u)
	}
	return out, nil
}

// trackingID is the value of the tracking annotation: app and identity.
func trackingID(app string, ref ObjectRef) string {
	return app + ":" + ref.Group + "/" + ref.Kind + ":" + ref.Namespace + "/" + ref.Name
}

// ownedBy reports which app's tracking mark live carries; "" if none.
func ownedBy(live *unstructured.Unstructured) string {
	return live.GetLabels()[LabelApp]
}

// mapping finds the REST mapping of a kind, refreshing discovery once
// when the kind is unknown (a CRD that just appeared).
func (r *Reconciler) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := r.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		r.mapper.Reset()
		m, err = r.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("the cluster does not serve %s: install its CRD (in this app, or before it)", gvk)
		}
		return nil, fmt.Errorf("map %s: %w", gvk, err)
	}
	return m, nil
}

func (r *Reconciler) resource(m *meta.RESTMapping, ns string) dynamic.ResourceInterface {
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return r.dyn.Resource(m.Resource).Namespace(ns)
	}
	return r.dyn.Resource(m.Resource)
}

// isStage1 is true for what other objects need to exist first.
func isStage1(u *unstructured.Unstructured) bool {
	gk := u.GroupVersionKind().GroupKind()
	return (gk.Group == "" && gk.Kind == "Namespace") ||
		(gk.Group == "apiextensions.k8s.io" && gk.Kind == "CustomResourceDefinition")
}

// applyAll applies objs in two stages (namespaces and CRDs, then the
// rest), sending only objects whose rendered form changed since the last
// sync or whose live form drifted. It returns the changes and the new
// inventory of what is applied.
func (r *Reconciler) applyAll(ctx context.Context, st *appState, app *Application, objs []*unstructured.Unstructured, prev Inventory) (ChangeSet, Inventory, error) {
	name := app.Metadata.Name
	next := Inventory{}
	var (
		mu   sync.Mutex
		cs   ChangeSet
		errs []error
	)
	// The desired state is published before anything is sent, so the
	// watch events of fjord's own writes compare equal and are not drift.
	desired := make(map[ObjectRef]*unstructured.Unstructured, len(objs))
	for _, u := range objs {
		desired[RefOf(u)] = u
	}
	st.mu.Lock()
	st.desired = desired
	for ref := range st.reported {
		delete(st.reported, ref)
	}
	st.mu.Unlock()

	if app.CreateNamespace() {
		if err := r.ensureNamespace(ctx, app.Spec.Destination.Namespace, desired); err != nil {
			return nil, prev, err
		}
	}

	var stage1, stage2 []*unstructured.Unstructured
	for _, u := range objs {
		if isStage1(u) {
			stage1 = append(stage1, u)
		} else {
			stage2 = append(stage2, u)
		}
	}
	run := func(list []*unstructured.Unstructured) {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(applyConcurrency)
		for _, u := range list {
			g.Go(func() error {
				ref := RefOf(u)
				e := Entry{Ref: ref, Version: u.GroupVersionKind().Version, Hash: hashObject(u)}
				c, err := r.applyIfChanged(gctx, name, u, prev[ref])
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("apply %s: %w", ref, err))
					if old, ok := prev[ref]; ok {
						next[ref] = old
					} else {
						e.Hash = ""
						next[ref] = e
					}
					return nil
				}
				cs = append(cs, c)
				if c.Action != Skipped {
					next[ref] = e
				}
				return nil
			})
		}
		_ = g.Wait()
	}
	run(stage1)
	var crds []*unstructured.Unstructured
	for _, u := range stage1 {
		if u.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, u)
		}
	}
	if len(crds) > 0 && len(errs) == 0 {
		if err := r.waitEstablished(ctx, crds); err != nil {
			errs = append(errs, err)
		}
		r.mapper.Reset()
	}
	if len(errs) == 0 {
		run(stage2)
	} else {
		for _, u := range stage2 {
			if e, ok := prev[RefOf(u)]; ok {
				next[e.Ref] = e
			}
		}
	}
	return cs, next, errors.Join(errs...)
}

// applyIfChanged sends u by server-side apply unless the last sync sent
// the same object and the live object (from the watch cache) still holds
// it. Objects of another app are skipped.
func (r *Reconciler) applyIfChanged(ctx context.Context, app string, u *unstructured.Unstructured, last Entry) (Change, error) {
	ref := RefOf(u)
	m, err := r.mapping(u.GroupVersionKind())
	if err != nil {
		return Change{}, err
	}
	live, watched, err := r.watch.get(ctx, m.Resource, u.GetNamespace(), u.GetName())
	if err != nil {
		return Change{}, err
	}
	if live != nil {
		if owner := ownedBy(live); owner != "" && owner != app {
			return Change{Ref: ref, Action: Skipped, Reason: fmt.Sprintf("owned by app %q; remove it from one of the two apps", owner)}, nil
		}
		if last.Hash != "" && last.Hash == hashObject(u) {
			if d := r.drifted(u, live); len(d) == 0 {
				return Change{Ref: ref, Action: Unchanged}, nil
			}
		}
	}
	before := ""
	if live != nil {
		before = live.GetResourceVersion()
	} else if !watched {
		// Not watchable (no list/watch rights): ask directly.
		got, err := r.resource(m, u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{})
		if err == nil {
			if owner := ownedBy(got); owner != "" && owner != app {
				return Change{Ref: ref, Action: Skipped, Reason: fmt.Sprintf("owned by app %q", owner)}, nil
			}
			before = got.GetResourceVersion()
		}
	}
	out, err := r.resource(m, u.GetNamespace()).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: r.fieldManager, Force: true})
	if err != nil {
		return Change{}, err
	}
	switch {
	case before == "" && adoptedFrom(out, r.fieldManager) == "":
		return Change{Ref: ref, Action: Created}, nil
	case before == out.GetResourceVersion():
		return Change{Ref: ref, Action: Unchanged}, nil
	default:
		return Change{Ref: ref, Action: Configured}, nil
	}
}

// adoptedFrom names another manager of an object fjord just applied for
// the first time: when there is one, the object existed before (adopted,
// not created).
func adoptedFrom(u *unstructured.Unstructured, self string) string {
	for _, f := range u.GetManagedFields() {
		if f.Manager != self {
			return f.Manager
		}
	}
	return ""
}

// ensureNamespace creates the destination namespace (CreateNamespace=true)
// unless it exists or git declares it.
func (r *Reconciler) ensureNamespace(ctx context.Context, ns string, desired map[ObjectRef]*unstructured.Unstructured) error {
	if _, ok := desired[ObjectRef{Kind: "Namespace", Name: ns}]; ok {
		return nil
	}
	res := r.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"})
	if _, err := res.Get(ctx, ns, metav1.GetOptions{}); err == nil {
		return nil
	} else if apierrors.IsForbidden(err) {
		// Namespaced RBAC: fjord may not read namespaces, so the
		// namespace is the operator's to create; applies into it will
		// say so if it is missing.
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read namespace %s: %w", ns, err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if _, err := res.Apply(ctx, ns, obj, metav1.ApplyOptions{FieldManager: r.fieldManager, Force: true}); err != nil {
		return fmt.Errorf("create namespace %s (CreateNamespace=true): %w", ns, err)
	}
	return nil
}

// waitEstablished waits until every CRD reports Established, so the kinds
// it defines can be mapped and applied.
func (r *Reconciler) waitEstablished(ctx context.Context, crds []*unstructured.Unstructured) error {
	res := r.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	ctx, cancel := context.WithTimeout(ctx, crdWait)
	defer cancel()
	for _, crd := range crds {
		for {
			u, err := res.Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err == nil && conditionTrue(u, "Established") {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s is not Established after %s: check `kubectl describe crd %s`", crd.GetName(), crdWait, crd.GetName())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func conditionTrue(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}
