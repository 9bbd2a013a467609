package mirror_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// TestPushMirror delivers a hosted repo to a real smart-HTTP remote after
// each change, and retries after the remote was down.
func TestPushMirror(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	remoteRoot := t.TempDir()
	git(t, "", "init", "-q", "--bare", filepath.Join(remoteRoot, "dr.git"))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	srv := &http.Server{Handler: newCGI(t, remoteRoot)}
	go srv.Serve(l)

	if _, err := f.store.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	// Commits land in the hosted repo the way a push does: objects and
	// refs on disk, then a snapshot refresh that notifies.
	work := newUpstream(t, t.TempDir(), "work")
	deliver := func() string {
		git(t, work.work, "push", "-q", "--force", f.store.RepoPath("app"), "main", "--tags")
		if _, err := f.store.RefreshRefs(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		return git(t, work.work, "rev-parse", "HEAD")
	}
	deliver()
	remote := "http://" + addr + "/dr.git"
	p, err := f.mgr.AddPush(ctx, storage.PushMirror{Repo: "app", Remote: remote, Interval: time.Hour}, nil)
	if err != nil || p.LastError != "" {
		t.Fatalf("add push mirror: %+v %v", p, err)
	}
	remoteRefs := func() string {
		return git(t, "", "--git-dir", filepath.Join(remoteRoot, "dr.git"), "for-each-ref", "--format=%(objectname) %(refname)")
	}
	if remoteRefs() != f.localRefs("app") {
		t.Fatalf("first push did not deliver:\n%s\n%s", remoteRefs(), f.localRefs("app"))
	}

	// Every accepted change is pushed, tags and deletions included.
	work.commit()
	git(t, work.work, "tag", "v1")
	deliver()
	waitFor(t, "the push mirror to deliver a new commit and tag", func() bool { return remoteRefs() == f.localRefs("app") })

	// Remote down: the push fails, is recorded, and retried with backoff.
	srv.Close()
	work.commit()
	head := deliver()
	waitFor(t, "the failure to be recorded", func() bool {
		ps, _ := f.store.PushMirrors("app")
		return len(ps) == 1 && ps[0].Failures > 0 && ps[0].LastError != ""
	})
	ps, _ := f.store.PushMirrors("app")
	if !strings.Contains(ps[0].LastError, "unreachable") && !strings.Contains(ps[0].LastError, "closed the connection") {
		t.Fatalf("error does not say the remote is unreachable: %q", ps[0].LastError)
	}
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv2 := &http.Server{Handler: newCGI(t, remoteRoot)}
	go srv2.Serve(l2)
	defer srv2.Close()
	waitFor(t, "the retry to deliver", func() bool {
		return strings.Contains(remoteRefs(), head+" refs/heads/main")
	})
	waitFor(t, "the status to clear", func() bool {
		ps, _ := f.store.PushMirrors("app")
		return ps[0].Failures == 0 && ps[0].LastError == "" && !ps[0].LastSuccess.IsZero()
	})
	if err := f.mgr.DeletePush(ctx, "app", remote); err != nil {
		t.Fatal(err)
	}
	if ps, _ := f.store.PushMirrors("app"); len(ps) != 0 {
		t.Fatalf("push mirror not deleted: %+v", ps)
	}
}

// TestPushToMirrorIsRefused serves a mirror over SSH with the manager as
// the gitserver's push guard: git push is refused, naming the upstream.
func TestPushToMirrorIsRefused(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	up := newUpstream(t, t.TempDir(), "up")
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "m", Upstream: "file://" + up.bare, Interval: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	hk, _ := gitserver.LoadOrCreateHostKey(filepath.Join(t.TempDir(), "hk"))
	srv, err := gitserver.New(ctx, gitserver.Config{Store: f.store, HostKey: hk, PushGuard: f.mgr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()
	home := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := gossh.MarshalPrivateKey(priv, "ci")
	keyPath := filepath.Join(home, "id")
	os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600)
	signer, _ := gossh.NewSignerFromKey(priv)
	k, _ := storage.ParseKey(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	f.store.CreateUser(storage.User{Name: "ci", Admin: true, Keys: []storage.Key{k}})
	kh := filepath.Join(home, "known_hosts")
	os.WriteFile(kh, []byte(gitserver.KnownHostsLine("127.0.0.1", l.Addr().(*net.TCPAddr).Port, hk.PublicKey())+"\n"), 0o600)

	before := f.localRefs("m")
	clone := filepath.Join(home, "clone")
	sshCmd := "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + kh + " -i " + keyPath
	run := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+home, "GIT_SSH_COMMAND="+sshCmd, "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@b", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@b")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	url := "ssh://" + l.Addr().String() + "/m.git"
	if out, err := run("", "clone", "-q", url, clone); err != nil {
		t.Fatalf("clone of mirror: %v %s", err, out)
	}
	run(clone, "commit", "-q", "--allow-empty", "-m", "x")
	out, err := run(clone, "push", "origin", "HEAD:main")
	if err == nil || !strings.Contains(out, `fjord: "m" is a read-only mirror of file://`+up.bare) {
		t.Fatalf("push to mirror: %v %q", err, out)
	}
	if f.localRefs("m") != before {
		t.Fatal("refused push changed the mirror")
	}
}
