package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// argoApp is an Application of repo "gitops" with extra metadata and
// spec lines (already indented).
func argoApp(name, path, ns, metadata, spec string) []byte {
	return fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
%sspec:
  source:
    repoURL: gitops
    path: %s
  destination:
    name: in-cluster
    namespace: %s
  syncPolicy:
    automated:
      prune: true
%s`, name, metadata, path, ns, spec)
}

func TestDeleteFollowsTheFinalizer(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("keep/cm.yaml", cm("kept"))
	w.write("gone/cm.yaml", cm("deleted"))
	w.commit("two apps")
	rec, _ := c.start(store)
	ctx := context.Background()

	if _, err := rec.Apply(ctx, argoApp("keeper", "keep", ns, "  labels:\n    team: a\n", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Apply(ctx, argoApp("cascader", "gone", ns, "  finalizers:\n  - resources-finalizer.argocd.argoproj.io/background\n", "")); err != nil {
		t.Fatal(err)
	}
	if a, _ := store.App("keeper"); a.Labels["team"] != "a" || a.Project != "default" {
		t.Errorf("labels not stored: %+v", a.AppMeta)
	}
	if _, err := rec.Delete(ctx, "keeper", false); err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "kept") == nil {
		t.Error("an app without the finalizer took its objects with it")
	}
	cs, err := rec.Delete(ctx, "cascader", false)
	if err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "deleted") != nil || cs.Count(reconciler.Deleted) != 1 {
		t.Errorf("the resources finalizer did not cascade: %v", cs)
	}
}

func TestRetryFollowsTheBackoff(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("other/cm.yaml", cm("x"))
	w.commit("no app path yet")
	rec, _ := c.start(store)
	retry := "    retry:\n      limit: 2\n      backoff:\n        duration: 200ms\n        factor: 2\n        maxDuration: 1s\n"
	if _, err := rec.Apply(context.Background(), argoApp("retrier", "missing", ns, "", retry)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two retries, then none", func() (bool, string) {
		st := appStatus(t, store, "retrier")
		return st.Retry != nil && st.Retry.Attempt == 2 && st.Retry.Next.IsZero(), fmt.Sprintf("%+v", st.Retry)
	})
	h, _ := store.AppSyncs("retrier", 0)
	var triggers []string
	for _, s := range h {
		triggers = append(triggers, string(s.Trigger))
	}
	if strings.Join(triggers, ",") != "retry,retry,apply" {
		t.Errorf("history triggers (newest first) = %v", triggers)
	}

	// The fix lands: the next sync succeeds and the retry state goes.
	w.write("missing/cm.yaml", cm("y"))
	w.commit("add the path")
	eventually(t, "synced after the fix", func() (bool, string) {
		st := appStatus(t, store, "retrier")
		return st.Sync == storage.Synced && st.Retry == nil, fmt.Sprintf("%s %+v", st.Sync, st.Retry)
	})
}

func TestRevisionHistoryLimitAndNamespaceMetadata(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t) + "-made"
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("app/cm.yaml", cm("x"))
	w.commit("one")
	rec, _ := c.start(store)
	spec := "    syncOptions: [CreateNamespace=true]\n    managedNamespaceMetadata:\n      labels:\n        tier: web\n      annotations:\n        owner: team-a\n  revisionHistoryLimit: 2\n"
	if _, err := rec.Apply(context.Background(), argoApp("limited", "app", ns, "", spec)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.kubectl("delete", "namespace", ns, "--wait=false") })
	got := c.dyn.Resource(gvrNS)
	n, err := got.Get(context.Background(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.GetLabels()["tier"] != "web" || n.GetAnnotations()["owner"] != "team-a" {
		t.Errorf("namespace metadata: labels %v annotations %v", n.GetLabels(), n.GetAnnotations())
	}
	for range 3 {
		if _, err := rec.Sync(context.Background(), "limited", reconciler.SyncOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if h, _ := store.AppSyncs("limited", 0); len(h) != 2 {
		t.Errorf("history holds %d syncs, want 2 (revisionHistoryLimit)", len(h))
	}
}

func TestProjectRefusesKindsAndDestinations(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("app/cm.yaml", cm("ordinary"))
	w.write("app/role.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: "+ns+"-reader\nrules: []\n")
	w.commit("an app with a ClusterRole")
	rec, _ := c.start(store)
	ctx := context.Background()
	project := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: team
spec:
  sourceRepos: ['*']
  destinations:
  - name: in-cluster
    namespace: '%s'
  namespaceResourceWhitelist:
  - group: ''
    kind: ConfigMap
`, ns)
	if _, err := rec.ApplyProject([]byte(project)); err != nil {
		t.Fatal(err)
	}

	// Outside the project's destinations: refused at apply.
	_, err := rec.Apply(ctx, argoApp("elsewhere", "app", "kube-system", "", "  project: team\n"))
	if !errors.Is(err, reconciler.ErrInvalidApp) || !strings.Contains(err.Error(), "destinations") {
		t.Errorf("a destination outside the project: %v", err)
	}
	// A project that does not exist: refused at apply.
	_, err = rec.Apply(ctx, argoApp("nowhere", "app", ns, "", "  project: nope\n"))
	if !errors.Is(err, reconciler.ErrInvalidApp) || !strings.Contains(err.Error(), `project "nope" does not exist`) {
		t.Errorf("a missing project: %v", err)
	}

	a, err := rec.Apply(ctx, argoApp("team-app", "app", ns, "", "  project: team\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != storage.SyncError || !strings.Contains(a.Status.Error, "ClusterRole") || !strings.Contains(a.Status.Error, "clusterResourceWhitelist") {
		t.Errorf("status %s: %s", a.Status.Sync, a.Status.Error)
	}
	if c.get(gvrCM, ns, "ordinary") != nil {
		t.Error("a refused render was partly applied")
	}
	if err := store.DeleteProject("team"); !errors.Is(err, storage.ErrProjectInUse) || !strings.Contains(err.Error(), "team-app") {
		t.Errorf("delete of a project in use: %v", err)
	}
}

