package replication_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/replication"
	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"
)

// group is the shared material of a replica group in a test: the host key
// every replica presents, the group key, and a client user's key.
type group struct {
	dir        string
	hostKey    gossh.Signer
	groupKey   string // private key file
	groupPub   gossh.PublicKey
	userKey    string
	userPub    storage.Key
	knownHosts string
}

func newGroup(t testing.TB) *group {
	t.Helper()
	g := &group{dir: t.TempDir()}
	host, _ := writeKey(t, filepath.Join(g.dir, "host"))
	pem, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	if g.hostKey, err = gossh.ParsePrivateKey(pem); err != nil {
		t.Fatal(err)
	}
	g.groupKey, g.groupPub = writeKey(t, filepath.Join(g.dir, "group"))
	var pub gossh.PublicKey
	g.userKey, pub = writeKey(t, filepath.Join(g.dir, "ci"))
	if g.userPub, err = storage.ParseKey(string(gossh.MarshalAuthorizedKey(pub))); err != nil {
		t.Fatal(err)
	}
	g.knownHosts = filepath.Join(g.dir, "known_hosts")
	return g
}

func writeKey(t testing.TB, path string) (string, gossh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, signer.PublicKey()
}

// node is one replica: a store and fjord's SSH server on loopback, which
// serves the change stream and, when following, a Follower.
type node struct {
	t        testing.TB
	g        *group
	id       string
	dir      string
	addr     string
	store    *storage.Store
	primary  *replication.Primary
	follower *replication.Follower
	metrics  *prometheus.Registry // the follower's
	stop     func()
	// promote stops following and takes writes: what the elector does
	// for a follower that won the Lease.
	promote func()
}

// start opens dir's store and serves it on a new port (or addr, when
// restarting). primary, when not empty, is the address to follow.
func (g *group) start(t testing.TB, id, dir, addr, primary string, opts *storage.Options) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t, id}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if opts == nil {
		opts = &storage.Options{}
	}
	opts.Logger = log
	store, err := storage.Open(ctx, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, g: g, id: id, dir: dir, store: store, primary: replication.NewPrimary(store, log)}
	gs, err := gitserver.New(ctx, gitserver.Config{Store: store, HostKey: g.hostKey, Logger: log, PeerKey: g.groupPub, Replicator: n.primary})
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n.addr = l.Addr().String()
	g.trust(t, n.addr)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(l) }()
	var followed chan struct{}
	fctx, fcancel := context.WithCancel(ctx)
	n.promote = func() {
		fcancel()
		if followed != nil {
			<-followed
		}
		store.RefuseWrites(nil)
	}
	if primary != "" {
		// As a follower in a group does: its own writes are refused,
		// what it applies from the stream is not.
		store.RefuseWrites(fmt.Errorf("this replica follows %s", primary))
		n.metrics = prometheus.NewRegistry()
		n.follower = replication.NewFollower(store, replication.FollowerOptions{
			ID: id, Primary: primary, KeyFile: g.groupKey, HostKey: g.hostKey.PublicKey(), Logger: log,
			Metrics: replication.NewFollowerMetrics(n.metrics),
		})
		followed = make(chan struct{})
		go func() {
			defer close(followed)
			if err := n.follower.Run(fctx); err != nil {
				t.Errorf("%s: Follower.Run: %v", id, err)
			}
		}()
	}
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if followed != nil {
			<-followed
		}
		gs.Close()
		<-served
		store.Close()
	}
	t.Cleanup(n.stop)
	return n
}

// counter returns the value of one of the follower's counters.
func (n *node) counter(t testing.TB, name string) float64 {
	t.Helper()
	families, err := n.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("follower %s has no counter %s", n.id, name)
	return 0
}

type testWriter struct {
	t  testing.TB
	id string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.id, strings.TrimSpace(string(p)))
	return len(p), nil
}

// trust adds a replica's address to the clients' known_hosts: every
// replica presents the group's one host key.
func (g *group) trust(t testing.TB, addr string) {
	host, port, _ := net.SplitHostPort(addr)
	f, err := os.OpenFile(g.knownHosts, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "[%s]:%s %s", host, port, gossh.MarshalAuthorizedKey(g.hostKey.PublicKey()))
}

// git runs the git CLI in dir over SSH with key.
func (g *group) git(t testing.TB, key, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_SSH_COMMAND=ssh -F /dev/null -i "+key+" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+g.knownHosts,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=ci", "GIT_AUTHOR_EMAIL=ci@example.com", "GIT_COMMITTER_NAME=ci", "GIT_COMMITTER_EMAIL=ci@example.com")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (g *group) mustGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := g.git(t, g.userKey, dir, args...)
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return out
}

