package housekeeping_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/housekeeping"
	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
)

// repo is a hosted repo with a work tree that pushes to it directly (git
// receive-pack over the local transport, as fjord runs it for SSH).
type repo struct {
	t     testing.TB
	store *storage.Store
	name  string
	work  string
}

func newRepo(t testing.TB, name string) *repo {
	t.Helper()
	dir := t.TempDir()
	st, err := storage.Open(context.Background(), filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateRepo(context.Background(), storage.Repo{Name: name}); err != nil {
		t.Fatal(err)
	}
	r := &repo{t: t, store: st, name: name, work: filepath.Join(dir, "work")}
	r.git("", "init", "-q", "--initial-branch=main", r.work)
	return r
}

func (r *repo) path() string { return r.store.RepoPath(r.name) }

func (r *repo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := gitrun.Runner{}.Command(context.Background(), dir,
		[]string{"GIT_AUTHOR_NAME=CI", "GIT_AUTHOR_EMAIL=ci@example.com", "GIT_COMMITTER_NAME=CI", "GIT_COMMITTER_EMAIL=ci@example.com"}, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// push makes one commit and pushes it, then refreshes the snapshot as
// gitserver does after a push (which notifies housekeeping).
func (r *repo) push(i int) {
	r.t.Helper()
	os.WriteFile(filepath.Join(r.work, "build.txt"), []byte(fmt.Sprintf("build %d\n", i)), 0o644)
	r.git(r.work, "add", ".")
	r.git(r.work, "commit", "-q", "-m", fmt.Sprintf("build %d", i))
	r.git(r.work, "push", "-q", r.path(), "HEAD:main")
	if _, err := r.store.RefreshRefs(context.Background(), r.name); err != nil {
		r.t.Fatal(err)
	}
}

// age sets the mtime of a loose object back by d.
func (r *repo) age(hash string, d time.Duration) {
	r.t.Helper()
	p := filepath.Join(r.path(), "objects", hash[:2], hash[2:])
	old := time.Now().Add(-d)
	if err := os.Chtimes(p, old, old); err != nil {
		r.t.Fatal(err)
	}
}

func (r *repo) has(hash string) bool {
	cmd := exec.Command("git", "-C", r.path(), "cat-file", "-e", hash)
	cmd.Env = gitrun.Env()
	return cmd.Run() == nil
}

// TestHousekeep checks one housekeeping of a repo aged by pushes: loose
// objects are packed into one pack with a multi-pack index, bitmap and
// commit-graph; an unreachable object past the grace period is pruned,
// one within it is kept, and so is a commit kept only by a hidden backup
// ref however old; git's own auto gc is switched off; fsck is clean.
func TestHousekeep(t *testing.T) {
	r := newRepo(t, "ci")
	for i := 0; i < 30; i++ {
		r.push(i)
	}
	// History protection keeps an overwritten tip under refs/fjord/backup/.
	r.git(r.work, "checkout", "-q", "--orphan", "rewritten")
	r.git(r.work, "commit", "-q", "-m", "only in a backup ref")
	backup := r.git(r.work, "rev-parse", "HEAD")
	r.git(r.work, "push", "-q", r.path(), "HEAD:refs/fjord/backup/main/1")
	oldGarbage := strings.TrimSpace(r.gitStdin("unreachable and old\n", "hash-object", "-w", "--stdin"))
	newGarbage := strings.TrimSpace(r.gitStdin("unreachable and new\n", "hash-object", "-w", "--stdin"))
	r.age(oldGarbage, 30*24*time.Hour)
	for _, h := range strings.Fields(r.git(r.path(), "rev-list", "--objects", "--no-object-names", backup)) {
		r.age(h, 30*24*time.Hour)
	}

	m, err := housekeeping.New(housekeeping.Config{Store: r.store, LooseObjectLimit: 16})
	if err != nil {
		t.Fatal(err)
	}
	// The first housekeeping of a repo is a full repack, which prunes.
	res, err := m.Housekeep(context.Background(), "ci", housekeeping.Primary)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Repacked || !res.CommitGraph || !res.Pruned {
		t.Fatalf("housekeeping of an aged repo did %+v", res)
	}
	if a := res.After; a.Packs != 2 || !a.MultiPackIndex || !a.Bitmap || !a.CommitGraph || a.LooseObjects != 0 {
		t.Errorf("after housekeeping: %+v, want no loose objects, 2 packs (one a cruft pack) with multi-pack index, bitmap and commit-graph", a)
	}
	if r.has(oldGarbage) {
		t.Errorf("unreachable object older than the grace period survived")
	}
	if !r.has(newGarbage) {
		t.Errorf("unreachable object within the grace period was pruned")
	}
	if !r.has(backup) {
		t.Errorf("commit kept only by refs/fjord/backup/ was pruned")
	}
	if got := r.git(r.path(), "rev-parse", "refs/fjord/backup/main/1"); got != backup {
		t.Errorf("backup ref = %s, want %s", got, backup)
	}
	r.git(r.path(), "fsck", "--strict", "--no-dangling")
	for _, kv := range [][2]string{{"gc.auto", "0"}, {"receive.autogc", "false"}, {"maintenance.auto", "false"}, {"transfer.unpackLimit", "1"}} {
		if got := r.git(r.path(), "config", "--get", kv[0]); got != kv[1] {
			t.Errorf("%s = %q, want %q", kv[0], got, kv[1])
		}
	}

	// A healthy repo is left alone.
	res, err = m.Housekeep(context.Background(), "ci", housekeeping.Primary)
	if err != nil {
		t.Fatal(err)
	}
	if res.Did() {
		t.Errorf("second housekeeping of a healthy repo did %+v", res)
	}

	// Between full repacks, a small repo is repacked whole: its pushes
	// folded into one pack again, an unreachable object however old kept
	// (only the full repack prunes).
	garbage := strings.TrimSpace(r.gitStdin("unreachable between full repacks\n", "hash-object", "-w", "--stdin"))
	r.age(garbage, 30*24*time.Hour)
	r.git(r.work, "checkout", "-q", "--detach", r.git(r.path(), "rev-parse", "main")) // back from the orphan branch
	for i := 30; i < 40; i++ {
		r.push(i)
	}
	res, err = m.Housekeep(context.Background(), "ci", housekeeping.Primary)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Repacked || res.Pruned || res.After.Packs != 2 || res.After.LooseObjects != 0 || !res.After.Bitmap {
		t.Errorf("housekeeping after 10 pushes did %+v, want a whole repack (no prune) into one pack beside the cruft pack", res)
	}
	if !r.has(garbage) {
		t.Errorf("a repack between full repacks pruned an unreachable object")
	}
	r.git(r.path(), "fsck", "--strict", "--no-dangling")
}

// TestGeometricRepack: above WholeRepackBelow a repack merges only the
// small new packs, leaving the big one, and prunes nothing.
func TestGeometricRepack(t *testing.T) {
	r := newRepo(t, "big")
	m, err := housekeeping.New(housekeeping.Config{Store: r.store, LooseObjectLimit: 16, WholeRepackBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		r.push(i)
	}
	if _, err := m.Housekeep(context.Background(), "big", housekeeping.Primary); err != nil {
		t.Fatal(err)
	}
	for i := 30; i < 40; i++ {
		r.push(i)
	}
	before, err := housekeeping.Inspect(r.path())
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Housekeep(context.Background(), "big", housekeeping.Primary)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Repacked || res.Pruned || res.After.Packs >= before.Packs || !res.After.MultiPackIndex || !res.After.Bitmap {
		t.Errorf("geometric housekeeping of %d packs did %+v", before.Packs, res)
	}
	r.git(r.path(), "fsck", "--strict", "--no-dangling")
}

func (r *repo) gitStdin(stdin string, args ...string) string {
	r.t.Helper()
	out, err := gitrun.Runner{}.Output(context.Background(), r.path(), strings.NewReader(stdin), args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return string(out)
}

// TestUpkeepLock checks that housekeeping waits for a push in progress
// and that a push waits for housekeeping to finish.
func TestUpkeepLock(t *testing.T) {
	r := newRepo(t, "ci")
	m, err := housekeeping.New(housekeeping.Config{Store: r.store})
	if err != nil {
		t.Fatal(err)
	}
	done := r.store.BeginRepoWrite("ci")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = m.Housekeep(ctx, "ci", housekeeping.Primary)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("housekeeping during a push: err = %v, want it to wait", err)
	}
	done()

	unlock, err := r.store.LockRepoUpkeep(context.Background(), "ci")
	if err != nil {
		t.Fatal(err)
	}
	began := make(chan struct{})
	go func() { r.store.BeginRepoWrite("ci")(); close(began) }()
	select {
	case <-began:
		t.Fatal("a push began while housekeeping held the repo")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	<-began
}

// TestRunAfterPush checks that a push schedules housekeeping: Run, fed by
// the store's ref-change notifications, packs the pushed objects.
func TestRunAfterPush(t *testing.T) {
	r := newRepo(t, "ci")
	m, err := housekeeping.New(housekeeping.Config{Store: r.store, Delay: 10 * time.Millisecond, LooseObjectLimit: 16})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx, housekeeping.Primary)
	// One push of 150 commits arrives as a pack (more than git's
	// unpackLimit of objects), without a bitmap.
	for i := 0; i < 150; i++ {
		r.git(r.work, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("build %d", i))
	}
	r.push(150)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := housekeeping.Inspect(r.path())
		if err != nil {
			t.Fatal(err)
		}
		if st.Packs >= 1 && st.Bitmap && st.CommitGraph {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no housekeeping after a push: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
