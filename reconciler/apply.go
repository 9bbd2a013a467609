package reconciler

import (
	"context"
	"encoding/json"
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
	"k8s.io/apimachinery/pkg/types"
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
	// Owner is the other app that manages the object, when that is why
	// it was skipped: a conflict the app cannot be in sync with.
	Owner string
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

// applyConcurrency bounds requests in flight during one sync. Writes wait
// on etcd more than on CPU: 32 beat 16 on 500 creates (1.40 s, not 1.63).
const applyConcurrency = 32

// syncTimeout bounds one sync, render to prune.
const syncTimeout = 5 * time.Minute

// crdWait bounds the wait for a new CRD to be Established.
const crdWait = 60 * time.Second

// prepare copies the rendered objects and gives them what fjord adds: the
// destination namespace where none is set, and the tracking marks.
func (r *Reconciler) prepare(c *cluster, app *Application, rendered []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	name := app.Metadata.Name
	// Kinds defined by CRDs in this very render are not served yet; their
	// scope comes from the CRD.
	crdScope := map[schema.GroupKind]string{}
	for _, u := range rendered {
		if gk, sc, ok := crdDefines(u); ok {
			crdScope[gk] = sc
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
			m, err := c.mapping(u.GroupVersionKind())
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
		if ref.Name == "" && u.GetGenerateName() == "" {
			return nil, fmt.Errorf("%s has neither metadata.name nor metadata.generateName: name it in git", ref)
		}
		if ref.Name != "" && seen[ref] {
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
func (c *cluster) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, c.missingKind(gvk, err)
		}
		return nil, fmt.Errorf("map %s: %w", gvk, err)
	}
	return m, nil
}

func (c *cluster) resource(m *meta.RESTMapping, ns string) dynamic.ResourceInterface {
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource).Namespace(ns)
	}
	return c.dyn.Resource(m.Resource)
}

// isStage1 is true for what other objects need to exist first.
func isStage1(u *unstructured.Unstructured) bool {
	gk := u.GroupVersionKind().GroupKind()
	return (gk.Group == "" && gk.Kind == "Namespace") ||
		(gk.Group == "apiextensions.k8s.io" && gk.Kind == "CustomResourceDefinition")
}

// Per-object sync options (argocd.argoproj.io/sync-options) fjord acts on.
const (
	optPruneFalse        = "Prune=false"
	optDeleteFalse       = "Delete=false"
	optReplace           = "Replace=true"
	optForce             = "Force=true"
	optSkipDryRunMissing = "SkipDryRunOnMissingResource=true"
)

// target is one resource of a sync: what git wants, what the cluster
// holds, and whether it must be sent.
type target struct {
	u   *unstructured.Unstructured // as rendered and prepared
	ref ObjectRef
	// m is nil until the kind is served (a CRD of the same render).
	m *meta.RESTMapping
	// live is the object in the cluster before the sync, nil if absent
	// or unknown.
	live *unstructured.Unstructured
	// send is false when the object needs nothing (change says what).
	send    bool
	skipped bool
	change  Change
	// applied is the API server's answer to fjord's write.
	applied *unstructured.Unstructured
	// drift is set when git did not change the object since the last
	// sync but the cluster did: a change made outside git, recorded when
	// the sync reverts it (or reported when it may not).
	drift *storage.DriftEvent
}

// classify looks every resource up (the watch cache first) and decides
// whether it must be sent: only objects whose rendered form changed since
// the last sync, or whose live form drifted, are. Kinds not served yet
// are left for after the CRDs (when this render defines them, or the
// object says SkipDryRunOnMissingResource=true).
func (r *Reconciler) classify(ctx context.Context, c *cluster, app *Application, objs []*unstructured.Unstructured, prev Inventory, heal bool) (map[ObjectRef]*target, error) {
	crdKinds := map[schema.GroupKind]bool{}
	for _, u := range objs {
		if gk, _, ok := crdDefines(u); ok {
			crdKinds[gk] = true
		}
	}
	out := make(map[ObjectRef]*target, len(objs))
	list := make([]*target, 0, len(objs))
	for _, u := range objs {
		t := &target{u: u, ref: RefOf(u)}
		out[t.ref] = t
		list = append(list, t)
	}
	var (
		mu   sync.Mutex
		errs []error
	)
	each(ctx, applyConcurrency, list, func(ctx context.Context, t *target) {
		err := r.classifyOne(ctx, c, app, t, prev[t.ref], heal)
		if meta.IsNoMatchError(err) && (crdKinds[t.ref.GroupKind()] || syncOptionOn(app, t.u, optSkipDryRunMissing)) {
			// Served once the CRDs are applied, or checked then.
			t.send = true
			return
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", t.ref, err))
			mu.Unlock()
		}
	})
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return out, errors.Join(errs...)
}

