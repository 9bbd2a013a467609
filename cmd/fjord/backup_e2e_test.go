package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestBackupRestore backs up a serving fjord (repos, a pull mirror with a
// webhook secret, users, grants, an app), once at rest and once under a
// stream of pushes, restores each onto a fresh data dir and checks that
// the restored server serves the same refs, users, grants, apps and host
// key over real SSH.
func TestBackupRestore(t *testing.T) {
	env := startKube(t)
	s := newSession(t)
	s.start("--admin-key", s.key+".pub", "--kubeconfig", env.Kubeconfig())
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)

	s.mustFjord("repo", "create", "team/app")
	ciKey := writeKey(t, filepath.Join(s.home, "ci"))
	s.mustFjord("user", "add", "ci", "--key", ciKey+".pub")
	s.mustFjord("grant", "ci", "team/app", "write")
	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/team/app.git", work)
	commit := func(msg string) {
		os.WriteFile(filepath.Join(work, "deploy.yaml"), []byte(configMap(msg)), 0o644)
		s.mustGit(work, "add", ".")
		s.mustGit(work, "commit", "-q", "-m", msg)
	}
	commit("v1")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")
	s.mustGit(work, "tag", "-a", "-m", "release", "v1")
	s.mustGit(work, "push", "-q", "origin", "v1")

	upstream := filepath.Join(s.dir, "upstream.git")
	s.mustGit("", "clone", "-q", "--bare", work, upstream)
	secret := filepath.Join(s.dir, "hook-secret")
	os.WriteFile(secret, []byte("backup-test-webhook-secret"), 0o600)
	s.mustFjord("mirror", "add", "up", "--upstream", "file://"+upstream, "--webhook-secret-file", secret)

	_, port, _ := net.SplitHostPort(s.ssh)
	appFile := filepath.Join(s.dir, "app.yaml")
	os.WriteFile(appFile, []byte(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: backup-app
  namespace: argocd
spec:
  project: default
  source:
    repoURL: ssh://git@127.0.0.1:`+port+`/team/app.git
    targetRevision: HEAD
    path: .
  destination:
    server: https://kubernetes.default.svc
    namespace: backup-test
  syncPolicy:
    syncOptions:
    - CreateNamespace=true
`), 0o644)
	s.mustFjord("app", "apply", "-f", appFile)

	// At rest: the restored server is the same server.
	bak := filepath.Join(s.dir, "backups", "b1")
	os.MkdirAll(filepath.Dir(bak), 0o700)
	out := s.mustFjord("backup", "--to", bak)
	if !strings.Contains(out, "repo 1/2 team/app") || !strings.Contains(out, "backup written to "+bak+": 2 repos") || !strings.Contains(out, "host key true") {
		t.Fatalf("backup output: %q", out)
	}
	if out, err := s.fjord("backup", "--to", bak); err == nil || !strings.Contains(out, "already exists") {
		t.Fatalf("backup onto an existing dir: %v %q", err, out)
	}
	checkModes(t, bak)
	want := s.state(t)
	wantRefs := s.lsRemote(t, "team/app")

	restored := filepath.Join(s.dir, "restored")
	os.MkdirAll(restored, 0o700)
	os.WriteFile(filepath.Join(restored, "junk"), nil, 0o600)
	if out, err := s.fjord("--data", restored, "restore", "--from", bak); err == nil || !strings.Contains(out, "not empty") {
		t.Fatalf("restore onto a non-empty dir: %v %q", err, out)
	}
	os.Remove(filepath.Join(restored, "junk"))
	if out := s.mustFjord("--data", restored, "restore", "--from", bak); !strings.Contains(out, "restored 2 repos") {
		t.Fatalf("restore: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(restored, "credentials", "mirror", "up", "webhook_secret")); err != nil || string(b) != "backup-test-webhook-secret" {
		t.Fatalf("webhook secret after restore: %q %v", b, err)
	}
	r := &session{t: t, dir: t.TempDir(), data: restored, home: s.home, key: s.key}
	r.start("--kubeconfig", env.Kubeconfig())
	r.trustHostKey(t)
	if got := r.state(t); got != want {
		t.Fatalf("restored server differs:\n got %s\nwant %s", got, want)
	}
	if got := r.lsRemote(t, "team/app"); got != wantRefs {
		t.Fatalf("restored refs:\n%s\nwant\n%s", got, wantRefs)
	}
	clone := filepath.Join(r.dir, "clone")
	r.mustGit("", "clone", "-q", "ssh://"+r.ssh+"/team/app.git", clone)
	r.mustGit(clone, "fsck", "--strict")
	r.stop()

	// Under a stream of pushes: the backup is one of the states served,
	// its refs are exactly what the restored server serves, fsck-clean.
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		stop  = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			commit(fmt.Sprintf("v%d", i+2))
			if _, err := s.git(work, "push", "-q", "origin", "HEAD:main"); err == nil {
				mu.Lock()
				acked[s.mustGit(work, "rev-parse", "HEAD")] = true
				mu.Unlock()
			}
		}
	}()
	bak2 := filepath.Join(s.dir, "backups", "b2")
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 2 {
			break
		}
	}
	s.mustFjord("backup", "--to", bak2)
	close(stop)
	<-done

	restored2 := filepath.Join(s.dir, "restored2")
	s.mustFjord("--data", restored2, "restore", "--from", bak2)
	var m struct {
		Repos []struct {
			Name string
			Refs []struct{ Name, Hash string }
		}
	}
	raw, _ := os.ReadFile(filepath.Join(bak2, "backup.json"))
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var manifest strings.Builder
	for _, repo := range m.Repos {
		if repo.Name != "team/app" {
			continue
		}
		for _, ref := range repo.Refs {
			fmt.Fprintf(&manifest, "%s\t%s\n", ref.Hash, ref.Name)
			if ref.Name == "refs/heads/main" && !acked[ref.Hash] {
				t.Errorf("backup under load holds main = %s, which no acknowledged push wrote", ref.Hash)
			}
		}
	}
	r2 := &session{t: t, dir: t.TempDir(), data: restored2, home: s.home, key: s.key}
	r2.start()
	r2.trustHostKey(t)
	if got := r2.lsRemote(t, "team/app"); got != manifest.String() {
		t.Fatalf("restored refs under load:\n%s\nmanifest:\n%s", got, manifest.String())
	}
	clone2 := filepath.Join(r2.dir, "clone")
	r2.mustGit("", "clone", "-q", "ssh://"+r2.ssh+"/team/app.git", clone2)
	r2.mustGit(clone2, "fsck", "--strict")
}

func configMap(version string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: release\ndata:\n  version: " + version + "\n"
}

// state is what a restore must keep, as the CLI shows it.
func (s *session) state(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"repo", "list"}, {"user", "list"}, {"grant", "list"}, {"mirror", "list", "-o", "json"}, {"app", "list", "-o", "json"}} {
		out := s.mustFjord(args...)
		if args[0] == "mirror" {
			// Sync status moves on by itself; the configuration must not.
			var ms []struct{ Repo, Upstream, Credentials any }
			json.Unmarshal([]byte(out), &ms)
			j, _ := json.Marshal(ms)
			out = string(j)
		}
		if args[0] == "app" {
			var as []struct {
				Name     string
				Manifest string
			}
			json.Unmarshal([]byte(out), &as)
			j, _ := json.Marshal(as)
			out = string(j)
		}
		fmt.Fprintf(&b, "%s:\n%s\n", strings.Join(args, " "), out)
	}
	fmt.Fprintf(&b, "hostkey: %s\n", lastLine(s.mustFjord("hostkey", "--port", "1")))
	return b.String()
}

// lsRemote is what a client sees of a repo.
func (s *session) lsRemote(t *testing.T, repo string) string {
	t.Helper()
	out := s.mustGit("", "ls-remote", "ssh://"+s.ssh+"/"+repo+".git")
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasSuffix(l, "^{}") && !strings.HasSuffix(l, "\tHEAD") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// checkModes fails if anything in a backup is readable by others.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if fi.IsDir() && fi.Mode().Perm() != 0o700 || !fi.IsDir() && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0700/0600", p, fi.Mode().Perm())
		}
		return nil
	})
}

// trustHostKey adds the server's known_hosts line (its port is new) to the
// shared HOME's known_hosts.
func (s *session) trustHostKey(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(s.home, "known_hosts"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, lastLine(s.mustFjord("hostkey")))
}