// childApp is a child Application of the app-of-apps test.
func childApp(name, path, ns string, wave int) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
  annotations:
    argocd.argoproj.io/sync-wave: "%d"
  finalizers:
  - resources-finalizer.argocd.argoproj.io/background
spec:
  project: default
  source:
    repoURL: gitops
    path: %s
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated:
      prune: true
`, name, wave, path, ns)
}

func TestAppOfApps(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("apps/first.yaml", childApp("first-"+ns[len(ns)-6:], "first", ns, 1))
	w.write("apps/second.yaml", childApp("second-"+ns[len(ns)-6:], "second", ns, 2))
	w.write("first/cm.yaml", cm("first"))
	w.write("second/cm.yaml", cm("second"))
	w.commit("a fleet")
	first, second := "first-"+ns[len(ns)-6:], "second-"+ns[len(ns)-6:]
	rec, stop := c.start(store)
	// The CRD of Applications is not installed: the documents must never
	// be sent to the cluster.
	root, err := rec.Apply(context.Background(), argoApp("root-"+ns[len(ns)-6:], "apps", ns, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if root.Status.Sync != storage.Synced {
		t.Fatalf("root: %s %s", root.Status.Sync, root.Status.Error)
	}
	for _, n := range []string{first, second} {
		a, err := store.App(n)
		if err != nil || a.Parent != root.Name {
			t.Fatalf("child %s: %+v %v", n, a.AppMeta, err)
		}
	}
	if c.get(gvrCM, ns, "first") == nil || c.get(gvrCM, ns, "second") == nil {
		t.Fatal("the children's objects were not applied")
	}
	// Wave order: first (wave 1) was synced before second (wave 2).
	h1, _ := store.AppSyncs(first, 1)
	h2, _ := store.AppSyncs(second, 1)
	if len(h1) != 1 || len(h2) != 1 || !h1[0].Start.Before(h2[0].Start) || h1[0].Trigger != storage.TriggerParent {
		t.Errorf("children synced out of wave order: %+v %+v", h1, h2)
	}

	w.remove("apps/second.yaml")
	w.commit("drop second")
	eventually(t, "the dropped child is deleted with its objects", func() (bool, string) {
		_, err := store.App(second)
		return errors.Is(err, storage.ErrNotFound) && c.get(gvrCM, ns, "second") == nil, fmt.Sprint(err)
	})
	if a, err := store.App(first); err != nil || a.Parent != root.Name || c.get(gvrCM, ns, "first") == nil {
		t.Errorf("the other child was touched: %+v %v", a.AppMeta, err)
	}

	// A restarted reconciler knows root from the store as a parent: when
	// git drops its last child, a sync that declares none still prunes it.
	stop()
	c.start(store)
	w.remove("apps/first.yaml")
	w.write("apps/cm.yaml", cm("root-own")) // the path must stay
	w.commit("drop the last child")
	eventually(t, "the last child is deleted after a restart", func() (bool, string) {
		_, err := store.App(first)
		return errors.Is(err, storage.ErrNotFound) && c.get(gvrCM, ns, "first") == nil, fmt.Sprint(err)
	})
}

func TestDirectorySource(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("dir/top.yaml", cm("top"))
	w.write("dir/sub/deep.yaml", cm("deep"))
	w.write("dir/sub/skip.yaml", cm("skip"))
	w.write("dir/values.json", `{"not": "a kubernetes object"}`)
	w.commit("a directory")
	rec, _ := c.start(store)
	doc := strings.Replace(string(argoApp("dir", "dir", ns, "", "")), "    path: dir\n", "    path: dir\n    directory:\n      recurse: true\n      include: '*.yaml'\n      exclude: '{sub/skip.yaml,nothing}'\n", 1)
	a, err := rec.Apply(context.Background(), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != storage.Synced {
		t.Fatalf("%s: %s", a.Status.Sync, a.Status.Error)
	}
	if c.get(gvrCM, ns, "top") == nil || c.get(gvrCM, ns, "deep") == nil || c.get(gvrCM, ns, "skip") != nil {
		t.Errorf("recurse/include/exclude: top %v deep %v skip %v", c.get(gvrCM, ns, "top") != nil, c.get(gvrCM, ns, "deep") != nil, c.get(gvrCM, ns, "skip") != nil)
	}
}
