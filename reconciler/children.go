package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/fjordhq/fjord/storage"
)

// App of apps: the argoproj.io Applications and AppProjects of an app's
// render are not sent to the cluster. fjord is their controller: each
// becomes a fjord app (or project) whose parent is the app that renders
// it, synced in its sync wave, and deleted when git drops it and the
// parent prunes.

// syncChildren creates or updates the child apps and projects of one
// wave of parent's render and syncs each child app. When wait is set (a
// later wave follows), it returns once every automated child app is
// Current, so the next wave's children start on healthy ones.
func (r *Reconciler) syncChildren(ctx context.Context, parent *appState, wave int, children []*unstructured.Unstructured, wait bool) (ChangeSet, error) {
	pname := parent.name
	var cs ChangeSet
	var synced []*appState
	var errs []error
	// Projects first: the apps of the same wave may name them.
	sorted := append([]*unstructured.Unstructured{}, children...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[i].GetKind() == "AppProject" && sorted[j].GetKind() != "AppProject"
	})
	for _, u := range sorted {
		ref := ObjectRef{Group: "argoproj.io", Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
		doc, err := yaml.Marshal(u.Object)
		if err != nil {
			errs = append(errs, fmt.Errorf("child %s: %w", ref, err))
			continue
		}
		if u.GetKind() == "AppProject" {
			c, err := r.syncChildProject(ref, doc, pname)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			cs = append(cs, c)
			continue
		}
		c, st, err := r.putChildApp(ref, doc, pname)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs = append(cs, c)
		if st == nil {
			continue
		}
		if _, err := r.syncAndRetry(ctx, st, storage.TriggerParent, SyncOptions{}); err != nil {
			// The child's failure is on the child; the parent goes on
			// only if it does not have to wait for it.
			if wait {
				errs = append(errs, fmt.Errorf("child app %s (wave %d): %w", st.name, wave, err))
			}
			continue
		}
		synced = append(synced, st)
	}
	if err := errors.Join(errs...); err != nil {
		return cs, err
	}
	if !wait {
		return cs, nil
	}
	for _, st := range synced {
		st.mu.Lock()
		app, c := st.app, st.cluster
		st.mu.Unlock()
		if !app.Auto() {
			continue // a manual child is synced by hand, not waited for
		}
		if c == nil {
			return cs, fmt.Errorf("child app %s (wave %d) reached no cluster: see `fjord app get %s`", st.name, wave, st.name)
		}
		err := r.waitUntil(ctx, c, st.name, func() (bool, string, error) {
			inv, err := r.previousInventory(ctx, c, app)
			if err != nil {
				return false, "", err
			}
			h, objs := r.health(ctx, c, inv)
			why := fmt.Sprintf("child app %s (wave %d) is %s", st.name, wave, h)
			for _, o := range objs {
				if o.Status != string(status.CurrentStatus) {
					why += fmt.Sprintf(": %s is %s %s", o.ID, o.Status, o.Message)
					break
				}
			}
			return h == string(status.CurrentStatus), why, nil
		})
		if err != nil {
			return cs, err
		}
	}
	return cs, nil
}

// syncChildProject stores an AppProject of a render as a fjord project.
func (r *Reconciler) syncChildProject(ref ObjectRef, doc []byte, parent string) (Change, error) {
	old, err := r.store.Project(ref.Name)
	switch {
	case err == nil && old.Parent != parent:
		return Change{Ref: ref, Action: Skipped, Reason: fmt.Sprintf("project %s exists and is not declared by app %s: delete it (`fjord project delete %s`) to let %s manage it", ref.Name, parent, ref.Name, parent)}, nil
	case err == nil && old.Manifest == string(doc):
		return Change{Ref: ref, Action: Unchanged}, nil
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return Change{}, err
	}
	r.addParent(parent)
	if _, err := applyProject(r.store, doc, parent); err != nil {
		return Change{}, fmt.Errorf("child %s: %w", ref, err)
	}
	if err != nil {
		return Change{Ref: ref, Action: Created}, nil
	}
	return Change{Ref: ref, Action: Configured}, nil
}

// putChildApp stores a child Application; st is nil when it is not
// (another app's, or refused as a Skipped change).
func (r *Reconciler) putChildApp(ref ObjectRef, doc []byte, parent string) (Change, *appState, error) {
	app, err := ParseApplication(doc)
	if err != nil {
		return Change{}, nil, fmt.Errorf("child %s: %w", ref, err)
	}
	name := app.Metadata.Name
	if name == parent {
		return Change{}, nil, fmt.Errorf("child %s: an app cannot declare itself: rename the child", ref)
	}
	old, err := r.store.App(name)
	exists := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return Change{}, nil, err
	}
	if exists && old.Parent != parent {
		return Change{Ref: ref, Action: Skipped, Reason: fmt.Sprintf("app %s exists and is not a child of %s: delete it (`fjord app delete %s`) to let %s manage it", name, parent, name, parent)}, nil, nil
	}
	if err := r.admit(app); err != nil {
		return Change{}, nil, fmt.Errorf("child %s: %w", ref, err)
	}
	action := Created
	if exists {
		action = Configured
		if old.Manifest == string(doc) {
			action = Unchanged
		}
	}
	if action != Unchanged {
		r.addParent(parent)
		if _, err := r.store.PutApp(name, string(doc), r.storageMeta(app, parent)); err != nil {
			return Change{}, nil, err
		}
		return Change{Ref: ref, Action: action}, r.state(name, app), nil
	}
	st := r.lookup(name)
	if st == nil {
		st = r.state(name, app)
	}
	return Change{Ref: ref, Action: Unchanged}, st, nil
}

