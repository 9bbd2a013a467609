package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/fjordhq/fjord/storage"
)

// driftKey names one object of one app that may have drifted.
type driftKey struct {
	app string
	ref ObjectRef
}

// driftSeen is when each queued drift was first seen, for the revert
// latency metric; guarded by Reconciler.mu.
type driftSeen map[driftKey]time.Time

// pathElem is one step of a field path: a map key, or a list item
// matched by its "name" (the merge key of containers, ports, env, ...).
type pathElem struct {
	key  string
	name string // list item with this name, when isItem
	item bool
}

type fieldPath []pathElem

// String renders a path as people read it: spec.containers[name=app].image.
func (p fieldPath) String() string {
	var b strings.Builder
	for i, e := range p {
		if e.item {
			fmt.Fprintf(&b, "[name=%s]", e.name)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(e.key)
	}
	return b.String()
}

// onUpdate is the watch's update handler: it queues the object when its
// live form differs from what fjord applied in a field someone else set.
func (r *Reconciler) onUpdate(c *cluster, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	st := r.lookup(ownedBy(u))
	if st == nil || st.clusterOf() != c {
		return // an object left on a cluster the app no longer deploys to
	}
	ref := RefOf(u)
	st.mu.Lock()
	want, app := st.desired[ref], st.app
	st.mu.Unlock()
	if want == nil || app == nil {
		return
	}
	r.healthChanged(st.name)
	if len(r.drifted(app, want, u)) == 0 {
		return
	}
	r.queueDrift(driftKey{app: st.name, ref: ref})
}

func (r *Reconciler) queueDrift(k driftKey) {
	r.mu.Lock()
	if _, ok := r.driftSeen[k]; !ok {
		r.driftSeen[k] = time.Now()
	}
	r.mu.Unlock()
	r.work.Load().drift.Add(k)
}

// onDelete is the watch's delete handler: a managed object that git still
// declares was deleted by someone.
func (r *Reconciler) onDelete(c *cluster, obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	st := r.lookup(ownedBy(u))
	if st == nil || st.clusterOf() != c {
		return
	}
	ref := RefOf(u)
	st.mu.Lock()
	want := st.desired[ref]
	st.mu.Unlock()
	if want != nil {
		r.healthChanged(st.name)
		r.queueDrift(driftKey{app: st.name, ref: ref})
	}
}

func (r *Reconciler) driftWorker(ctx context.Context, queue workqueue.TypedInterface[driftKey]) {
	for {
		k, quit := queue.Get()
		if quit {
			return
		}
		r.mu.Lock()
		seen := r.driftSeen[k]
		delete(r.driftSeen, k)
		r.mu.Unlock()
		if err := r.heal(ctx, k, seen); err != nil && ctx.Err() == nil {
			r.log.Warn("self-heal failed", "app", k.app, "object", k.ref.String(), "err", err)
		}
		queue.Done(k)
	}
}

// heal looks at the object again (the queue may have merged several
// events) and reverts or reports its drift.
func (r *Reconciler) heal(ctx context.Context, k driftKey, seen time.Time) error {
	st := r.lookup(k.app)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	want, app, deleting, c := st.desired[k.ref], st.app, st.deleting, st.cluster
	st.mu.Unlock()
	if want == nil || app == nil || deleting || c == nil || c.down() {
		return nil
	}
	m, err := c.mapping(want.GroupVersionKind())
	if err != nil {
		return err
	}
	live, watched := c.watcher().cached(m.Resource, k.ref.Namespace, k.ref.Name)
	if !watched {
		return nil
	}
	if live == nil {
		// Gone from the label-scoped watch: deleted, or its tracking
		// label removed (the watch reports that as a deletion too).
		if got, err := c.resource(m, k.ref.Namespace).Get(ctx, k.ref.Name, metav1.GetOptions{}); err == nil {
			live = got
		}
	}
	ev := storage.DriftEvent{Time: time.Now().UTC(), Object: k.ref.String()}
	var paths []fieldPath
	if live == nil {
		ev.Deleted = true
	} else {
		if paths = r.drifted(app, want, live); len(paths) == 0 {
			return nil
		}
		for _, p := range paths {
			ev.Fields = append(ev.Fields, p.String())
		}
		ev.Manager = changedBy(live, paths, r.fieldManager)
	}

	if app.SelfHeal() {
		if live != nil && hasOption(want, AnnotationCompareOptions, "ServerSideDiff=true") && !r.wouldChange(ctx, c, app, want, live) {
			return nil // the server's diff says there is none
		}
		t := &target{u: want, ref: k.ref, m: m, live: live}
		out, err := r.ssa(ctx, app, c.resource(m, k.ref.Namespace), r.body(app, t), false)
		if err != nil {
			return fmt.Errorf("revert drift of %s: %w", k.ref, err)
		}
		if live != nil && out.GetResourceVersion() == live.GetResourceVersion() {
			return nil // the server normalised it to the same object: no drift
		}
		if !seen.IsZero() {
			ev.RevertedIn = time.Since(seen)
			r.metrics.revert.Observe(ev.RevertedIn.Seconds())
		}
		ev.Action = storage.DriftReverted
		if ev.Deleted {
			ev.Action = storage.DriftRecreated
		}
		r.log.Info("drift reverted", "app", k.app, "object", ev.Object, "fields", ev.Fields, "by", ev.Manager, "deleted", ev.Deleted)
	} else {
		if live != nil && !r.wouldChange(ctx, c, app, want, live) {
			return nil
		}
		sig := fmt.Sprint(ev.Deleted, ev.Fields, ev.Manager)
		st.mu.Lock()
		seen := st.reported[k.ref] == sig
		st.reported[k.ref] = sig
		st.mu.Unlock()
		if seen {
			return nil
		}
		ev.Action = storage.DriftReported
		r.log.Info("drift reported (selfHeal off)", "app", k.app, "object", ev.Object, "fields", ev.Fields, "by", ev.Manager, "deleted", ev.Deleted)
		// Drift that stands makes the app OutOfSync, as in Argo CD, until
		// a sync puts git back.
		_ = r.store.UpdateAppStatus(k.app, func(s *storage.AppStatus) {
			if s.Sync == "Synced" {
				s.Sync = "OutOfSync"
			}
		})
	}
	r.metrics.drift.WithLabelValues(c.name, k.app, string(ev.Action)).Inc()
	if err := r.store.RecordDrift(k.app, ev); err != nil {
		return err
	}
	r.driftRevertedEvent(c, k.app, want, ev)
	return nil
}

// wouldChange asks the API server (dry-run apply of what fjord would
// send) whether applying want would change live: the precise test for
// drift when fjord may not revert, and for ServerSideDiff=true objects.
func (r *Reconciler) wouldChange(ctx context.Context, c *cluster, app *Application, want, live *unstructured.Unstructured) bool {
	m, err := c.mapping(want.GroupVersionKind())
	if err != nil {
		return true
	}
	t := &target{u: want, ref: RefOf(want), m: m, live: live}
	out, err := r.ssa(ctx, app, c.resource(m, want.GetNamespace()), r.body(app, t), true)
	if err != nil {
		return true
	}
	return !reflect.DeepEqual(stripNoise(out).Object, stripNoise(live).Object)
}

// stripNoise drops the fields a dry run always changes.
func stripNoise(u *unstructured.Unstructured) *unstructured.Unstructured {
	c := u.DeepCopy()
	unstructured.RemoveNestedField(c.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(c.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(c.Object, "metadata", "generation")
	unstructured.RemoveNestedField(c.Object, "status")
	return c
}

// drifted returns the fields of want whose live value differs and that
// fjord does not own in live's managedFields. A difference in a field
// fjord still owns is the server's normalisation ("0.5" CPU becomes
// "500m") or an event older than fjord's last write, not drift. The
// fields the app's ignoreDifferences names (pointers, jq paths, and what
// its managedFieldsManagers own) are never drift.
func (r *Reconciler) drifted(app *Application, want, live *unstructured.Unstructured) []fieldPath {
	diffs := diffFields(withoutIgnored(app, want).Object, live.Object)
	if len(diffs) == 0 {
		return nil
	}
	own := ownedSets(live, r.fieldManager)
	var ignored []map[string]any
	if ms := ignoredManagers(app, want); len(ms) > 0 {
		for _, s := range decodeManaged(live) {
			if ms[s.manager] {
				ignored = append(ignored, s.fields)
			}
		}
	}
	var out []fieldPath
	for _, p := range diffs {
		if !ownsAny(own, p) && !ownsAny(ignored, p) {
			out = append(out, p)
		}
	}
	return out
}

// diffFields compares want against live and returns the paths of want's
// fields that live lacks or holds differently. Only want's fields count:
// defaults and other managers' additions are not differences. metadata is
// compared for labels and annotations only, status never.
func diffFields(want, live map[string]any) []fieldPath {
	var out []fieldPath
	for _, k := range sortedKeys(want) {
		switch k {
		case "status", "apiVersion", "kind":
			continue
		case "metadata":
			wm, _ := want[k].(map[string]any)
			lm, _ := live[k].(map[string]any)
			for _, mk := range []string{"labels", "annotations"} {
				if wv, ok := wm[mk]; ok {
					diffValue(fieldPath{{key: k}, {key: mk}}, wv, lm[mk], &out)
				}
			}
			continue
		}
		diffValue(fieldPath{{key: k}}, want[k], live[k], &out)
	}
	return out
}

func diffValue(p fieldPath, want, live any, out *[]fieldPath) {
	switch w := want.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok && live != nil {
			*out = append(*out, p)
			return
		}
		// An absent map is compared key by key, so the paths name the
		// leaves git sets (metadata.labels.fjord.dev/app).
		for _, k := range sortedKeys(w) {
			diffValue(append(clonePath(p), pathElem{key: k}), w[k], l[k], out)
		}
	case []any:
		l, ok := live.([]any)
		if !ok {
			*out = append(*out, p)
			return
		}
		if named(w) && named(l) {
			byName := map[string]any{}
			for _, e := range l {
				byName[e.(map[string]any)["name"].(string)] = e
			}
			for _, e := range w {
				n := e.(map[string]any)["name"].(string)
				item := append(clonePath(p), pathElem{item: true, name: n})
				if byName[n] == nil {
					*out = append(*out, item) // the whole item is gone
					continue
				}
				diffValue(item, e, byName[n], out)
			}
			return
		}
		// Lists without names (args, command): compare whole, but as a
		// subset item by item, since the server may default fields in
		// the items.
		if len(w) != len(l) {
			*out = append(*out, p)
			return
		}
		var sub []fieldPath
		for i := range w {
			diffValue(p, w[i], l[i], &sub)
		}
		if len(sub) > 0 {
			*out = append(*out, p)
		}
	default:
		if !scalarEqual(want, live) {
			*out = append(*out, p)
		}
	}
}

func clonePath(p fieldPath) fieldPath { return append(fieldPath(nil), p...) }

// named reports whether every item of l is a map with a string "name".
func named(l []any) bool {
	if len(l) == 0 {
		return false
	}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

func scalarEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// managedSet is one managedFields entry, decoded.
type managedSet struct {
	manager string
	time    time.Time
	update  bool
	fields  map[string]any
}

func decodeManaged(live *unstructured.Unstructured) []managedSet {
	var out []managedSet
	for _, f := range live.GetManagedFields() {
		s := managedSet{manager: f.Manager, update: f.Operation == metav1.ManagedFieldsOperationUpdate}
		if f.Time != nil {
			s.time = f.Time.Time
		}
		if f.FieldsV1 != nil {
			_ = json.Unmarshal(f.FieldsV1.Raw, &s.fields)
		}
		out = append(out, s)
	}
	return out
}

// ownedSets returns the field sets of manager self.
func ownedSets(live *unstructured.Unstructured, self string) []map[string]any {
	var out []map[string]any
	for _, s := range decodeManaged(live) {
		if s.manager == self {
			out = append(out, s.fields)
		}
	}
	return out
}

func ownsAny(sets []map[string]any, p fieldPath) bool {
	for _, s := range sets {
		if owns(s, p) {
			return true
		}
	}
	return false
}

// owns walks a FieldsV1 set along p: f:KEY for map keys, k:{"name":..}
// for list items. Reaching the end, or a leaf ({}) on the way (an atomic
// field), means the set owns the path.
func owns(set map[string]any, p fieldPath) bool {
	node := set
	for _, e := range p {
		if len(node) == 0 {
			return true
		}
		var next any
		if e.item {
			for k, v := range node {
				if !strings.HasPrefix(k, "k:") {
					continue
				}
				var key map[string]any
				if json.Unmarshal([]byte(k[2:]), &key) == nil && key["name"] == e.name {
					next = v
					break
				}
			}
		} else {
			next = node["f:"+e.key]
		}
		m, ok := next.(map[string]any)
		if !ok {
			return false
		}
		node = m
	}
	return true
}

// changedBy names the field manager that most recently took a drifted
// field from fjord; failing that, the newest other manager that updated
// the object. Empty when nobody can be named.
func changedBy(live *unstructured.Unstructured, paths []fieldPath, self string) string {
	sets := decodeManaged(live)
	best, bestTime := "", time.Time{}
	for _, s := range sets {
		if s.manager == self {
			continue
		}
		for _, p := range paths {
			if owns(s.fields, p) && (best == "" || s.time.After(bestTime)) {
				best, bestTime = s.manager, s.time
			}
		}
	}
	if best != "" {
		return best
	}
	for _, s := range sets {
		if s.manager != self && s.update && (best == "" || s.time.After(bestTime)) {
			best, bestTime = s.manager, s.time
		}
	}
	return best
}
