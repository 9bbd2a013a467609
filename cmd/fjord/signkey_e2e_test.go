package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSignKeyCLI is signed commits as an operator sets them up: fjord
// signkey add of CI's SSH signing key, a project requiring it, commits
// pushed over SSH with git commit -S (gpg.format=ssh). The signed commit
// is applied; an unsigned one is refused and `fjord app get` says which
// commit and why; the key cannot be deleted while the project names it.
func TestSignKeyCLI(t *testing.T) {
	env := startKube(t)
	s := newSession(t)
	s.start("--admin-key", s.key+".pub", "--kubeconfig", env.Kubeconfig())

	signing := filepath.Join(s.home, "signing")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@x", "-f", signing).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	fpOut, err := exec.Command("ssh-keygen", "-lf", signing+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	fpr := strings.Fields(string(fpOut))[1]

	// Bad input: a private key, a missing file.
	if out, err := s.fjord("signkey", "add", "ci", "--file", signing); err == nil || !strings.Contains(out, "holds a private key") {
		t.Errorf("signkey add of a private key: %v\n%s", err, out)
	}
	if out, err := s.fjord("signkey", "add", "ci", "--file", signing+".nope"); err == nil || !strings.Contains(out, "no such file") {
		t.Errorf("signkey add of a missing file: %v\n%s", err, out)
	}
	if out := s.mustFjord("signkey", "add", "ci", "--file", signing+".pub"); !strings.Contains(out, fpr) || !strings.Contains(out, "keyID: "+fpr) {
		t.Fatalf("signkey add:\n%s", out)
	}
	var keys []struct{ Name, Type, Fingerprint string }
	json.Unmarshal([]byte(s.mustFjord("signkey", "list", "-o", "json")), &keys)
	if len(keys) != 1 || keys[0].Name != "ci" || keys[0].Type != "ssh" || keys[0].Fingerprint != fpr {
		t.Fatalf("signkey list -o json: %+v", keys)
	}
	if out := s.mustFjord("signkey", "list"); !strings.Contains(out, "ci") || !strings.Contains(out, fpr) {
		t.Errorf("signkey list:\n%s", out)
	}

	s.mustFjord("repo", "create", "gitops")
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)
	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/gitops.git", work)
	push := func(value string, sign bool) string {
		t.Helper()
		os.WriteFile(filepath.Join(work, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: signed\ndata:\n  v: \""+value+"\"\n"), 0o644)
		s.mustGit(work, "add", ".")
		if sign {
			s.mustGit(work, "-c", "gpg.format=ssh", "-c", "user.signingKey="+signing, "commit", "-S", "-q", "-m", value)
		} else {
			s.mustGit(work, "commit", "-q", "-m", value)
		}
		s.mustGit(work, "push", "-q", "origin", "HEAD:main")
		return s.mustGit(work, "rev-parse", "HEAD")
	}
	good := push("1", true)

	project := filepath.Join(s.dir, "project.yaml")
	os.WriteFile(project, []byte(`apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: signed
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  signatureKeys:
  - keyID: ci
`), 0o644)
	s.mustFjord("project", "apply", "-f", project)
	ns := env.Namespace(t)
	app := filepath.Join(s.dir, "app.yaml")
	os.WriteFile(app, []byte(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
spec:
  project: signed
  source:
    repoURL: gitops
  destination:
    name: in-cluster
    namespace: `+ns+`
  syncPolicy:
    automated: {}
`), 0o644)
	if out := s.mustFjord("app", "apply", "-f", app); !strings.Contains(out, "Synced") || !strings.Contains(out, good[:12]) {
		t.Fatalf("app apply of a signed commit:\n%s", out)
	}

	bad := push("2", false)
	var out string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out = s.mustFjord("app", "get", "web")
		if strings.Contains(out, "Refused:       commit "+bad[:12]) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"Refused:       commit " + bad[:12], "project signed requires a trusted signature, but the commit is not signed", "Synced commit: " + good, "Sync:          Error"} {
		if !strings.Contains(out, want) {
			t.Errorf("app get after an unsigned push lacks %q:\n%s", want, out)
		}
	}
	if out, err := s.fjord("app", "sync", "web"); err == nil || !strings.Contains(out, bad[:12]) || !strings.Contains(out, "not signed") {
		t.Errorf("app sync of an unsigned commit: %v\n%s", err, out)
	}

	if out, err := s.fjord("signkey", "delete", "ci"); err == nil || !strings.Contains(out, "project signed") {
		t.Errorf("signkey delete of a key a project names: %v\n%s", err, out)
	}
	s.mustFjord("app", "delete", "web")
	s.mustFjord("project", "delete", "signed")
	s.mustFjord("signkey", "delete", "ci")
	if out := s.mustFjord("signkey", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("signkey list after delete: %s", out)
	}
}
