package main_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/testenv"
)

// startKube starts a private kube-apiserver for one test. (This package's
// TestMain builds the binary and is not testenv.Main, so the shared Env is
// not used.)
func startKube(t *testing.T) *testenv.Env {
	t.Helper()
	if os.Getenv(testenv.EnvSkip) == "1" {
		t.Skipf("%s=1: skipping a test that needs kube-apiserver", testenv.EnvSkip)
	}
	env, err := testenv.Start(context.Background(), testenv.Options{})
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { env.Stop() })
	return env
}

// TestAppCLI is a GitOps session as an operator types it: the seed repo
// pushed over SSH, the seed Application applied with fjord's SSH URL, a
// CI push, drift, and every `fjord app` command.
func TestAppCLI(t *testing.T) {
	env := startKube(t)
	s := newSession(t)

	// Without a cluster the reconciler is off, and says so.
	s.start("--admin-key", s.key+".pub")
	if !strings.Contains(s.serveLog(), "reconciler off") {
		t.Fatalf("serve without a kubeconfig does not say the reconciler is off:\n%s", s.serveLog())
	}
	out, err := s.fjord("app", "sync", "x")
	if err == nil || !strings.Contains(out, "--kubeconfig") {
		t.Fatalf("app sync without a reconciler: %v %q", err, out)
	}
	s.stop()

	s.start("--kubeconfig", env.Kubeconfig())
	if !strings.Contains(s.serveLog(), "reconciler on") {
		t.Fatalf("serve with --kubeconfig:\n%s", s.serveLog())
	}
	line := lastLine(s.mustFjord("hostkey"))
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(line+"\n"), 0o600)
	s.mustFjord("repo", "create", "gitops-infra")
	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/gitops-infra.git", work)
	seed := filepath.Join("..", "..", "reconciler", "testdata", "seed")
	err = filepath.WalkDir(seed, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(seed, p)
		b, _ := os.ReadFile(p)
		os.MkdirAll(filepath.Join(work, filepath.Dir(rel)), 0o755)
		return os.WriteFile(filepath.Join(work, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.mustGit(work, "add", ".")
	s.mustGit(work, "commit", "-q", "-m", "seed")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")

	_, port, _ := net.SplitHostPort(s.ssh)
	app := `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: nordic-payment-gateway
  namespace: argocd
spec:
  project: default
  source:
    repoURL: ssh://git@127.0.0.1:` + port + `/gitops-infra.git
    targetRevision: HEAD
    path: overlays/prod
  destination:
    server: https://kubernetes.default.svc
    namespace: payments
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
    - CreateNamespace=true
`
	appFile := filepath.Join(s.dir, "app.yaml")
	os.WriteFile(appFile, []byte(app), 0o644)
	if out := s.mustFjord("app", "apply", "-f", appFile); !strings.Contains(out, "Synced") {
		t.Fatalf("app apply: %q", out)
	}

	// Refused fields are named.
	bad := filepath.Join(s.dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(app, "  project: default\n", "  project: default\n  sources:\n  - repoURL: gitops-infra\n  - repoURL: other\n", 1)), 0o644)
	if out, err := s.fjord("app", "apply", "-f", bad); err == nil || !strings.Contains(out, "spec.sources") {
		t.Fatalf("app apply with spec.sources: %v %q", err, out)
	}

	// CI pushes a new tag over SSH: applied without polling.
	kfile := filepath.Join(work, "overlays", "prod", "kustomization.yaml")
	b, _ := os.ReadFile(kfile)
	os.WriteFile(kfile, []byte(strings.Replace(string(b), "newTag: 1.4.2", "newTag: 1.4.3", 1)), 0o644)
	s.mustGit(work, "commit", "-q", "-am", "release 1.4.3")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")
	head := s.mustGit(work, "rev-parse", "HEAD")
	deadline := time.Now().Add(60 * time.Second)
	for {
		var apps []struct {
			Name   string `json:"name"`
			Status struct {
				SyncedCommit string `json:"syncedCommit"`
				Sync         string `json:"sync"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(s.mustFjord("app", "list", "-o", "json")), &apps); err != nil {
			t.Fatal(err)
		}
		if len(apps) == 1 && apps[0].Status.SyncedCommit == head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("push not applied: %+v", apps)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := s.mustFjord("app", "list"); !strings.Contains(out, "nordic-payment-gateway") || !strings.Contains(out, head[:12]) {
		t.Fatalf("app list: %q", out)
	}
	if out := s.mustFjord("app", "history", "nordic-payment-gateway"); !strings.Contains(out, "push") || !strings.Contains(out, "apply") {
		t.Fatalf("app history: %q", out)
	}
	if out := s.mustFjord("app", "get", "nordic-payment-gateway"); !strings.Contains(out, "Deployment.apps/payments/payment-gateway") {
		t.Fatalf("app get: %q", out)
	}
	if out := s.mustFjord("app", "get", "nordic-payment-gateway", "-o", "yaml"); !strings.Contains(out, "syncedCommit: "+head) {
		t.Fatalf("app get -o yaml: %q", out)
	}
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `fjord_app_sync_duration_seconds_count{cluster="in-cluster",outcome="ok",trigger="push"}`) {
		t.Errorf("/metrics lacks the push syncs:\n%s", metrics)
	}
	// In sync: diff prints nothing and exits 0.
	if out := s.mustFjord("app", "diff", "nordic-payment-gateway"); out != "" {
		t.Fatalf("app diff of a synced app: %q", out)
	}
	if out := s.mustFjord("app", "sync", "nordic-payment-gateway"); !strings.Contains(out, "0 changed") {
		t.Fatalf("app sync of a synced app: %q", out)
	}
	if out := s.mustFjord("app", "delete", "nordic-payment-gateway", "--cascade"); !strings.Contains(out, "deleted") {
		t.Fatalf("app delete --cascade: %q", out)
	}
	if out := s.mustFjord("app", "list"); strings.Contains(out, "nordic-payment-gateway") {
		t.Fatalf("app list after delete: %q", out)
	}
}
