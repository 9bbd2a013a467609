package reconciler

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// watchSyncTimeout bounds the wait for a new watch's first list. A kind
// fjord may not list (RBAC) is then read with GETs instead.
const watchSyncTimeout = 30 * time.Second

// watcher holds one informer per resource and namespace fjord manages,
// restricted to objects with the tracking label: the cache that makes a
// no-op sync free and the event source of self-heal. Each cluster has
// its own; the apps on it share them, and events are routed by the
// label's value. A watch whose API server goes away is restarted by
// client-go's reflector when it comes back; the cluster's transport tells
// fjord both (see cluster.observe).
type watcher struct {
	r    *Reconciler
	c    *cluster
	dyn  dynamic.Interface
	done chan struct{}
	once sync.Once

	mu        sync.Mutex
	informers map[watchKey]cache.SharedIndexInformer
	denied    map[watchKey]bool // list forbidden: read with GETs
	// notify is closed (and replaced) on every event of an app's
	// objects: what a sync waiting for a wave or a hook selects on.
	notify map[string]chan struct{}
}

// watchKey is one informer: a resource in one namespace ("" for cluster
// scoped resources). Watching per namespace rather than cluster-wide lets
// fjord run with only namespaced RBAC for the namespaces it deploys to.
type watchKey struct {
	gvr schema.GroupVersionResource
	ns  string
}

func newWatcher(r *Reconciler, c *cluster) *watcher {
	return &watcher{r: r, c: c, dyn: c.dyn, done: make(chan struct{}), informers: map[watchKey]cache.SharedIndexInformer{}, denied: map[watchKey]bool{}, notify: map[string]chan struct{}{}}
}

// stop ends every informer. Safe to call twice.
func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }

// informer returns the synced informer of gvr in ns, starting it on
// first use; ok is false if fjord may not list it or it could not sync in
// time.
func (w *watcher) informer(ctx context.Context, gvr schema.GroupVersionResource, ns string) (cache.SharedIndexInformer, bool) {
	k := watchKey{gvr, ns}
	w.mu.Lock()
	inf, exists := w.informers[k]
	denied := w.denied[k]
	w.mu.Unlock()
	if denied {
		return nil, false
	}
	if !exists {
		// One cheap list first: an informer without list rights retries
		// forever, and the sync would wait watchSyncTimeout for nothing.
		_, err := w.dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelApp, Limit: 1})
		if apierrors.IsForbidden(err) {
			w.mu.Lock()
			w.denied[k] = true
			w.mu.Unlock()
			w.r.log.Warn("may not list; no self-heal for this resource, objects are read one by one", "cluster", w.c.name, "resource", gvr.String(), "namespace", ns, "err", err)
			return nil, false
		}
		w.mu.Lock()
		if inf, exists = w.informers[k]; !exists {
			inf = dynamicinformer.NewFilteredDynamicInformer(w.dyn, gvr, ns, 0, cache.Indexers{},
				func(o *metav1.ListOptions) { o.LabelSelector = LabelApp }).Informer()
			_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    func(obj any) { w.kick(obj) },
				UpdateFunc: func(_, obj any) { w.kick(obj); w.r.onUpdate(w.c, obj) },
				DeleteFunc: func(obj any) { w.kick(obj); w.r.onDelete(w.c, obj) },
			})
			w.informers[k] = inf
			go inf.Run(w.done)
		}
		w.mu.Unlock()
	}
	if inf.HasSynced() {
		return inf, true
	}
	ctx, cancel := context.WithTimeout(ctx, watchSyncTimeout)
	defer cancel()
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-w.done:
		}
		close(stop)
	}()
	return inf, cache.WaitForCacheSync(stop, inf.HasSynced)
}

// changed returns a channel closed at the next watch event of an object
// of app. Take it before looking at the cache, so no event is missed.
func (w *watcher) changed(app string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.notify[app]
	if !ok {
		ch = make(chan struct{})
		w.notify[app] = ch
	}
	return ch
}

// kick wakes whoever waits on the app of obj's tracking label.
func (w *watcher) kick(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	app := ownedBy(u)
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.notify[app]; ok {
		close(ch)
		delete(w.notify, app)
	}
}

// get returns the cached live object; watched is false when the resource
// has no synced watch, so a nil object means "unknown", not "absent".
func (w *watcher) get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (live *unstructured.Unstructured, watched bool, err error) {
	inf, ok := w.informer(ctx, gvr, ns)
	if !ok {
		return nil, false, ctx.Err()
	}
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	obj, exists, err := inf.GetStore().GetByKey(key)
	if err != nil || !exists {
		return nil, true, err
	}
	u, _ := obj.(*unstructured.Unstructured)
	return u, true, nil
}

// cached returns the cached object only if a watch for gvr already runs.
func (w *watcher) cached(gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, bool) {
	w.mu.Lock()
	inf, ok := w.informers[watchKey{gvr, ns}]
	w.mu.Unlock()
	if !ok || !inf.HasSynced() {
		return nil, false
	}
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	obj, exists, _ := inf.GetStore().GetByKey(key)
	if !exists {
		return nil, true
	}
	u, _ := obj.(*unstructured.Unstructured)
	return u, true
}
