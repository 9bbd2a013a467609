package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fjordhq/fjord/storage"
)

// ObjectRef identifies an object independently of its API version.
type ObjectRef struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

// RefOf returns the ObjectRef of u.
func RefOf(u *unstructured.Unstructured) ObjectRef {
	gvk := u.GroupVersionKind()
	return ObjectRef{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// GroupKind is the ref's group and kind.
func (r ObjectRef) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.Group, Kind: r.Kind}
}

// ID is the Flux-style inventory ID: namespace_name_group_kind.
func (r ObjectRef) ID() string {
	return r.Namespace + "_" + r.Name + "_" + r.Group + "_" + r.Kind
}

// String is how people read an object: Kind/namespace/name.
func (r ObjectRef) String() string {
	k := r.Kind
	if r.Group != "" {
		k += "." + r.Group
	}
	if r.Namespace == "" {
		return k + "/" + r.Name
	}
	return k + "/" + r.Namespace + "/" + r.Name
}

// ParseID reverses ID.
func ParseID(id string) (ObjectRef, error) {
	// Namespaces, groups and kinds never hold "_"; some names (RBAC) may.
	f := strings.Split(id, "_")
	if len(f) < 4 {
		return ObjectRef{}, fmt.Errorf("inventory ID %q: want namespace_name_group_kind", id)
	}
	n := len(f)
	return ObjectRef{Namespace: f[0], Name: strings.Join(f[1:n-2], "_"), Group: f[n-2], Kind: f[n-1]}, nil
}

// Entry is one object in an inventory.
type Entry struct {
	Ref ObjectRef
	// Version is the API version it was applied with, needed to address
	// it again for prune.
	Version string
	// Hash digests the object as fjord last sent it; equal hashes and an
	// undrifted live object mean nothing needs to be sent.
	Hash string
}

// GVK is the entry's group, version and kind.
func (e Entry) GVK() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: e.Ref.Group, Version: e.Version, Kind: e.Ref.Kind}
}

// Inventory is the set of objects an app applied, keyed by ref.
type Inventory map[ObjectRef]Entry

// Diff returns the entries of old that are not in next, sorted by ID: the
// candidates for prune. It is pure; whether a candidate is deleted is
// decided against the live object (tracking mark, prune annotation).
func Diff(old, next Inventory) []Entry {
	var out []Entry
	for ref, e := range old {
		if _, ok := next[ref]; !ok {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.ID() < out[j].Ref.ID() })
	return out
}

// toStorage converts an inventory for bbolt and the cluster copy.
func (inv Inventory) toStorage(commit string) storage.AppInventory {
	out := storage.AppInventory{Commit: commit, Entries: []storage.InventoryEntry{}}
	for _, e := range inv {
		out.Entries = append(out.Entries, storage.InventoryEntry{ID: e.Ref.ID(), Version: e.Version, Hash: e.Hash})
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].ID < out.Entries[j].ID })
	return out
}

func inventoryFrom(s storage.AppInventory) (Inventory, error) {
	inv := Inventory{}
	for _, e := range s.Entries {
		ref, err := ParseID(e.ID)
		if err != nil {
			return nil, err
		}
		inv[ref] = Entry{Ref: ref, Version: e.Version, Hash: e.Hash}
	}
	return inv, nil
}

// hashObject digests an object as it will be sent. json.Marshal sorts map
// keys, so equal objects hash equally.
func hashObject(u *unstructured.Unstructured) string {
	b, _ := json.Marshal(u.Object)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// inventoryConfigMap is the cluster copy of an app's inventory, so that a
// fjord whose data dir was lost still knows what it may prune. It lives in
// Config.InventoryNamespace if set, else in the app's destination
// namespace (where fjord has rights even with namespaced RBAC), else in
// kube-system.
func (r *Reconciler) inventoryConfigMap(app *Application) (ns, name string) {
	ns = r.invNamespace
	if ns == "" {
		ns = app.Spec.Destination.Namespace
	}
	if ns == "" {
		ns = DefaultInventoryNamespace
	}
	return ns, "fjord-inventory." + app.Metadata.Name
}

// Label on the cluster copy of an inventory. It is not the tracking
// label, so the ConfigMap is never a prune candidate of its own app.
const labelInventory = "fjord.dev/inventory"

// saveClusterInventory writes the inventory ConfigMap by server-side apply.
func (r *Reconciler) saveClusterInventory(ctx context.Context, c *cluster, a *Application, inv storage.AppInventory) error {
	app := a.Metadata.Name
	ns, name := r.inventoryConfigMap(a)
	data, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":      name,
			"namespace": ns,
			"labels":    map[string]any{labelInventory: app},
		},
		"data": map[string]any{"inventory.json": string(data)},
	}}
	_, err = c.dyn.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(ns).
		Apply(ctx, name, cm, metav1.ApplyOptions{FieldManager: r.fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("save inventory of app %q in ConfigMap %s/%s: %w", app, ns, name, err)
	}
	return nil
}

// loadClusterInventory reads the cluster copy; ok is false if none exists.
func (r *Reconciler) loadClusterInventory(ctx context.Context, c *cluster, a *Application) (storage.AppInventory, bool, error) {
	app := a.Metadata.Name
	ns, name := r.inventoryConfigMap(a)
	u, err := c.dyn.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return storage.AppInventory{}, false, nil
	}
	if err != nil {
		return storage.AppInventory{}, false, fmt.Errorf("read inventory of app %q from ConfigMap %s/%s: %w", app, ns, name, err)
	}
	s, _, _ := unstructured.NestedString(u.Object, "data", "inventory.json")
	var inv storage.AppInventory
	if err := json.Unmarshal([]byte(s), &inv); err != nil {
		return storage.AppInventory{}, false, fmt.Errorf("inventory of app %q in ConfigMap %s/%s is damaged: %w", app, ns, name, err)
	}
	return inv, true, nil
}

// deleteClusterInventory removes the cluster copy, if any.
func (r *Reconciler) deleteClusterInventory(ctx context.Context, c *cluster, a *Application) error {
	ns, name := r.inventoryConfigMap(a)
	err := c.dyn.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete inventory ConfigMap %s/%s: %w", ns, name, err)
	}
	return nil
}
