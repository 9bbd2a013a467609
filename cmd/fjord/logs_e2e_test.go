package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSuccessfulSyncsLogNoNilError checks the serve log of an app sync and
// a mirror sync that succeed: neither carries err=<nil>.
func TestSuccessfulSyncsLogNoNilError(t *testing.T) {
	env := startKube(t)
	s := newSession(t)
	s.start("--admin-key", s.key+".pub", "--kubeconfig", env.Kubeconfig(), "--log-level", "debug")
	if strings.Contains(s.welcome(), "reconciler is off") {
		t.Errorf("welcome with --kubeconfig says the reconciler is off:\n%s", s.welcome())
	}
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)
	s.mustFjord("repo", "create", "cfg")
	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/cfg.git", work)
	os.WriteFile(filepath.Join(work, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  a: b\n"), 0o644)
	s.mustGit(work, "add", ".")
	s.mustGit(work, "commit", "-q", "-m", "cm")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")
	app := filepath.Join(s.dir, "app.yaml")
	os.WriteFile(app, []byte(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: hello
spec:
  project: default
  source:
    repoURL: cfg
    targetRevision: HEAD
    path: .
  destination:
    server: https://kubernetes.default.svc
    namespace: hello
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
`), 0o644)
	s.mustFjord("app", "apply", "-f", app)
	up := filepath.Join(s.dir, "up.git")
	s.mustGit("", "clone", "-q", "--bare", work, up)
	s.mustFjord("mirror", "add", "copy", "--upstream", "file://"+up)
	s.mustFjord("mirror", "sync", "copy")

	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(s.serveLog(), `msg="app synced" app=hello`) {
		if time.Now().After(deadline) {
			t.Fatalf("no app synced line in the serve log:\n%s", s.serveLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range strings.Split(s.serveLog(), "\n") {
		if strings.Contains(l, "err=<nil>") || strings.Contains(l, `err="<nil>"`) {
			t.Errorf("a log line with err=<nil>: %s", l)
		}
	}
}
