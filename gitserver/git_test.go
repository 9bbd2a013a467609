package gitserver_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// TestGitCLI drives the real git CLI over real SSH with strict host key
// checking, in protocol v0 and v2: clone, push, fetch, pull, tags, shallow,
// partial and by-SHA fetches.
func TestGitCLI(t *testing.T) {
	e := newEnv(t, envOptions{})
	ci := e.user("ci", false)
	e.repo("app", false)
	if err := e.store.SetGrant("ci", "app", storage.AccessWrite); err != nil {
		t.Fatal(err)
	}
	work := e.seed(ci, "app", 3)
	e.mustGit(work, ci, "tag", "-a", "v1.0.0", "-m", "release")
	e.mustGit(work, ci, "tag", "light")
	e.mustGit(work, ci, "push", "-q", "origin", "--tags")
	first := e.mustGit(work, ci, "rev-parse", "HEAD~2")

	for _, proto := range []string{"0", "2"} {
		t.Run("protocol v"+proto, func(t *testing.T) {
			e := e.with(t)
			pv := "protocol.version=" + proto
			// ls-remote answered from the snapshot equals git's own view.
			got := e.mustGit("", ci, "-c", pv, "ls-remote", e.url("app"))
			want, err := exec.Command("git", "ls-remote", e.store.RepoPath("app")).Output()
			if err != nil {
				t.Fatal(err)
			}
			if got != strings.TrimSpace(string(want)) {
				t.Fatalf("ls-remote over SSH:\n%s\nwant (git on the bare repo):\n%s", got, want)
			}

			clone := filepath.Join(t.TempDir(), "clone")
			e.mustGit("", ci, "-c", pv, "clone", "-q", e.url("app.git"), clone)

			// A push from one clone is fetched and pulled by the other.
			os.WriteFile(filepath.Join(work, "new-"+proto), []byte("v"+proto), 0o644)
			e.mustGit(work, ci, "add", ".")
			e.mustGit(work, ci, "commit", "-q", "-m", "change over v"+proto)
			e.mustGit(work, ci, "-c", pv, "push", "-q", "origin", "HEAD:main")
			head := e.mustGit(work, ci, "rev-parse", "HEAD")
			e.mustGit(clone, ci, "-c", pv, "fetch", "-q", "origin")
			if got := e.mustGit(clone, ci, "rev-parse", "origin/main"); got != head {
				t.Fatalf("fetched origin/main = %s, want %s", got, head)
			}
			e.mustGit(clone, ci, "-c", pv, "pull", "-q", "--ff-only")
			if got := e.mustGit(clone, ci, "rev-parse", "HEAD"); got != head {
				t.Fatalf("pulled HEAD = %s, want %s", got, head)
			}
			if got := e.mustGit(clone, ci, "cat-file", "-t", "v1.0.0"); got != "tag" {
				t.Fatalf("annotated tag not fetched: %s", got)
			}

			// Shallow clone.
			shallow := filepath.Join(t.TempDir(), "shallow")
			e.mustGit("", ci, "-c", pv, "clone", "-q", "--depth", "1", e.url("app/"), shallow)
			if n := e.mustGit(shallow, ci, "rev-list", "--count", "HEAD"); n != "1" {
				t.Fatalf("shallow clone has %s commits", n)
			}

			// Partial clone: blobs of old commits stay on the server.
			partial := filepath.Join(t.TempDir(), "partial")
			e.mustGit("", ci, "-c", pv, "clone", "-q", "--filter=blob:none", "--no-checkout", e.url("app"), partial)
			missing := e.mustGit(partial, ci, "rev-list", "--objects", "--all", "--missing=print")
			if !strings.Contains(missing, "\n?") {
				t.Fatalf("partial clone fetched every blob:\n%s", missing)
			}

			// Fetch an old commit by SHA, as Argo CD does.
			bysha := filepath.Join(t.TempDir(), "bysha")
			e.mustGit("", ci, "init", "-q", bysha)
			e.mustGit(bysha, ci, "-c", pv, "fetch", "-q", "--depth", "1", e.url("app"), first)
			if got := e.mustGit(bysha, ci, "rev-parse", "FETCH_HEAD"); got != first {
				t.Fatalf("fetch by SHA gave %s, want %s", got, first)
			}

			// git archive over SSH.
			if out := e.mustGit("", ci, "archive", "--remote", e.url("app"), "--format=tar", "HEAD", "file0.txt"); !strings.Contains(out, "content 0") {
				t.Fatalf("archive output lacks file0.txt")
			}
		})
	}
}