// each runs fn on every item, at most limit at once, and returns when
// all are done.
func each[T any](ctx context.Context, limit int, items []T, fn func(context.Context, T)) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for _, it := range items {
		g.Go(func() error {
			fn(gctx, it)
			return nil
		})
	}
	_ = g.Wait()
}

// crdDefines returns the kind a CustomResourceDefinition defines and its
// scope; ok is false for any other object.
func crdDefines(u *unstructured.Unstructured) (gk schema.GroupKind, scope string, ok bool) {
	if u.GetKind() != "CustomResourceDefinition" || u.GroupVersionKind().Group != "apiextensions.k8s.io" {
		return gk, "", false
	}
	g, _, _ := unstructured.NestedString(u.Object, "spec", "group")
	k, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
	scope, _, _ = unstructured.NestedString(u.Object, "spec", "scope")
	return schema.GroupKind{Group: g, Kind: k}, scope, true
}

// classifyOne fills t from the cluster; t.m stays nil when the kind is
// not served. Without heal, drift is reported, not sent back (selfHeal
// off, and git did not move).
func (r *Reconciler) classifyOne(ctx context.Context, c *cluster, app *Application, t *target, last Entry, heal bool) error {
	m, err := c.mapping(t.u.GroupVersionKind())
	if err != nil {
		return err
	}
	live, watched, err := c.watcher().get(ctx, m.Resource, t.ref.Namespace, t.ref.Name)
	if err != nil {
		return err
	}
	if !watched {
		// Not watchable (no list/watch rights): ask directly.
		got, err := c.resource(m, t.ref.Namespace).Get(ctx, t.ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("read: %w", err)
		default:
			live = got
		}
	}
	t.m, t.live = m, live
	name := app.Metadata.Name
	if live != nil {
		if owner := ownedBy(live); owner != "" && owner != name {
			if app.SyncOption("FailOnSharedResource") {
				return fmt.Errorf("managed by app %q, and FailOnSharedResource=true: remove it from one of the two apps", owner)
			}
			t.skipped = true
			t.change = Change{Ref: t.ref, Action: Skipped, Owner: owner, Reason: fmt.Sprintf("owned by app %q; remove it from one of the two apps", owner)}
			return nil
		}
		if ownedBy(live) == "" && app.SyncOption("FailOnSharedResource") {
			if other := adoptedFrom(live, r.fieldManager); other != "" {
				return fmt.Errorf("exists and is managed by %q, not by this app, and FailOnSharedResource=true: delete it or drop the option to adopt it", other)
			}
		}
	}
	if last.Hash != "" && last.Hash == hashObject(t.u) {
		ev := &storage.DriftEvent{Time: time.Now().UTC(), Object: t.ref.String(), Action: storage.DriftReverted}
		if live == nil {
			ev.Deleted, ev.Action = true, storage.DriftRecreated
		} else {
			paths := r.drifted(app, t.u, live)
			if len(paths) == 0 {
				t.change = Change{Ref: t.ref, Action: Unchanged}
				return nil
			}
			for _, p := range paths {
				ev.Fields = append(ev.Fields, p.String())
			}
			ev.Manager = changedBy(live, paths, r.fieldManager)
		}
		t.drift = ev
		if !heal {
			ev.Action = storage.DriftReported
			t.change = Change{Ref: t.ref, Action: Unchanged}
			return nil
		}
	}
	t.send = true
	return nil
}

// applyTarget sends t when it must be, by server-side apply, or by
// replace (Replace=true), or by delete and create (Replace=true with
// Force=true); Force=true alone recreates an object whose apply the
// server refused as invalid (an immutable field changed).
func (r *Reconciler) applyTarget(ctx context.Context, c *cluster, app *Application, t *target) (Change, error) {
	if !t.send {
		return t.change, nil
	}
	if t.m == nil {
		m, err := c.mapping(t.u.GroupVersionKind())
		if err != nil {
			return Change{}, err
		}
		t.m = m
	}
	res := c.resource(t.m, t.ref.Namespace)
	before := ""
	if t.live != nil {
		before = t.live.GetResourceVersion()
	}
	replace, force := syncOptionOn(app, t.u, optReplace), hasOption(t.u, AnnotationSyncOptions, optForce)
	var (
		out *unstructured.Unstructured
		err error
	)
	switch {
	case replace && force && t.live != nil:
		if err = r.deleteAndWait(ctx, c, app.Metadata.Name, t); err == nil {
			before = ""
			out, err = res.Create(ctx, t.u, metav1.CreateOptions{FieldManager: r.fieldManager, FieldValidation: fieldValidation(app)})
			if apierrors.IsAlreadyExists(err) {
				// The self-heal watch saw the deletion and recreated the
				// object from the previous commit before this create ran:
				// write this commit's version over it.
				if t.live, err = res.Get(ctx, t.ref.Name, metav1.GetOptions{}); err == nil {
					out, err = r.replace(ctx, c, app, t)
				}
			}
		}
	case replace && t.live != nil:
		out, err = r.replace(ctx, c, app, t)
	case replace:
		out, err = res.Create(ctx, t.u, metav1.CreateOptions{FieldManager: r.fieldManager, FieldValidation: fieldValidation(app)})
	default:
		out, err = r.ssa(ctx, app, res, r.body(app, t), false)
		if err != nil && force && t.live != nil && apierrors.IsInvalid(err) {
			if err = r.deleteAndWait(ctx, c, app.Metadata.Name, t); err == nil {
				before = ""
				out, err = r.ssa(ctx, app, res, t.u, false)
			}
		}
	}
	if err != nil {
		return Change{}, err
	}
	t.applied = out
	switch {
	case before == "" && adoptedFrom(out, r.fieldManager) == "":
		return Change{Ref: t.ref, Action: Created}, nil
	case before == out.GetResourceVersion():
		return Change{Ref: t.ref, Action: Unchanged}, nil
	default:
		return Change{Ref: t.ref, Action: Configured}, nil
	}
}