// pruneChildren deletes the child apps and projects of parent that its
// render no longer declares: each app is deleted as `fjord app delete`
// does (cascading per its finalizer). With prune off they are kept and
// reported.
func (r *Reconciler) pruneChildren(ctx context.Context, parent string, children map[int][]*unstructured.Unstructured, prune bool) ChangeSet {
	declared := map[string]bool{}
	for _, l := range children {
		for _, u := range l {
			declared[u.GetKind()+"/"+u.GetName()] = true
		}
	}
	var cs ChangeSet
	if len(declared) == 0 && !r.mayHaveChildren(parent) {
		return nil
	}
	apps, err := r.store.Apps()
	if err != nil {
		r.log.Error("list child apps", "app", parent, "err", err)
	}
	for _, a := range apps {
		if a.Parent != parent || declared["Application/"+a.Name] {
			continue
		}
		ref := ObjectRef{Group: "argoproj.io", Kind: "Application", Name: a.Name}
		if !prune {
			cs = append(cs, Change{Ref: ref, Action: Skipped, Reason: "no longer in git; the parent does not prune"})
			continue
		}
		dcs, err := r.Delete(ctx, a.Name, false)
		cs = append(cs, dcs...)
		if err != nil {
			cs = append(cs, Change{Ref: ref, Action: Skipped, Reason: "delete: " + err.Error()})
			continue
		}
		cs = append(cs, Change{Ref: ref, Action: Deleted})
	}
	projects, err := r.store.Projects()
	if err != nil {
		r.log.Error("list child projects", "app", parent, "err", err)
	}
	for _, p := range projects {
		if p.Parent != parent || declared["AppProject/"+p.Name] {
			continue
		}
		ref := ObjectRef{Group: "argoproj.io", Kind: "AppProject", Name: p.Name}
		if !prune {
			cs = append(cs, Change{Ref: ref, Action: Skipped, Reason: "no longer in git; the parent does not prune"})
			continue
		}
		if err := r.store.DeleteProject(p.Name); err != nil {
			cs = append(cs, Change{Ref: ref, Action: Skipped, Reason: err.Error()})
			continue
		}
		cs = append(cs, Change{Ref: ref, Action: Deleted})
	}
	return cs
}

// mayHaveChildren says whether parent has, or once had, child apps or
// projects; false means it certainly has none. The set is read from the
// store on first use when Run has not loaded it.
func (r *Reconciler) mayHaveChildren(parent string) bool {
	r.mu.Lock()
	loaded := r.parents != nil
	r.mu.Unlock()
	if !loaded {
		apps, err := r.store.Apps()
		if err != nil {
			r.log.Error("list apps for their children", "app", parent, "err", err)
			return true
		}
		if err := r.loadParents(apps); err != nil {
			r.log.Error("list projects for their parents", "app", parent, "err", err)
			return true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.parents[parent] || r.declared[parent]
}

// loadParents replaces the set of parents with the one apps and the
// stored projects name.
func (r *Reconciler) loadParents(apps []storage.App) error {
	parents := map[string]bool{}
	for _, a := range apps {
		if a.Parent != "" {
			parents[a.Parent] = true
		}
	}
	projects, err := r.store.Projects()
	if err != nil {
		return err
	}
	for _, p := range projects {
		if p.Parent != "" {
			parents[p.Parent] = true
		}
	}
	r.mu.Lock()
	r.parents = parents
	r.mu.Unlock()
	return nil
}

// addParent records that parent declares children. It is called before
// the child is stored, so a prune never misses one.
func (r *Reconciler) addParent(parent string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.declared == nil {
		r.declared = map[string]bool{}
	}
	r.declared[parent] = true
}

// deleteChildren handles the children of an app being deleted: with
// cascade they are deleted (each app per its own finalizer), without they
// stay as apps of their own (their parent cleared).
func (r *Reconciler) deleteChildren(ctx context.Context, parent string, cascade bool) (ChangeSet, error) {
	if cascade {
		return r.pruneChildren(ctx, parent, nil, true), nil
	}
	apps, err := r.store.Apps()
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		if a.Parent != parent {
			continue
		}
		meta := a.AppMeta
		meta.Parent = ""
		if _, err := r.store.PutApp(a.Name, a.Manifest, meta); err != nil {
			return nil, err
		}
	}
	projects, err := r.store.Projects()
	if err != nil {
		return nil, err
	}
	for _, p := range projects {
		if p.Parent == parent {
			if _, err := r.store.PutProject(p.Name, p.Manifest, "", p.SignatureKeys); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}