// TestAtomicPush checks that an atomic push with one rejected ref updates
// none.
func TestAtomicPush(t *testing.T) {
	e := newEnv(t, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	work := e.seed(ci, "app", 2)
	e.mustGit(work, ci, "push", "-q", "origin", "HEAD:refs/heads/other")
	e.mustGit(work, ci, "reset", "-q", "--hard", "HEAD~1")
	os.WriteFile(filepath.Join(work, "x"), []byte("x"), 0o644)
	e.mustGit(work, ci, "add", ".")
	e.mustGit(work, ci, "commit", "-q", "-m", "diverge")
	before := e.repoState("app")
	// refs/heads/new would be fine; refs/heads/main is not a fast-forward.
	r := e.runGit(work, ci, "push", "--atomic", "origin", "HEAD:refs/heads/new", "HEAD:refs/heads/main")
	if r.err == nil {
		t.Fatalf("non-fast-forward atomic push succeeded:\n%s", r.out)
	}
	if !strings.Contains(r.out, "atomic push failed") && !strings.Contains(r.out, "rejected") {
		t.Fatalf("unexpected output:\n%s", r.out)
	}
	if refs, _ := e.store.Refs("app"); refs != nil {
		if _, ok := refs.Lookup("refs/heads/new"); ok {
			t.Fatal("atomic push created refs/heads/new although main was rejected")
		}
	}
	if after := e.repoState("app"); after != before {
		t.Fatalf("repo changed by a failed atomic push:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestPushUpdatesSnapshotAndNotifies checks that when git push returns, the
// snapshot already has the new commit and subscribers got the change.
func TestPushUpdatesSnapshotAndNotifies(t *testing.T) {
	e := newEnv(t, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	sub := e.store.Subscribe()
	defer sub.Close()
	work := e.seed(ci, "app", 1)
	head := e.mustGit(work, ci, "rev-parse", "HEAD")
	refs, _ := e.store.Refs("app")
	if refs.HeadHash != head {
		t.Fatalf("snapshot HEAD = %q right after push, want %s", refs.HeadHash, head)
	}
	select {
	case c := <-sub.C:
		want := storage.RefChange{Repo: "app", Ref: "refs/heads/main", New: head, Pos: e.store.Position()}
		if c != want {
			t.Fatalf("notification %+v, want %+v", c, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after push")
	}
	// Deleting a branch is a change too.
	e.mustGit(work, ci, "push", "-q", "origin", "HEAD:refs/heads/tmp")
	<-sub.C
	e.mustGit(work, ci, "push", "-q", "origin", ":refs/heads/tmp")
	select {
	case c := <-sub.C:
		if c.Ref != "refs/heads/tmp" || c.New != "" || c.Old != head {
			t.Fatalf("delete notification %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after branch delete")
	}
}

// TestParallelClones runs 50 clones at once; all must succeed.
func TestParallelClones(t *testing.T) {
	e := newEnv(t, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	work := e.seed(ci, "app", 5)
	head := e.mustGit(work, ci, "rev-parse", "HEAD")
	root := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(root, fmt.Sprint(i))
			proto := fmt.Sprint(2 * (i % 2))
			r := e.runGit("", ci, "-c", "protocol.version="+proto, "clone", "-q", e.url("app"), dir)
			if r.err != nil {
				errs <- fmt.Sprintf("clone %d: %v: %s", i, r.err, r.out)
				return
			}
			if got := e.runGit(dir, ci, "rev-parse", "HEAD"); strings.TrimSpace(got.out) != head {
				errs <- fmt.Sprintf("clone %d: HEAD %s, want %s", i, got.out, head)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
