package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// appDoc is an Application for a test: repo path rendered into ns.
func appDoc(name, repo, path, ns string, prune, selfHeal bool) []byte {
	return fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
spec:
  source:
    repoURL: %s
    path: %s
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated:
      prune: %v
      selfHeal: %v
`, name, repo, path, ns, prune, selfHeal)
}

const twoConfigMaps = `apiVersion: v1
kind: ConfigMap
metadata:
  name: keep
data:
  k: v
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: drop
data:
  k: v
`

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
`

// setup starts a reconciler on a fresh store with one repo holding files.
func setup(t *testing.T, files map[string]string) (*cluster, *storage.Store, *work, *reconciler.Reconciler, string) {
	t.Helper()
	c := newCluster(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "apps", "")
	for p, s := range files {
		w.write(p, s)
	}
	w.commit("initial")
	rec, _ := c.start(store)
	return c, store, w, rec, c.env.Namespace(t)
}

func TestSelfHealOffReportsOnly(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{"app/deploy.yaml": deployment})
	name := "heal-off-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, false)); err != nil {
		t.Fatal(err)
	}
	c.kubectl("-n", ns, "scale", "deployment/web", "--replicas=4")
	eventually(t, "the drift reported", func() (bool, string) {
		ds, _ := store.AppDrifts(name, 5)
		return len(ds) == 1 && ds[0].Action == "reported" && ds[0].Fields[0] == "spec.replicas" && ds[0].Manager == "kubectl", fmt.Sprintf("%+v", ds)
	})
	if r := replicas(c.get(gvrDeploy, ns, "web")); r != 4 {
		t.Errorf("selfHeal off, yet replicas = %d", r)
	}
	if st := appStatus(t, store, name); st.LastDrift == nil || st.LastDrift.Action != "reported" {
		t.Errorf("status.lastDrift = %+v", st.LastDrift)
	}
	// Drift that stands is OutOfSync.
	if st := appStatus(t, store, name); st.Sync != "OutOfSync" {
		t.Errorf("selfHeal off with drift standing: sync status %s, want OutOfSync", st.Sync)
	}
	// The diff shows what git would put back.
	d, err := rec.Diff(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d, "-  replicas: 4") || !strings.Contains(d, "+  replicas: 2") {
		t.Errorf("diff does not show the replicas drift:\n%s", d)
	}
	// A manual sync reverts it.
	if _, err := rec.Sync(context.Background(), name, reconciler.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := replicas(c.get(gvrDeploy, ns, "web")); r != 2 {
		t.Errorf("after sync, replicas = %d", r)
	}
}

func TestPruneOffReportsOrphan(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{"app/cms.yaml": twoConfigMaps})
	name := "prune-off-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, false, true)); err != nil {
		t.Fatal(err)
	}
	w.write("app/cms.yaml", strings.SplitN(twoConfigMaps, "---\n", 2)[0])
	commit := w.commit("drop one")
	eventually(t, "the orphan reported", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Revision == commit && len(st.Orphans) == 1 && strings.Contains(st.Orphans[0], "drop"), fmt.Sprintf("%+v", st)
	})
	if c.get(gvrCM, ns, "drop") == nil {
		t.Fatal("prune: false, yet the orphan was deleted")
	}
	// fjord app sync --prune deletes it.
	rec2, err := rec.Sync(context.Background(), name, reconciler.SyncOptions{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "drop") != nil || len(rec2.Changes) != 1 || rec2.Changes[0].Action != "deleted" {
		t.Errorf("sync --prune: %+v", rec2)
	}
	if st := appStatus(t, store, name); len(st.Orphans) != 0 || st.Sync != "Synced" {
		t.Errorf("status after prune: %+v", st)
	}
}

func TestPruneDisabledAnnotationAndEmptyRender(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{
		"app/cms.yaml":  twoConfigMaps,
		"app/kept.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  annotations:\n    fjord.dev/prune: disabled\n",
	})
	name := "annot-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	w.remove("app/kept.yaml")
	w.commit("drop kept")
	eventually(t, "kept reported as orphan", func() (bool, string) {
		st := appStatus(t, store, name)
		return len(st.Orphans) == 1, fmt.Sprintf("%+v", st)
	})
	if c.get(gvrCM, ns, "kept") == nil {
		t.Fatal("an object annotated fjord.dev/prune: disabled was pruned")
	}
	// An empty render never prunes without allowEmpty.
	w.write("app/cms.yaml", "# nothing\n")
	commit := w.commit("empty")
	eventually(t, "the empty render refused", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Revision == commit && strings.Contains(st.Error, "allowEmpty"), fmt.Sprintf("%+v", st)
	})
	if c.get(gvrCM, ns, "keep") == nil || c.get(gvrCM, ns, "drop") == nil {
		t.Fatal("an empty render pruned")
	}
}

