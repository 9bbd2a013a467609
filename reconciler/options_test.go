package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fjordhq/fjord/reconciler"
)

func cmData(u *unstructured.Unstructured) string {
	v, _, _ := unstructured.NestedString(u.Object, "data", "k")
	return v
}

func TestDryRunRefusalAppliesNothing(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{"app/good.yaml": cm("good")})
	name := "dry-run-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	good := appStatus(t, store, name).SyncedCommit
	// A bad commit: one object the API server refuses, one fine change.
	w.write("app/good.yaml", strings.Replace(cm("good"), "k: v", "k: v2", 1))
	w.write("app/bad.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 99999\n")
	bad := w.commit("a bad port")
	eventually(t, "the sync refused", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Revision == bad && st.Sync == "Error", fmt.Sprintf("%+v", st)
	})
	st := appStatus(t, store, name)
	if !strings.Contains(st.Error, "Service/"+ns+"/bad") || !strings.Contains(st.Error, "dry run") || st.SyncedCommit != good {
		t.Errorf("status does not name the refused object: %+v", st)
	}
	if v := cmData(c.get(gvrCM, ns, "good")); v != "v" {
		t.Errorf("the good object was applied from a refused commit: k=%q", v)
	}
	if c.get(gvrSvc, ns, "bad") != nil {
		t.Error("the refused object exists")
	}
}

func TestPerResourceSyncOptions(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{
		"app/keep.yaml":     cm("keep", "argocd.argoproj.io/sync-options", "Prune=false"),
		"app/retain.yaml":   cm("retain", "argocd.argoproj.io/sync-options", "Delete=false"),
		"app/replace.yaml":  cm("replace", "argocd.argoproj.io/sync-options", "Replace=true"),
		"app/recreate.yaml": cm("recreate", "argocd.argoproj.io/sync-options", "Replace=true,Force=true"),
		"app/ssa.yaml":      cm("ssa", "argocd.argoproj.io/sync-options", "ServerSideApply=true"),
		"app/immutable.yaml": strings.Replace(cm("immutable", "argocd.argoproj.io/sync-options", "Force=true"),
			"\ndata:", "\nimmutable: true\ndata:", 1),
	})
	name := "res-opts-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	if st := appStatus(t, store, name); st.Sync != "Synced" {
		t.Fatalf("first sync: %+v", st)
	}
	// Replace=true writes by PUT: fjord's fields are an Update, not an
	// Apply.
	for _, f := range c.get(gvrCM, ns, "replace").GetManagedFields() {
		if f.Manager == "fjord" && f.Operation != metav1.ManagedFieldsOperationUpdate {
			t.Errorf("Replace=true object written by %s", f.Operation)
		}
	}
	uid := c.get(gvrCM, ns, "recreate").GetUID()
	immutableUID := c.get(gvrCM, ns, "immutable").GetUID()

	w.remove("app/keep.yaml")
	for _, n := range []string{"replace", "recreate", "immutable"} {
		w.write("app/"+n+".yaml", strings.Replace(w.read("app/"+n+".yaml"), "k: v", "k: v2", 1))
	}
	commit := w.commit("drop keep, change the replaced ones")
	eventually(t, "synced", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.SyncedCommit == commit, fmt.Sprintf("%+v", st)
	})
	if c.get(gvrCM, ns, "keep") == nil {
		t.Error("Prune=false object pruned")
	}
	if st := appStatus(t, store, name); len(st.Orphans) != 1 || st.Sync != "OutOfSync" {
		t.Errorf("Prune=false object not reported as an orphan: %+v", st)
	}
	if u := c.get(gvrCM, ns, "replace"); cmData(u) != "v2" {
		t.Errorf("Replace=true object not replaced: %v", u.Object["data"])
	}
	if u := c.get(gvrCM, ns, "recreate"); cmData(u) != "v2" || u.GetUID() == uid {
		t.Errorf("Replace=true,Force=true object not deleted and recreated: uid %s -> %s", uid, u.GetUID())
	}
	if u := c.get(gvrCM, ns, "immutable"); cmData(u) != "v2" || u.GetUID() == immutableUID {
		t.Errorf("Force=true immutable object not recreated with the change: k=%s, uid %s -> %s", cmData(u), immutableUID, u.GetUID())
	}

	// Deleting the app with cascade keeps Delete=false objects.
	if _, err := rec.Delete(context.Background(), name, true); err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "retain") == nil {
		t.Error("Delete=false object deleted with the app")
	}
	if c.get(gvrCM, ns, "ssa") != nil {
		t.Error("the app's other objects were not deleted with it")
	}
}

