package reconciler_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// renders reads fjord_app_renders_total for one app.
func renders(t *testing.T, reg *prometheus.Registry, app string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fjord_app_renders_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "app" && l.GetValue() == app {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// In a monorepo, a push re-renders only the apps whose inputs it touched;
// the others sync the new commit from their cached render. With
// manifest-generate-paths, only those paths count.
func TestPushRendersOnlyTheAppsItTouches(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("alpha/cm.yaml", cm("alpha"))
	w.write("beta/cm.yaml", cm("beta"))
	w.write("gamma/cm.yaml", cm("gamma"))
	w.write("trigger/version.txt", "1\n")
	w.commit("three apps")
	reg := prometheus.NewRegistry()
	rec, _ := c.start(store, func(cfg *reconciler.Config) { cfg.Registerer = reg })
	ctx := context.Background()
	for _, n := range []string{"alpha", "beta"} {
		if _, err := rec.Apply(ctx, argoApp(n, n, ns, "", "")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rec.Apply(ctx, argoApp("gamma", "gamma", ns, "  annotations:\n    argocd.argoproj.io/manifest-generate-paths: /trigger\n", "")); err != nil {
		t.Fatal(err)
	}
	synced := func(app, commit string) func() (bool, string) {
		return func() (bool, string) {
			st := appStatus(t, store, app)
			return st.SyncedCommit == commit && st.Sync == storage.Synced, fmt.Sprintf("%s %s %s", app, st.Sync, st.SyncedCommit)
		}
	}
	counts := func() [3]int {
		return [3]int{renders(t, reg, "alpha"), renders(t, reg, "beta"), renders(t, reg, "gamma")}
	}
	if got := counts(); got != [3]int{1, 1, 1} {
		t.Fatalf("renders after apply = %v, want one each", got)
	}

	w.sed("alpha/cm.yaml", "k: v", "k: changed")
	one := w.commit("touch alpha")
	for _, a := range []string{"alpha", "beta", "gamma"} {
		eventually(t, a+" at the new commit", synced(a, one))
	}
	if got := counts(); got != [3]int{2, 1, 1} {
		t.Errorf("renders after a push to alpha/ = %v, want [2 1 1]", got)
	}

	// A new file in a directory beta lists is an input of beta.
	w.write("beta/more.yaml", cm("beta-more"))
	two := w.commit("add to beta")
	for _, a := range []string{"alpha", "beta", "gamma"} {
		eventually(t, a+" at the second commit", synced(a, two))
	}
	if got := counts(); got != [3]int{2, 2, 1} || c.get(gvrCM, ns, "beta-more") == nil {
		t.Errorf("renders after a push adding beta/more.yaml = %v, want [2 2 1] (and beta-more applied)", got)
	}

	// gamma re-renders for /trigger only, as its annotation says.
	w.write("trigger/version.txt", "2\n")
	three := w.commit("bump the trigger")
	eventually(t, "gamma at the third commit", synced("gamma", three))
	if got := counts(); got != [3]int{2, 2, 2} {
		t.Errorf("renders after a push to trigger/ = %v, want [2 2 2]", got)
	}
}

// A repo deleted and created again: the next push reconciles its app.
func TestRepoRecreatedReconciles(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops", "")
	w.write("app/cm.yaml", cm("first"))
	w.commit("one")
	rec, _ := c.start(store)
	if _, err := rec.Apply(context.Background(), argoApp("phoenix", "app", ns, "", "")); err != nil {
		t.Fatal(err)
	}
	if apps, err := store.AppsUsingRepo("gitops"); err != nil || len(apps) != 1 || apps[0] != "phoenix" {
		t.Fatalf("AppsUsingRepo = %v %v", apps, err)
	}
	if err := store.DeleteRepo(context.Background(), "gitops"); err != nil {
		t.Fatal(err)
	}
	w2 := newWork(t, store, "gitops", "")
	w2.write("app/cm.yaml", cm("second"))
	again := w2.commit("born again")
	eventually(t, "the push to the new repo reconciled", func() (bool, string) {
		st := appStatus(t, store, "phoenix")
		return st.SyncedCommit == again && c.get(gvrCM, ns, "second") != nil, fmt.Sprintf("%s %s %s", st.Sync, st.SyncedCommit, st.Error)
	})
}