func TestBrokenKustomizationLeavesClusterAlone(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{"app/kustomization.yaml": "resources:\n- cms.yaml\n", "app/cms.yaml": twoConfigMaps})
	name := "broken-" + ns[len(ns)-6:]
	a, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true))
	if err != nil {
		t.Fatal(err)
	}
	rv := c.get(gvrCM, ns, "keep").GetResourceVersion()
	w.write("app/kustomization.yaml", "resources:\n- cms.yaml\n- missing.yaml\n")
	w.write("app/cms.yaml", strings.ReplaceAll(twoConfigMaps, "k: v", "k: changed"))
	broken := w.commit("broken")
	eventually(t, "the render error on the status", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Revision == broken && st.Sync == "Error" && strings.Contains(st.Error, "missing.yaml"), fmt.Sprintf("%+v", st)
	})
	st := appStatus(t, store, name)
	if st.SyncedCommit != a.Status.SyncedCommit {
		t.Errorf("syncedCommit moved to a broken commit: %+v", st)
	}
	if got := c.get(gvrCM, ns, "keep").GetResourceVersion(); got != rv || c.get(gvrCM, ns, "drop") == nil {
		t.Error("a broken render changed the cluster")
	}
}

func TestInventoryFromClusterAfterDiskLoss(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "apps", "")
	w.write("app/cms.yaml", twoConfigMaps)
	w.commit("initial")
	rec, stop := c.start(store)
	name := "disk-loss-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	stop() // the appliance dies with its disk
	// A new appliance: empty data dir, the repo pushed again without the
	// second ConfigMap.
	store2 := openStore(t, t.TempDir())
	w2 := newWork(t, store2, "apps", "")
	w2.write("app/cms.yaml", strings.SplitN(twoConfigMaps, "---\n", 2)[0])
	w2.commit("after the disk loss")
	rec2, _ := c.start(store2)
	if _, err := rec2.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "drop") != nil {
		t.Error("the object dropped from git survived: the inventory in the cluster was not used")
	}
	if c.get(gvrCM, ns, "keep") == nil {
		t.Error("keep is gone")
	}
}

func TestDeleteCascade(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{"app/cms.yaml": twoConfigMaps})
	name := "cascade-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	cs, err := rec.Delete(context.Background(), name, true)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Count(reconciler.Deleted) != 2 || c.get(gvrCM, ns, "keep") != nil {
		t.Errorf("delete --cascade: %v", cs)
	}
	if _, err := store.App(name); err == nil {
		t.Error("app still stored")
	}
	if c.get(gvrCM, ns, "fjord-inventory."+name) != nil {
		t.Error("inventory ConfigMap left behind")
	}
}

// Removing the tracking label takes the object out of the watch, which
// reports it as deleted; fjord sees it is still there and puts the label
// back, recording the label as the drifted field. (Who removed it cannot
// be told: a manager left owning no field drops out of managedFields.)
func TestTrackingLabelRemovedIsDrift(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{"app/cms.yaml": twoConfigMaps})
	name := "label-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	c.kubectl("-n", ns, "label", "configmap", "keep", reconciler.LabelApp+"-")
	eventually(t, "the label back", func() (bool, string) {
		l := c.get(gvrCM, ns, "keep").GetLabels()
		return l[reconciler.LabelApp] == name, fmt.Sprint(l)
	})
	eventually(t, "the drift recorded", func() (bool, string) {
		ds, _ := store.AppDrifts(name, 5)
		return len(ds) == 1 && !ds[0].Deleted && ds[0].Action == "reverted" && strings.Contains(strings.Join(ds[0].Fields, ","), "metadata.labels.fjord.dev/app"), fmt.Sprintf("%+v", ds)
	})
}

// Pruning a namespace would delete everything in it, so fjord prunes one
// only when all it holds is the app's own.
func TestPruneNamespaceOnlyWhenAllItHoldsIsTheApps(t *testing.T) {
	c := newCluster(t)
	base := c.env.Namespace(t)
	suffix := base[len(base)-6:]
	nsA, nsB := "prune-ns-a-"+suffix, "prune-ns-b-"+suffix
	files := map[string]string{}
	for _, ns := range []string{nsA, nsB} {
		files["app/"+ns+".yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: %s\n", ns, ns)
	}
	files["app/keep.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n"
	_, store, w, rec, _ := setup(t, files)
	name := "prune-ns-" + suffix
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", base, true, true)); err != nil {
		t.Fatal(err)
	}
	c.kubectl("-n", nsB, "create", "configmap", "unmanaged", "--from-literal=k=v")
	w.remove("app/" + nsA + ".yaml")
	w.remove("app/" + nsB + ".yaml")
	commit := w.commit("drop both namespaces")
	eventually(t, "the prune", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Revision == commit && st.SyncedCommit == commit, fmt.Sprintf("%+v", st)
	})
	if n := c.get(gvrNS, "", nsA); n != nil && n.GetDeletionTimestamp() == nil {
		t.Errorf("%s, holding only the app's objects, was not pruned", nsA)
	}
	if n := c.get(gvrNS, "", nsB); n == nil || n.GetDeletionTimestamp() != nil {
		t.Errorf("%s, holding an unmanaged ConfigMap, was pruned", nsB)
	}
	st := appStatus(t, store, name)
	if len(st.Orphans) != 1 || !strings.Contains(st.Orphans[0], nsB) {
		t.Errorf("orphans: %v", st.Orphans)
	}
}
