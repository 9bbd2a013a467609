package main_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fjord app validate needs no server: the corpus is all ok, the refused
// corpus exits 1 with every problem under its document's line.
func TestAppValidateCorpus(t *testing.T) {
	s := newSession(t)
	corpus := filepath.Join("..", "..", "reconciler", "testdata", "applications")
	out, err := s.fjord("app", "validate", "-f", corpus)
	if err != nil {
		t.Fatalf("validate the corpus: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 33 {
		t.Fatalf("validate printed %d lines, want one per document (at least 33):\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, ": ok") {
			t.Errorf("not ok: %s", l)
		}
	}

	out, err = s.fjord("app", "validate", "-f", filepath.Join(corpus, "refused"))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("validate of refused documents: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{
		"helm-values.yaml#1 Application api-dev: refused",
		"helm-pass-credentials.yaml#1 Application helm-pass-credentials: refused\n  - spec.source.helm.passCredentials: true",
		"typos.yaml#1 Application typo: refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}

// A directory of Applications and an AppProject applied in one go; the
// project then bounds its apps, and may not be deleted while they use it.
func TestAppApplyDirAndProjects(t *testing.T) {
	env := startKube(t)
	s := newSession(t)
	s.start("--admin-key", s.key+".pub", "--kubeconfig", env.Kubeconfig())
	s.mustFjord("repo", "create", "gitops")
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)
	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/gitops.git", work)
	os.WriteFile(filepath.Join(work, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"), 0o644)
	s.mustGit(work, "add", ".")
	s.mustGit(work, "commit", "-q", "-m", "one")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")

	dir := filepath.Join(s.dir, "apps")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "project.yaml"), []byte(`apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: team
spec:
  sourceRepos: ['*']
  destinations:
  - server: https://kubernetes.default.svc
    namespace: 'team-*'
`), 0o644)
	manual := func(name, ns, labels string) string {
		return `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: ` + name + `
  labels:
` + labels + `spec:
  project: team
  source:
    repoURL: gitops
  destination:
    name: in-cluster
    namespace: ` + ns + `
  info:
  - name: owner
    value: team-a
`
	}
	os.WriteFile(filepath.Join(dir, "apps.yaml"), []byte(manual("web", "team-web", "    tier: front\n")+"---\n"+manual("db", "team-db", "    tier: back\n")), 0o644)
	out, err := s.fjord("app", "apply", "-f", dir)
	if err != nil {
		t.Fatalf("apply a directory: %v\n%s", err, out)
	}
	if !strings.Contains(out, "project team applied") || !strings.Contains(out, "app web applied") || !strings.Contains(out, "app db applied") {
		t.Fatalf("apply a directory:\n%s", out)
	}

	out = s.mustFjord("app", "list", "-l", "tier=front")
	if !strings.Contains(out, "web") || strings.Contains(out, "db ") {
		t.Errorf("app list -l tier=front:\n%s", out)
	}
	var apps []struct{ Name string }
	json.Unmarshal([]byte(s.mustFjord("app", "list", "-l", "tier in (front,back)", "-o", "json")), &apps)
	if len(apps) != 2 {
		t.Errorf("app list -l 'tier in (front,back)': %+v", apps)
	}
	out = s.mustFjord("app", "get", "web")
	for _, want := range []string{"Project:       team", "tier=front", "owner: team-a"} {
		if !strings.Contains(out, want) {
			t.Errorf("app get lacks %q:\n%s", want, out)
		}
	}

	// Outside the project's destinations: refused, naming the rule.
	os.WriteFile(filepath.Join(s.dir, "outside.yaml"), []byte(manual("outside", "kube-system", "    tier: x\n")), 0o644)
	if out, err := s.fjord("app", "apply", "-f", filepath.Join(s.dir, "outside.yaml")); err == nil || !strings.Contains(out, "destinations") {
		t.Errorf("an app outside its project: %v\n%s", err, out)
	}

	if out := s.mustFjord("project", "list"); !strings.Contains(out, "team") {
		t.Errorf("project list:\n%s", out)
	}
	if out := s.mustFjord("project", "get", "team"); !strings.Contains(out, "db, web") {
		t.Errorf("project get does not name its apps:\n%s", out)
	}
	if out, err := s.fjord("project", "delete", "team"); err == nil || !strings.Contains(out, "db") || !strings.Contains(out, "web") {
		t.Errorf("project delete while in use: %v\n%s", err, out)
	}
	// The repo the apps use is not deleted without --force.
	if out, err := s.fjord("repo", "delete", "gitops"); err == nil || !strings.Contains(out, "db, web") || !strings.Contains(out, "--force") {
		t.Errorf("repo delete of a repo apps use: %v\n%s", err, out)
	}
	// Nor is a mirror's repo that an app uses, by deleting the mirror.
	s.mustFjord("mirror", "add", "copy", "--upstream", "file://"+filepath.Join(s.data, "repos", "gitops.git"))
	os.WriteFile(filepath.Join(s.dir, "oncopy.yaml"), []byte(strings.Replace(manual("oncopy", "team-copy", "    tier: x\n"), "repoURL: gitops", "repoURL: copy", 1)), 0o644)
	s.mustFjord("app", "apply", "-f", filepath.Join(s.dir, "oncopy.yaml"))
	if out, err := s.fjord("mirror", "delete", "copy"); err == nil || !strings.Contains(out, "oncopy") || !strings.Contains(out, "--keep-repo") || !strings.Contains(out, "--force") {
		t.Errorf("mirror delete of a repo an app uses: %v\n%s", err, out)
	}
	if out := s.mustFjord("mirror", "list"); !strings.Contains(out, "copy") {
		t.Errorf("a refused mirror delete removed the mirror:\n%s", out)
	}
	s.mustFjord("mirror", "delete", "copy", "--force")
	if out := s.mustFjord("repo", "list"); strings.Contains(out, "copy") {
		t.Errorf("mirror delete --force kept the repo:\n%s", out)
	}
	s.mustFjord("app", "delete", "oncopy")
	s.mustFjord("app", "delete", "web")
	s.mustFjord("app", "delete", "db")
	s.mustFjord("project", "delete", "team")
	s.mustFjord("repo", "delete", "gitops")
}