// ssa server-side applies u as fjord's field manager, taking fields from
// other managers (git wins); dryRun only asks the server.
func (r *Reconciler) ssa(ctx context.Context, app *Application, res dynamic.ResourceInterface, u *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(u.Object)
	if err != nil {
		return nil, err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: r.fieldManager, Force: &force, FieldValidation: fieldValidation(app)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return res.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
}

// fieldValidation is the server's check of unknown fields: Argo CD's
// Validate=false turns it off; otherwise the server warns.
func fieldValidation(app *Application) string {
	if !app.Validate() {
		return metav1.FieldValidationIgnore
	}
	return metav1.FieldValidationWarn
}

// replace writes t.u over the live object (PUT), retrying once on a
// write that raced with another.
func (r *Reconciler) replace(ctx context.Context, c *cluster, app *Application, t *target) (*unstructured.Unstructured, error) {
	res := c.resource(t.m, t.ref.Namespace)
	live := t.live
	for attempt := 0; ; attempt++ {
		u := t.u.DeepCopy()
		u.SetResourceVersion(live.GetResourceVersion())
		out, err := res.Update(ctx, u, metav1.UpdateOptions{FieldManager: r.fieldManager, FieldValidation: fieldValidation(app)})
		if !apierrors.IsConflict(err) || attempt > 0 {
			return out, err
		}
		if live, err = res.Get(ctx, t.ref.Name, metav1.GetOptions{}); err != nil {
			return nil, err
		}
	}
}

// deleteAndWait deletes the live object of t (that very object: by UID)
// and waits until it is gone, so that it can be created anew.
func (r *Reconciler) deleteAndWait(ctx context.Context, c *cluster, app string, t *target) error {
	res := c.resource(t.m, t.ref.Namespace)
	uid := t.live.GetUID()
	// Background: the object goes at once (its dependents after), so the
	// name is free; foreground would hold it until they are gone.
	policy := metav1.DeletePropagationBackground
	err := res.Delete(ctx, t.ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete to recreate (Force=true): %w", err)
	}
	return r.waitUntil(ctx, c, app, func() (bool, string, error) {
		got, err := res.Get(ctx, t.ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && got.GetUID() != uid) {
			return true, "", nil
		}
		return false, fmt.Sprintf("%s is still not deleted after %s (a finalizer?), so it cannot be recreated", t.ref, r.waveTimeout), err
	})
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
// unless git declares it, with the labels and annotations of
// managedNamespaceMetadata; without those, an existing namespace is left
// as it is.
func (r *Reconciler) ensureNamespace(ctx context.Context, c *cluster, ns string, meta *ManagedNamespaceMetadata, desired map[ObjectRef]*unstructured.Unstructured) error {
	if _, ok := desired[ObjectRef{Kind: "Namespace", Name: ns}]; ok {
		return nil
	}
	res := c.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"})
	obj := managedNamespace(ns, meta)
	if meta != nil {
		// fjord's field manager owns these labels and annotations: a
		// server-side apply creates the namespace or sets them on it.
	} else if _, err := res.Get(ctx, ns, metav1.GetOptions{}); err == nil {
		return nil
	} else if apierrors.IsForbidden(err) {
		// Namespaced RBAC: fjord may not read namespaces, so the
		// namespace is the operator's to create; applies into it will
		// say so if it is missing.
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read namespace %s: %w", ns, err)
	}
	if _, err := res.Apply(ctx, ns, obj, metav1.ApplyOptions{FieldManager: r.fieldManager, Force: true}); err != nil {
		return fmt.Errorf("create namespace %s (CreateNamespace=true): %w", ns, err)
	}
	return nil
}

// waitEstablished waits until every CRD reports Established, so the kinds
// it defines can be mapped and applied.
func (r *Reconciler) waitEstablished(ctx context.Context, c *cluster, crds []*unstructured.Unstructured) error {
	res := c.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
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

func conditionTrue(u *unstructured.Unstructured, typ string) bool { return condition(u, typ) != nil }
