package replication_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/housekeeping"
)

// TestFollowerHousekeeping: a follower installs every small push as the
// pack the primary sends with it; housekeeping in Follower mode, run as a
// member runs it while it follows, folds those packs together, on the
// changes it applies too, yet keeps every object it held (a deleted
// branch's and a planted unreachable object, both older than the prune
// grace), serves the refs, passes fsck, and writes nothing to its store.
func TestFollowerHousekeeping(t *testing.T) {
	g := newGroup(t)
	p := g.start(t, "p", t.TempDir(), "", "", nil)
	p.seed(t, "app")
	f := g.start(t, "f", t.TempDir(), "", p.addr, nil)
	work := clone(t, g, p)
	p.push(t, work, "first")

	// A branch pushed, then deleted: the primary keeps its objects until
	// its own grace period ends and may point a ref at them again, so
	// the follower must keep them however long.
	g.mustGit(t, work, "checkout", "-q", "-b", "topic")
	if err := os.WriteFile(filepath.Join(work, "topic.txt"), []byte("topic\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.mustGit(t, work, "add", ".")
	g.mustGit(t, work, "commit", "-q", "-m", "topic")
	topic := g.mustGit(t, work, "rev-parse", "HEAD")
	g.mustGit(t, work, "push", "-q", "origin", "HEAD:refs/heads/topic")
	g.mustGit(t, work, "push", "-q", "origin", ":refs/heads/topic")
	g.mustGit(t, work, "checkout", "-q", "-")
	for i := range 20 {
		p.push(t, work, fmt.Sprintf("push %d", i))
	}
	p.waitFollower(t, f)

	repo := f.store.RepoPath("app")
	st, err := housekeeping.Inspect(repo)
	if err != nil {
		t.Fatal(err)
	}
	if st.Packs < 20 {
		t.Fatalf("follower holds %d packs after 22 pushes, want one per push (each sent with its change): %+v", st.Packs, st)
	}
	// Everything the follower holds is a month old: what the primary's
	// full repack would drop if unreachable.
	planted := strings.TrimSpace(fgit(t, repo, "unreachable on the follower\n", "hash-object", "-w", "--stdin"))
	month := time.Now().Add(-30 * 24 * time.Hour)
	ageAll(t, repo, month)
	before := allObjects(t, repo)
	for _, h := range []string{planted, topic} {
		if !before[h] {
			t.Fatalf("follower lacks %s before housekeeping", h)
		}
	}
	pos := f.store.Position()

	m, err := housekeeping.New(housekeeping.Config{
		Store:  f.store,
		Logger: slog.New(slog.NewTextHandler(testWriter{t, "f housekeeping"}, nil)),
		Delay:  10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx, housekeeping.Follower) }()

	// Run looks at every repo at its start: the packs are folded into
	// one, the unreachable objects into a cruft pack beside it.
	waitInspect(t, repo, "the follower's packs folded", func(st housekeeping.Stats) bool {
		return st.Packs <= 2 && st.LooseObjects == 0 && st.MultiPackIndex && st.Bitmap && st.CommitGraph
	})
	if got := f.store.Position(); got != pos {
		t.Fatalf("follower's position moved from %d to %d by housekeeping", pos, got)
	}
	keptAll(t, repo, before)

	// Changes applied while it runs are housekept too: the store
	// notifies their ref changes as it does a push's.
	for i := 20; i < 40; i++ {
		p.push(t, work, fmt.Sprintf("push %d", i))
	}
	p.waitFollower(t, f)
	// At most 7 packs beside the multi-pack index wait for a repack; 20
	// were applied.
	waitInspect(t, repo, "the applied pushes' packs folded", func(st housekeeping.Stats) bool {
		return st.Packs <= 2+7 && st.MultiPackIndex && st.Bitmap
	})
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	keptAll(t, repo, before)
	// The follower's store holds the primary's changes and nothing else.
	if got, want := f.store.Position(), p.store.Position(); got != want {
		t.Fatalf("follower at position %d, primary at %d", got, want)
	}
	head := g.mustGit(t, work, "rev-parse", "HEAD")
	if got := f.served(t, "app", "main"); got != head {
		t.Fatalf("follower serves main at %q, want %s", got, head)
	}
	f.fsck(t)
	p.fsck(t)
}

// fgit runs git in a replica's repo directly, with stdin.
func fgit(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v in %s: %v", args, dir, err)
	}
	return string(out)
}

// allObjects lists every object of the repo at dir, loose and packed,
// reachable or not.
func allObjects(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := fgit(t, dir, "", "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
	objs := map[string]bool{}
	for _, h := range strings.Fields(out) {
		objs[h] = true
	}
	return objs
}

// keptAll fails unless the repo at dir holds every object of before.
func keptAll(t *testing.T, dir string, before map[string]bool) {
	t.Helper()
	after := allObjects(t, dir)
	var lost []string
	for h := range before {
		if !after[h] {
			lost = append(lost, h)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("housekeeping on the follower dropped %d of %d objects, e.g. %s", len(lost), len(before), lost[0])
	}
	t.Logf("%s: %d objects before housekeeping, %d now (git count-objects -v: %s)", dir, len(before), len(after),
		strings.Join(strings.Fields(fgit(t, dir, "", "count-objects", "-v")), " "))
}

// ageAll sets the mtime of every object file and pack of the repo at dir
// to at.
func ageAll(t *testing.T, dir string, at time.Time) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, "objects"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(path, at, at)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitInspect waits until the repo at dir's Stats satisfy ok.
func waitInspect(t *testing.T, dir, what string, ok func(housekeeping.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := housekeeping.Inspect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened: %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
