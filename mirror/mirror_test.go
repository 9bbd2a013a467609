package mirror_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// sshUpstream is a second fjord serving over SSH: the mirror reaches it
// with a key and checks its host key against known_hosts.
type sshUpstream struct {
	url        string
	key        []byte // private key file content
	knownHosts []byte
	store      *storage.Store
}

func newSSHUpstream(t *testing.T, bareFrom string) *sshUpstream {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := storage.Open(ctx, filepath.Join(dir, "data"), &storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hk, err := gitserver.LoadOrCreateHostKey(filepath.Join(dir, "hostkey"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gitserver.New(ctx, gitserver.Config{Store: store, HostKey: hk, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); store.Close() })

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := gossh.MarshalPrivateKey(priv, "mirror")
	signer, _ := gossh.NewSignerFromKey(priv)
	key, _ := storage.ParseKey(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	if _, err := store.CreateUser(storage.User{Name: "mirror-bot", Keys: []storage.Key{key}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	store.SetGrant("mirror-bot", "app", storage.AccessRead)
	git(t, bareFrom, "push", "-q", "--mirror", store.RepoPath("app"))
	if _, err := store.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return &sshUpstream{
		url:        "ssh://git@" + l.Addr().String() + "/app.git",
		key:        pem.EncodeToMemory(block),
		knownHosts: []byte(gitserver.KnownHostsLine("127.0.0.1", port, hk.PublicKey()) + "\n"),
		store:      store,
	}
}

// TestSyncOverEveryTransport mirrors one upstream over file://, smart
// HTTP (git http-backend), git:// (git daemon) and SSH (another fjord),
// and follows it through new commits, new and deleted branches and tags,
// and a force-push.
func TestSyncOverEveryTransport(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	root := t.TempDir()
	type transport struct {
		name  string
		url   func(*upstream) string
		creds func(*upstream) map[string][]byte
		push  func(*upstream) // makes the upstream's current state visible
	}
	httpURL, _ := httpUpstream(t, root, "")
	daemon := gitDaemon(t, root)
	var sshUp *sshUpstream
	transports := []transport{
		{name: "file", url: func(u *upstream) string { return "file://" + u.bare }},
		{name: "http", url: func(u *upstream) string { return httpURL + "/" + filepath.Base(u.bare) }},
		{name: "git", url: func(u *upstream) string { return daemon + "/" + filepath.Base(u.bare) }},
		{name: "ssh",
			url: func(u *upstream) string { sshUp = newSSHUpstream(t, u.bare); return sshUp.url },
			creds: func(*upstream) map[string][]byte {
				return map[string][]byte{mirror.CredSSHKey: sshUp.key, mirror.CredKnownHosts: sshUp.knownHosts}
			},
			push: func(u *upstream) {
				git(t, u.bare, "push", "-q", "--mirror", sshUp.store.RepoPath("app"))
				sshUp.store.RefreshRefs(ctx, "app")
			},
		},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			up := newUpstream(t, root, "up-"+tr.name)
			up.push("main")
			url := tr.url(up)
			var creds map[string][]byte
			if tr.creds != nil {
				creds = tr.creds(up)
			}
			publish := func() {
				if tr.push != nil {
					tr.push(up)
				}
			}
			name := "m-" + tr.name
			rec, err := f.mgr.Add(ctx, storage.Mirror{Repo: name, Upstream: url}, creds)
			if err != nil {
				t.Fatalf("add: %v", err)
			}
			if !rec.Fetched || len(rec.Changes) != 1 {
				t.Fatalf("first sync: %+v", rec)
			}
			check := func(step string) {
				t.Helper()
				if got, want := f.localRefs(name), up.refs(); got != want {
					t.Fatalf("%s: mirror refs\n%s\nupstream refs\n%s", step, got, want)
				}
			}
			check("first sync")

			// Unchanged upstream: no fetch.
			rec, err = f.mgr.Sync(ctx, name)
			if err != nil || rec.Fetched {
				t.Fatalf("sync of unchanged upstream fetched: %+v %v", rec, err)
			}

			// New commit, branch and tags.
			up.commit()
			up.push("main")
			git(t, up.work, "tag", "-a", "v1", "-m", "v1")
			git(t, up.work, "tag", "light")
			git(t, up.work, "branch", "feature")
			up.push("--tags", "feature")
			publish()
			rec, err = f.mgr.Sync(ctx, name)
			if err != nil || !rec.Fetched || len(rec.Changes) != 4 {
				t.Fatalf("sync after new commit/branch/tags: %+v %v", rec, err)
			}
			check("new refs")

			// Deleted branch and tag: removed here, old tips kept.
			feature := git(t, up.work, "rev-parse", "feature")
			up.push(":refs/heads/feature", ":refs/tags/light")
			// Force-push on main.
			old := git(t, up.work, "rev-parse", "HEAD")
			git(t, up.work, "reset", "-q", "--hard", "HEAD~1")
			forced := up.commit()
			up.push("+main")
			publish()
			if _, err := f.mgr.Sync(ctx, name); err != nil {
				t.Fatal(err)
			}
			check("deletes and force-push")
			evs, _ := f.store.MirrorEvents(name, 0)
			kinds := map[string]storage.MirrorEvent{}
			for _, e := range evs {
				kinds[e.Kind+" "+e.Ref] = e
			}
			fp, ok := kinds["force-push refs/heads/main"]
			if !ok || fp.Old != old || fp.New != forced {
				t.Fatalf("no force-push event for main: %+v", evs)
			}
			if del, ok := kinds["delete refs/heads/feature"]; !ok || del.Old != feature {
				t.Fatalf("no delete event for feature: %+v", evs)
			}
			if _, ok := kinds["delete refs/tags/light"]; !ok {
				t.Fatalf("no delete event for tag light: %+v", evs)
			}
			// The old tip is still in the repo, under a ref clients never see.
			if got := git(t, "", "--git-dir", f.store.RepoPath(name), "rev-parse", fp.BackupRef); got != old {
				t.Fatalf("backup ref %s = %s, want %s", fp.BackupRef, got, old)
			}
			snap, _ := f.store.Refs(name)
			for _, r := range snap.Refs {
				if strings.HasPrefix(r.Name, "refs/fjord/") {
					t.Fatalf("hidden ref %s in the snapshot clients are served from", r.Name)
				}
			}
		})
	}
}

// TestAddRefusesBadInput checks that every bad add leaves nothing behind.
func TestAddRefusesBadInput(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	root := t.TempDir()
	up := newUpstream(t, root, "up")
	httpURL, _ := httpUpstream(t, root, "s3cr3t-token")
	if _, err := f.store.CreateRepo(ctx, storage.Repo{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	sshUp := newSSHUpstream(t, up.bare)
	wrongHost := []byte(strings.Replace(string(sshUp.knownHosts), "AAAA", "AAAB", 1))
	cases := []struct {
		name, repo, url string
		creds           map[string][]byte
		want            string
	}{
		{"name clash", "taken", "file://" + up.bare, nil, "already exists"},
		{"bad url", "a", "notaurl", nil, "is not a URL"},
		{"space in url", "a", "https://example.com/a b", nil, "space or control character"},
		{"password in url", "a", "https://bob:hunter2@example.com/x.git", nil, "contains a password"},
		{"bad scheme", "a", "ftp://example.com/x.git", nil, "not supported"},
		{"unreachable", "a", "http://127.0.0.1:1/x.git", nil, "unreachable"},
		{"not a repo", "a", "file://" + t.TempDir(), nil, "no repository at that path"},
		{"wrong token", "a", httpURL + "/up.git", map[string][]byte{mirror.CredToken: []byte("wrong-token")}, "refused the credentials"},
		{"no token", "a", httpURL + "/up.git", nil, "refused the credentials"},
		{"ssh without known_hosts", "a", sshUp.url, map[string][]byte{mirror.CredSSHKey: sshUp.key}, "--known-hosts"},
		{"ssh host key mismatch", "a", sshUp.url, map[string][]byte{mirror.CredSSHKey: sshUp.key, mirror.CredKnownHosts: wrongHost}, "host key"},
		{"hostile name", "../x", "file://" + up.bare, nil, "invalid name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.mgr.Add(ctx, storage.Mirror{Repo: c.repo, Upstream: c.url}, c.creds)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
			for _, secret := range []string{"hunter2", "wrong-token", "s3cr3t-token"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks a secret: %v", err)
				}
			}
			if _, err := f.store.Mirror("a"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a failed add left a mirror behind: %v", err)
			}
			if _, err := f.store.Repo("a"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a failed add left a repo behind: %v", err)
			}
			if _, err := os.Stat(f.store.CredentialDir("mirror", "a")); !os.IsNotExist(err) {
				t.Fatalf("a failed add left credentials behind: %v", err)
			}
		})
	}
	// The right token works, and is stored 0600 and nowhere in git config.
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "private", Upstream: httpURL + "/up.git"}, map[string][]byte{mirror.CredToken: []byte("s3cr3t-token\n")}); err != nil {
		t.Fatalf("add with the right token: %v", err)
	}
	fi, err := os.Stat(filepath.Join(f.store.CredentialDir("mirror", "private"), mirror.CredToken))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	cfg, _ := os.ReadFile(filepath.Join(f.store.RepoPath("private"), "config"))
	if strings.Contains(string(cfg), "s3cr3t") || strings.Contains(string(cfg), "http") {
		t.Fatalf("git config of the mirror mentions the upstream or its token:\n%s", cfg)
	}
}