func (n *node) url(repo string) string { return "ssh://git@" + n.addr + "/" + repo + ".git" }

// seed creates repo on the primary with the ci user allowed to write it.
func (n *node) seed(t testing.TB, repo string) {
	t.Helper()
	if _, err := n.store.CreateRepo(context.Background(), storage.Repo{Name: repo}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.store.User("ci"); err != nil {
		if _, err := n.store.CreateUser(storage.User{Name: "ci", Keys: []storage.Key{n.g.userPub}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.store.SetGrant("ci", repo, storage.AccessWrite); err != nil {
		t.Fatal(err)
	}
}

// push commits a new file in work and pushes it to the primary; it returns
// the commit and the position of the push's change.
func (n *node) push(t testing.TB, work, msg string) (string, uint64) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(work, msg+".txt"), []byte(msg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.g.mustGit(t, work, "add", ".")
	n.g.mustGit(t, work, "commit", "-q", "-m", msg)
	n.g.mustGit(t, work, "push", "-q", "origin", "HEAD:refs/heads/main")
	head := n.g.mustGit(t, work, "rev-parse", "HEAD")
	refs, _ := n.store.Refs("app")
	if r, ok := refs.Lookup("refs/heads/main"); !ok || r.Hash != head {
		t.Fatalf("primary's snapshot after the push: %+v, want %s", refs, head)
	}
	return head, n.store.Position()
}

// waitAcked waits until n followers hold the primary's position.
func (n *node) waitAcked(t testing.TB, followers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.primary.WaitAcked(ctx, n.store.Position(), followers); err != nil {
		t.Fatal(err)
	}
}

// waitFollower waits until follower f is connected to n again and holds
// n's position: after a restart, the primary's record of f's acks from
// before is no proof of what f holds now.
func (n *node) waitFollower(t testing.TB, f *node) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, fs := n.status(t, f.id), f.follower.State()
		if st.Connected && st.Acked >= n.store.Position() && fs.CaughtUp && f.store.Position() == n.store.Position() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower %s never caught up with %d: primary says %+v, follower %+v", f.id, n.store.Position(), st, fs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// served returns the commit a replica serves for a branch, asked with
// the git CLI as the ci user.
func (n *node) served(t testing.TB, repo, branch string) string {
	t.Helper()
	out := n.g.mustGit(t, "", "ls-remote", n.url(repo), "refs/heads/"+branch)
	hash, _, _ := strings.Cut(out, "\t")
	return hash
}

// fsck fails unless every repo of the replica is clean.
func (n *node) fsck(t testing.TB) {
	t.Helper()
	repos, err := n.store.Repos()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range repos {
		out, err := exec.Command("git", "-C", n.store.RepoPath(r.Name), "fsck", "--strict", "--no-progress").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: git fsck %s: %v\n%s", n.id, r.Name, err, out)
		}
	}
}

func (n *node) status(t testing.TB, id string) replication.FollowerStatus {
	t.Helper()
	for _, f := range n.primary.Followers() {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("primary knows no follower %q: %+v", id, n.primary.Followers())
	return replication.FollowerStatus{}
}

func clone(t testing.TB, g *group, n *node) string {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	g.mustGit(t, "", "clone", "-q", n.url("app"), work)
	return work
}

func TestPushAndMetadataReplicate(t *testing.T) {
	g := newGroup(t)
	p := g.start(t, "p", t.TempDir(), "", "", nil)
	p.seed(t, "app")
	f := g.start(t, "f", t.TempDir(), "", p.addr, nil)

	work := clone(t, g, p)
	p.waitAcked(t, 1)
	fetched := f.counter(t, "fjord_replication_git_fetches_total")
	head, pos := p.push(t, work, "one")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.primary.WaitAcked(ctx, pos, 1); err != nil {
		t.Fatal(err)
	}
	// A small push's own pack went with its change: no git fetch.
	if n := f.counter(t, "fjord_replication_git_fetches_total"); n != fetched {
		t.Fatalf("the follower ran %v git fetches for a small push; want none (its pack is sent along)", n-fetched)
	}
	// Acked means held: the follower serves the commit at once, to the
	// user whose key and grant came over the stream too.
	if got := f.served(t, "app", "main"); got != head {
		t.Fatalf("follower serves %q for main, want %s", got, head)
	}
	fwork := filepath.Join(t.TempDir(), "fclone")
	g.mustGit(t, "", "clone", "-q", f.url("app"), fwork)
	if got := g.mustGit(t, fwork, "rev-parse", "HEAD"); got != head {
		t.Fatalf("clone from the follower is at %s, want %s", got, head)
	}

	// Metadata: a user, a grant, an app and its status.
	if _, err := p.store.CreateUser(storage.User{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := p.store.SetGrant("bob", "app", storage.AccessRead); err != nil {
		t.Fatal(err)
	}
	if _, err := p.store.PutApp("web", "apiVersion: argoproj.io/v1alpha1\nkind: Application\n", storage.AppMeta{Project: "default"}); err != nil {
		t.Fatal(err)
	}
	if err := p.store.SetAppStatus("web", storage.AppStatus{Sync: storage.Synced, Health: "Healthy", Revision: head}); err != nil {
		t.Fatal(err)
	}
	// A cluster token, put and rotated: the log records only that the
	// file changed, and the stream carries the current content.
	for _, tok := range []string{"token-one", "token-two"} {
		if _, err := p.store.PutCluster(storage.Cluster{Name: "edge", Server: "https://edge.example.com:6443"}, storage.ClusterCredentials{Token: tok}); err != nil {
			t.Fatal(err)
		}
	}
	p.waitAcked(t, 1)
	if f.store.AccessFor(&storage.User{Name: "bob"}, "app") != storage.AccessRead {
		t.Fatal("bob's grant did not replicate")
	}
	app, err := f.store.App("web")
	if err != nil || app.Status.Sync != storage.Synced || app.Status.Revision != head || app.Project != "default" {
		t.Fatalf("app on the follower: %+v, %v", app, err)
	}
	edge, err := f.store.Cluster("edge")
	if err != nil {
		t.Fatal(err)
	}
	if creds, err := f.store.ClusterCredentials(edge); err != nil || creds.Token != "token-two" {
		t.Fatalf("follower's cluster token %q, %v; want token-two", creds.Token, err)
	}
	st := p.status(t, "f")
	if !st.Connected || st.Acked != p.store.Position() || st.LagChanges != 0 || st.FullCopies != 0 {
		t.Fatalf("follower status %+v at primary position %d", st, p.store.Position())
	}
	if fs := f.follower.State(); fs.Position != p.store.Position() || !fs.Connected || !fs.CaughtUp || fs.Primary != p.addr {
		t.Fatalf("follower's own state %+v", fs)
	}
	// The metrics say the same.
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.primary.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	acked := -1.0
	for _, mf := range families {
		if mf.GetName() == "fjord_replication_follower_acked_position" && len(mf.GetMetric()) == 1 {
			acked = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if acked != float64(p.store.Position()) {
		t.Fatalf("fjord_replication_follower_acked_position = %v, want %d", acked, p.store.Position())
	}
	f.fsck(t)
	p.fsck(t)
}

func TestFollowerRestartCatchesUp(t *testing.T) {
	g := newGroup(t)
	p := g.start(t, "p", t.TempDir(), "", "", nil)
	p.seed(t, "app")
	fdir := t.TempDir()
	f := g.start(t, "f", fdir, "", p.addr, nil)
	work := clone(t, g, p)
	p.push(t, work, "one")
	p.waitAcked(t, 1)
	held := f.store.Position()

	f.stop()
	head, _ := p.push(t, work, "two")
	g.mustGit(t, work, "push", "-q", "origin", "HEAD:refs/heads/feature")
	if _, err := p.store.CreateUser(storage.User{Name: "late"}); err != nil {
		t.Fatal(err)
	}
	if p.store.Position() <= held {
		t.Fatal("nothing happened while the follower was away")
	}

	f = g.start(t, "f", fdir, f.addr, p.addr, nil)
	p.waitAcked(t, 1)
	if got := f.served(t, "app", "main"); got != head {
		t.Fatalf("restarted follower serves %q, want %s", got, head)
	}
	if got := f.served(t, "app", "feature"); got != head {
		t.Fatalf("restarted follower serves feature at %q, want %s", got, head)
	}
	if _, err := f.store.User("late"); err != nil {
		t.Fatalf("user made while the follower was away: %v", err)
	}
	if st := p.status(t, "f"); st.FullCopies != 0 {
		t.Fatalf("the follower needed a full copy to catch up from %d: %+v", held, st)
	}
	f.fsck(t)
}

func TestNewMemberGetsAFullCopy(t *testing.T) {
	g := newGroup(t)
	// A change log of 3: the new member cannot replay from the start.
	p := g.start(t, "p", t.TempDir(), "", "", &storage.Options{ChangeLogSize: 3})
	p.seed(t, "app")
	work := clone(t, g, p)
	p.push(t, work, "one")
	g.mustGit(t, work, "tag", "-a", "-m", "release", "v1")
	g.mustGit(t, work, "push", "-q", "origin", "v1")
	head, _ := p.push(t, work, "two")
	for i := range 4 {
		if _, err := p.store.CreateUser(storage.User{Name: fmt.Sprintf("u%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.store.ChangesSince(0, 0); !errors.Is(err, storage.ErrChangesTrimmed) {
		t.Fatalf("the primary's log still starts at 1: %v", err)
	}

	// A member with a history of its own (a local write) is corrected by
	// the full copy too.
	ndir := t.TempDir()
	pre, err := storage.Open(context.Background(), ndir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pre.CreateUser(storage.User{Name: "stray"}); err != nil {
		t.Fatal(err)
	}
	pre.Close()
	n := g.start(t, "n", ndir, "", p.addr, nil)
	p.waitAcked(t, 1)
	if got := n.served(t, "app", "main"); got != head {
		t.Fatalf("new member serves %q, want %s", got, head)
	}
	tag := g.mustGit(t, "", "ls-remote", n.url("app"), "refs/tags/v1^{}")
	if want := g.mustGit(t, work, "rev-parse", "v1^{}"); !strings.HasPrefix(tag, want) {
		t.Fatalf("new member's v1 = %q, want %s", tag, want)
	}
	if _, err := n.store.User("u3"); err != nil {
		t.Fatalf("users of the full copy: %v", err)
	}
	if _, err := n.store.User("stray"); err == nil {
		t.Fatal("the member's own write survived the full copy")
	}
	if st := p.status(t, "n"); st.FullCopies != 1 {
		t.Fatalf("new member: %+v, want one full copy", st)
	}
	// And it follows on from the copy.
	head, _ = p.push(t, work, "three")
	p.waitAcked(t, 1)
	if got := n.served(t, "app", "main"); got != head {
		t.Fatalf("new member serves %q after the copy, want %s", got, head)
	}
	n.fsck(t)
}

func TestOnlyTheGroupKeyReplicates(t *testing.T) {
	g := newGroup(t)
	p := g.start(t, "p", t.TempDir(), "", "", nil)
	p.seed(t, "app")

	// A user's key may not run the stream.
	out, err := g.git(t, g.userKey, "", "ls-remote", p.url("app"))
	if err != nil {
		t.Fatalf("the user cannot even read: %v %s", err, out)
	}
	cmd := exec.Command("ssh", "-F", "/dev/null", "-i", g.userKey, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+g.knownHosts, "-p", strings.Split(p.addr, ":")[1], "git@127.0.0.1", "fjord-replicate x 0 -")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "only git-upload-pack") {
		t.Fatalf("a user's key ran the stream: %v %s", err, out)
	}
	// The group key may fetch but never push.
	work := clone(t, g, p)
	if err := os.WriteFile(filepath.Join(work, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.mustGit(t, work, "add", ".")
	g.mustGit(t, work, "commit", "-q", "-m", "x")
	if out, err := g.git(t, g.groupKey, work, "push", "-q", "origin", "HEAD:refs/heads/main"); err == nil || !strings.Contains(out, "runs only fjord-replicate and git-upload-pack") {
		t.Fatalf("the group key pushed: %v %s", err, out)
	}

	// A follower with another key is refused, and one that meets another
	// host key refuses the primary; neither gets anything.
	_, otherPub := writeKey(t, filepath.Join(g.dir, "other"))
	_ = otherPub
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name, key string
		host      gossh.PublicKey
		want      string
	}{
		{"wrong group key", filepath.Join(g.dir, "other"), g.hostKey.PublicKey(), "unable to authenticate"},
		{"wrong host key", g.groupKey, otherPub, "host key mismatch"},
	} {
		store, err := storage.Open(ctx, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		fl := replication.NewFollower(store, replication.FollowerOptions{ID: "intruder", Primary: p.addr, KeyFile: tc.key, HostKey: tc.host, Logger: slog.New(slog.DiscardHandler)})
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- fl.Run(rctx) }()
		for fl.State().LastError == "" && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		rcancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if st := fl.State(); !strings.Contains(st.LastError, tc.want) || store.Position() != 0 {
			t.Fatalf("%s: follower state %+v, position %d; want an error with %q", tc.name, st, store.Position(), tc.want)
		}
	}
	if fs := p.primary.Followers(); len(fs) != 0 {
		t.Fatalf("the primary served %+v", fs)
	}
}

// TestStuckChangeEscalatesToAFullCopy damages a follower's repo so that a
// change cannot be applied (a stale ref lock): after a few tries the
// follower asks for a full copy, and once the damage is gone it holds the
// primary's state again.
func TestStuckChangeEscalatesToAFullCopy(t *testing.T) {
	g := newGroup(t)
	p := g.start(t, "p", t.TempDir(), "", "", nil)
	p.seed(t, "app")
	f := g.start(t, "f", t.TempDir(), "", p.addr, nil)
	work := clone(t, g, p)
	p.push(t, work, "one")
	p.waitAcked(t, 1)

	lock := filepath.Join(f.store.RepoPath("app"), "refs", "heads", "main.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	head, _ := p.push(t, work, "two")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for p.status(t, "f").FullCopies == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the follower never asked for a full copy: %+v", f.follower.State())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	p.waitAcked(t, 1)
	if got := f.served(t, "app", "main"); got != head {
		t.Fatalf("follower serves %q, want %s", got, head)
	}
	f.fsck(t)
}

// TestDivergedFollowerIsCorrected restarts a follower whose repo moved
// behind the stream's back (as a former primary's push that no follower
// acked): it holds a history the primary does not, gets a full copy, and
// serves the primary's refs again.
func TestDivergedFollowerIsCorrected(t *testing.T) {
	g := newGroup(t)
	p := g.start(t, "p", t.TempDir(), "", "", nil)
	p.seed(t, "app")
	fdir := t.TempDir()
	f := g.start(t, "f", fdir, "", p.addr, nil)
	work := clone(t, g, p)
	head, _ := p.push(t, work, "one")
	p.waitAcked(t, 1)
	f.stop()

	// A commit only the follower has, on main.
	other := filepath.Join(t.TempDir(), "other")
	g.mustGit(t, "", "init", "-q", other)
	if err := os.WriteFile(filepath.Join(other, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.mustGit(t, other, "add", ".")
	g.mustGit(t, other, "commit", "-q", "-m", "unacked")
	g.mustGit(t, other, "push", "-q", f.store.RepoPath("app"), "+HEAD:refs/heads/main")

	f = g.start(t, "f", fdir, f.addr, p.addr, nil)
	p.waitFollower(t, f)
	if got := f.served(t, "app", "main"); got != head {
		t.Fatalf("diverged follower serves %q, want the primary's %s", got, head)
	}
	if st := p.status(t, "f"); st.FullCopies != 1 {
		t.Fatalf("diverged follower: %+v, want one full copy", st)
	}
	f.fsck(t)
}

// TestFollowerMovesToAPromotedPrimary promotes one of two followers after
// the primary stops: the promoted one goes on with the same change log,
// and the other, pointed at it with SetPrimary, continues from its
// position with no full copy and serves the new primary's pushes.
func TestFollowerMovesToAPromotedPrimary(t *testing.T) {
	g := newGroup(t)
	p := g.start(t, "p", t.TempDir(), "", "", nil)
	p.seed(t, "app")
	a := g.start(t, "a", t.TempDir(), "", p.addr, nil)
	b := g.start(t, "b", t.TempDir(), "", p.addr, nil)
	work := clone(t, g, p)
	p.push(t, work, "one")
	p.waitAcked(t, 2)
	p.stop()

	a.promote()
	b.follower.SetPrimary(a.addr)
	g.mustGit(t, work, "remote", "set-url", "origin", a.url("app"))
	if _, err := a.store.CreateUser(storage.User{Name: "after-failover"}); err != nil {
		t.Fatal(err)
	}
	head, _ := a.push(t, work, "two")
	a.waitFollower(t, b)
	if got := b.served(t, "app", "main"); got != head {
		t.Fatalf("b serves %q after the failover, want %s", got, head)
	}
	if _, err := b.store.User("after-failover"); err != nil {
		t.Fatal(err)
	}
	if st := a.status(t, "b"); st.FullCopies != 0 {
		t.Fatalf("b needed a full copy from the promoted primary: %+v", st)
	}
	b.fsck(t)
	a.fsck(t)
}
