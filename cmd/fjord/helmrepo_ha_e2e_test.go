package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/internal/fjordtest"
)

// TestPromotedReplicaRendersKeptChart runs a group of two `fjord serve
// --ha`: the primary renders an app from a chart in a Helm repository,
// which then stops; the primary is killed. The replica, promoted, renders
// the app again (its ConfigMap deleted by hand) from the chart archive it
// was sent, though it never read the repository's index and cannot now.
func TestPromotedReplicaRendersKeptChart(t *testing.T) {
	env := startKube(t)
	ns := env.Namespace(t)
	// --sync-replicas 0: b alone takes writes (a manual sync) after a
	// dies; the test waits for b to hold a's position itself.
	g := fjordtest.NewGroup(t, env.Kubeconfig(), ns, 0, "a", "b")
	if err := g.Start("a"); err != nil {
		t.Fatal(err)
	}
	if p, err := g.WaitPrimary("a", "", time.Minute); err != nil || p != "a" {
		t.Fatalf("primary %q, %v; want a", p, err)
	}
	if err := g.Start("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.WaitWritable("a", time.Minute); err != nil {
		t.Fatal(err)
	}
	a, b := g.Members["a"], g.Members["b"]

	repo := helmrepotest.NewServer(t, helmrepotest.Options{})
	for _, v := range []string{"1.0.0", "1.4.2", "2.0.0"} {
		repo.Publish(helmrepotest.Chart("hello", v))
	}
	app := filepath.Join(t.TempDir(), "app.yaml")
	os.WriteFile(app, fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: kept-chart
spec:
  source:
    repoURL: %s
    chart: hello
    targetRevision: ^1.0
    helm:
      releaseName: web
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated:
      selfHeal: true
`, repo.URL(), ns), 0o644)
	if out, err := a.Fjord("app", "apply", "-f", app); err != nil {
		t.Fatalf("app apply: %v\n%s", err, out)
	}
	cmVersion := func() string {
		resp, err := env.HTTPClient().Get(env.URL() + "/api/v1/namespaces/" + ns + "/configmaps/web-hello")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		var cm struct{ Data map[string]string }
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&cm) != nil {
			return resp.Status
		}
		return cm.Data["version"]
	}
	waitFor := func(what string, ok func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			done, last := ok()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %s\nprimary a: %s\nreplica b: %s", what, last, a.Log(), b.Log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("web-hello rendered by a from chart 1.4.2", func() (bool, string) {
		v := cmVersion()
		return v == "1.4.2", v
	})
	// b holds a's changes, the kept chart's among them.
	waitFor("b holds a's position", func() (bool, string) {
		st, err := g.Status("a")
		if err != nil {
			return false, err.Error()
		}
		pos := map[string]uint64{}
		for _, m := range st.Members {
			pos[m.ID] = m.Position
		}
		return pos["a"] > 0 && pos["a"] == pos["b"], fmt.Sprint(pos)
	})
	kept, _ := filepath.Glob(filepath.Join(b.Data, "helm", "*", "charts", "hello-1.4.2.tgz"))
	if len(kept) != 1 {
		t.Fatalf("replica b keeps %v, want the chart hello-1.4.2.tgz", kept)
	}
	if idx, _ := filepath.Glob(filepath.Join(b.Data, "helm", "*", "index.yaml")); len(idx) != 0 {
		t.Fatalf("replica b holds the index %v: the test would not show rendering without one", idx)
	}

	repo.Close()
	a.Kill()
	if p, err := g.WaitPrimary("b", "a", time.Minute); err != nil || p != "b" {
		t.Fatalf("primary after a was killed: %q, %v; want b", p, err)
	}
	req, _ := http.NewRequest(http.MethodDelete, env.URL()+"/api/v1/namespaces/"+ns+"/configmaps/web-hello", nil)
	resp, err := env.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delete web-hello: %s", resp.Status)
	}
	if _, err := g.WaitWritable("b", time.Minute); err != nil {
		t.Fatal(err)
	}
	// b may not have started its reconciler the moment it takes writes:
	// ask until it syncs.
	waitFor("b syncs the app with the Helm repository down", func() (bool, string) {
		out, err := b.Fjord("app", "sync", "kept-chart")
		return err == nil, strings.TrimSpace(out)
	})
	waitFor("web-hello rendered by b from the kept chart", func() (bool, string) {
		v := cmVersion()
		return v == "1.4.2", v
	})
}
