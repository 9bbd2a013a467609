package reconciler_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/reconciler"
)

// An app whose source is a chart in a Helm repository (served over HTTP
// and packaged with the Helm SDK) syncs through the Helm repository
// mirror, and syncs again, after a restart, while that repository is down.
func TestChartFromMirroredHelmRepository(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	repo := helmrepotest.NewServer(t, helmrepotest.Options{})
	repo.Publish(helmrepotest.Chart("hello", "1.0.0"))
	repo.Publish(helmrepotest.Chart("hello", "1.4.2"))
	repo.Publish(helmrepotest.Chart("hello", "2.0.0"))
	newCharts := func() *helmrepo.Manager {
		m, err := helmrepo.New(helmrepo.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	name := "chart-" + ns[len(ns)-6:]
	app := fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
spec:
  source:
    repoURL: %s
    chart: hello
    targetRevision: ^1.0
    helm:
      releaseName: web
      values: |
        greeting: from the app
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
`, name, repo.URL(), ns)

	rec, stop := c.start(store, func(cfg *reconciler.Config) { cfg.Charts = newCharts() })
	if _, err := rec.Apply(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	cm := c.get(gvrCM, ns, "web-hello")
	if cm == nil || cmKey(cm, "version") != "1.4.2" || cmKey(cm, "greeting") != "from the app" {
		t.Fatalf("ConfigMap web-hello = %v; want version 1.4.2 (^1.0) and the app's greeting", cm)
	}
	if st := appStatus(t, store, name); st.Sync != "Synced" {
		t.Fatalf("status = %+v", st)
	}
	repos, err := store.HelmRepos()
	if err != nil || len(repos) != 1 || repos[0].URL != repo.URL() || !repos[0].Auto {
		t.Fatalf("helm repositories = %+v, %v; want the app's repository added by itself", repos, err)
	}

	// The repository goes down; fjord restarts (nothing in memory); the
	// ConfigMap is deleted by hand. A sync renders from the kept chart.
	repo.Close()
	stop()
	rec, _ = c.start(store, func(cfg *reconciler.Config) { cfg.Charts = newCharts() })
	c.kubectl("delete", "configmap", "web-hello", "-n", ns)
	if _, err := rec.Sync(context.Background(), name, reconciler.SyncOptions{Manual: true}); err != nil {
		t.Fatalf("sync with the Helm repository down: %v", err)
	}
	eventually(t, "web-hello back from the kept chart", func() (bool, string) {
		cm := c.get(gvrCM, ns, "web-hello")
		return cm != nil && cmKey(cm, "version") == "1.4.2", fmt.Sprintf("%v", cm)
	})
	if st := appStatus(t, store, name); st.Sync != "Synced" {
		t.Fatalf("status with the repository down = %+v", st)
	}
}