func TestFailOnSharedResource(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{"app/cms.yaml": cm("mine") + "---\n" + cm("shared")})
	other := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "shared", "namespace": ns, "labels": map[string]any{reconciler.LabelApp: "other-app"}}}}
	if _, err := c.dyn.Resource(gvrCM).Namespace(ns).Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	name := "shared-" + ns[len(ns)-6:]
	doc := append(appDoc(name, "apps", "app", ns, true, true), "    syncOptions:\n    - FailOnSharedResource=true\n"...)
	if _, err := rec.Apply(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	st := appStatus(t, store, name)
	if st.Sync != "Error" || !strings.Contains(st.Error, "ConfigMap/"+ns+"/shared") || !strings.Contains(st.Error, `"other-app"`) {
		t.Errorf("status: %+v", st)
	}
	if c.get(gvrCM, ns, "mine") != nil {
		t.Error("FailOnSharedResource: the sync applied the app's other objects")
	}
}

func TestIgnoreExtraneousOrphanKeepsTheAppSynced(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{
		"app/keep.yaml":  cm("keep"),
		"app/quiet.yaml": cm("quiet", "argocd.argoproj.io/compare-options", "IgnoreExtraneous"),
	})
	name := "extraneous-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, false, true)); err != nil {
		t.Fatal(err)
	}
	w.remove("app/quiet.yaml")
	commit := w.commit("drop quiet")
	eventually(t, "synced", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.SyncedCommit == commit, fmt.Sprintf("%+v", st)
	})
	st := appStatus(t, store, name)
	if c.get(gvrCM, ns, "quiet") == nil || len(st.Orphans) != 1 {
		t.Fatalf("prune off: the orphan should stay and be listed: %+v", st)
	}
	if st.Sync != "Synced" {
		t.Errorf("an IgnoreExtraneous orphan made the app %s", st.Sync)
	}
}

// spec.syncPolicy.syncOptions Replace=true makes every object of the app
// written by replace (an Update in its managed fields), as the per-object
// annotation does for one; Replace=false is Argo CD's default and accepted.
func TestAppLevelReplace(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{"app/a.yaml": cm("a", "x", "y"), "app/b.yaml": cm("b", "x", "y")})
	name := "app-replace-" + ns[len(ns)-6:]
	doc := string(appDoc(name, "apps", "app", ns, true, true)) + "    syncOptions:\n    - Replace=false\n    - Replace=true\n"
	if _, err := rec.Apply(context.Background(), []byte(doc)); err != nil {
		t.Fatal(err)
	}
	w.write("app/a.yaml", strings.Replace(w.read("app/a.yaml"), "k: v", "k: v2", 1))
	commit := w.commit("change a")
	eventually(t, "synced", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.SyncedCommit == commit && st.Sync == "Synced", fmt.Sprintf("%+v", st)
	})
	if u := c.get(gvrCM, ns, "a"); cmData(u) != "v2" {
		t.Fatalf("a not changed: %v", u.Object["data"])
	}
	for _, n := range []string{"a", "b"} {
		for _, f := range c.get(gvrCM, ns, n).GetManagedFields() {
			if f.Manager == "fjord" && f.Operation != metav1.ManagedFieldsOperationUpdate {
				t.Errorf("%s written by %s under an app-level Replace=true, want Update (replace)", n, f.Operation)
			}
		}
	}
}
