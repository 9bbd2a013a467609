package storage_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

// pushInto pushes a new commit (and an annotated tag of it) from a work
// clone into repo with the git CLI, receive-pack keeping the pack as
// fjord's push path does, and returns the commit.
func pushInto(t *testing.T, work, repo string, n int) string {
	t.Helper()
	env := append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", work}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(work, ".git")); err != nil {
		if out, err := exec.Command("git", "init", "-q", "-b", "main", work).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v: %s", err, out)
		}
	}
	os.WriteFile(filepath.Join(work, "f"), []byte(fmt.Sprintf("change %d\n", n)), 0o644)
	git("add", "f")
	git("commit", "-qm", fmt.Sprintf("change %d", n))
	git("tag", "-a", "-m", "release", fmt.Sprintf("v%d", n))
	git("push", "-q", "--receive-pack=git -c receive.unpackLimit=1 receive-pack", "file://"+repo, "HEAD:refs/heads/main", fmt.Sprintf("refs/tags/v%d", n))
	return git("rev-parse", "HEAD")
}

// followerOf returns a store with a repo "app", and a second store that
// holds a copy of it; fetch fetches from the first and counts in fetches.
func followerOf(t *testing.T) (from, to *storage.Store, fetch storage.FetchFunc, fetches *int) {
	t.Helper()
	from, to = open(t, t.TempDir()), open(t, t.TempDir())
	if _, err := from.CreateRepo(context.Background(), storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	replicate(t, from, to)
	fetches = new(int)
	fetch = func(ctx context.Context, repo, dir string, wants []string) error {
		*fetches++
		return fetchFrom(t, from)(ctx, repo, dir, wants)
	}
	return from, to, fetch, fetches
}

// TestApplyChangeInstallsSentPacks: a push's pack sent with its change is
// all a follower needs (no fetch); a damaged pack, or a change whose
// packs were not sent, falls back to fetching with git; either way the
// follower ends with the primary's refs, peeled tags included, and a repo
// that fscks clean.
func TestApplyChangeInstallsSentPacks(t *testing.T) {
	ctx := context.Background()
	from, to, countingFetch, fetched := followerOf(t)
	work := t.TempDir()
	apply := func(damage func([]storage.Pack)) {
		t.Helper()
		changes, err := from.ChangesSince(to.Position(), 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			packs := from.ChangePacks(c)
			if damage != nil {
				damage(packs)
			}
			if _, err := to.ApplyChange(ctx, c.Raw, nil, packs, countingFetch); err != nil {
				t.Fatalf("ApplyChange(%d): %v", c.Pos, err)
			}
		}
	}

	// The first push to a new repo: its pack goes along.
	pushInto(t, work, from.RepoPath("app"), 1)
	if _, err := from.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	last, _ := from.ChangesSince(from.Position()-1, 1)
	if len(last) != 1 || len(last[0].Packs) != 1 || len(from.ChangePacks(last[0])) != 1 {
		t.Fatalf("the push's change names packs %v; want its one pack, sent", last[0].Packs)
	}
	apply(nil)
	if *fetched != 0 {
		t.Fatalf("the follower fetched %d times for a change whose pack it was sent", *fetched)
	}
	sameState(t, from, to)
	if r, _ := to.Refs("app"); func() bool { tag, ok := r.Lookup("refs/tags/v1"); return !ok || tag.Peeled == "" }() {
		t.Fatalf("the follower's refs lack the tag's peeled commit: %+v", r.Refs)
	}

	// A pack cut short in transit is not installed: git fetches instead.
	pushInto(t, work, from.RepoPath("app"), 2)
	from.RefreshRefs(ctx, "app")
	apply(func(packs []storage.Pack) {
		for i := range packs {
			packs[i].Pack = packs[i].Pack[:len(packs[i].Pack)-7]
		}
	})
	if *fetched != 1 {
		t.Fatalf("a damaged pack led to %d fetches; want 1", *fetched)
	}
	sameState(t, from, to)

	// Deleting a branch needs no objects and goes through git's ref
	// transaction; the next push's pack goes along again.
	if out, err := exec.Command("git", "-C", from.RepoPath("app"), "update-ref", "-d", "refs/tags/v1").CombinedOutput(); err != nil {
		t.Fatalf("delete tag: %v: %s", err, out)
	}
	from.RefreshRefs(ctx, "app")
	pushInto(t, work, from.RepoPath("app"), 3)
	from.RefreshRefs(ctx, "app")
	apply(nil)
	if *fetched != 1 {
		t.Fatalf("fetches = %d after a delete and a push with its pack; want still 1", *fetched)
	}
	sameState(t, from, to)

	// Housekeeping's repack is not sent: its packs hold no new objects.
	unlock, err := from.LockRepoUpkeep(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", from.RepoPath("app"), "repack", "-a", "-d", "-q").CombinedOutput(); err != nil {
		t.Fatalf("repack: %v: %s", err, out)
	}
	unlock()
	commitInto(t, from.RepoPath("app"), "refs/heads/loose") // loose objects: nothing to send
	from.RefreshRefs(ctx, "app")
	last, _ = from.ChangesSince(from.Position()-1, 1)
	if len(last[0].Packs) != 0 {
		t.Fatalf("a change after a repack names packs %v; want none", last[0].Packs)
	}
	apply(nil)
	if *fetched != 2 {
		t.Fatalf("fetches = %d; want 2 (the loose commit)", *fetched)
	}
	sameState(t, from, to)
}

// TestBigPushIsFetched: a push whose pack is over MaxInlinePackBytes is
// not sent with its change (nor read into memory for it); the follower
// fetches it with git and ends with the same refs.
func TestBigPushIsFetched(t *testing.T) {
	ctx := context.Background()
	from, to, fetch, fetches := followerOf(t)
	work := t.TempDir()
	big := make([]byte, storage.MaxInlinePackBytes+1<<20)
	if _, err := rand.Read(big); err != nil { // incompressible
		t.Fatal(err)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "init", "-q", "-b", "main", work).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", work, "add", "big.bin").CombinedOutput(); err != nil {
		t.Fatalf("git add: %v: %s", err, out)
	}
	pushInto(t, work, from.RepoPath("app"), 1) // commits big.bin too
	from.RefreshRefs(ctx, "app")
	last, _ := from.ChangesSince(from.Position()-1, 1)
	if len(last[0].Packs) != 1 {
		t.Fatalf("the push's change names packs %v; want one", last[0].Packs)
	}
	if packs := from.ChangePacks(last[0]); packs != nil {
		t.Fatalf("ChangePacks sent %d packs of a push over %d bytes; want none", len(packs), storage.MaxInlinePackBytes)
	}
	if _, err := to.ApplyChange(ctx, last[0].Raw, nil, nil, fetch); err != nil {
		t.Fatal(err)
	}
	if *fetches != 1 {
		t.Fatalf("fetches = %d; want 1", *fetches)
	}
	sameState(t, from, to)
}
