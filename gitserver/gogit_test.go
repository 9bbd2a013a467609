package gitserver_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	gogitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// TestGoGit clones, pushes and fetches with the go-git v5 client (what
// Flux's source-controller and many tools embed), over SSH with the
// known_hosts file.
func TestGoGit(t *testing.T) {
	e := newEnv(t, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	e.seed(ci, "app", 2)

	auth, err := gogitssh.NewPublicKeysFromFile("git", ci.path, "")
	if err != nil {
		t.Fatal(err)
	}
	auth.HostKeyCallback, err = gogitssh.NewKnownHostsCallback(e.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dirA := filepath.Join(t.TempDir(), "a")
	a, err := git.PlainCloneContext(ctx, dirA, false, &git.CloneOptions{URL: e.url("app.git"), Auth: auth})
	if err != nil {
		t.Fatalf("go-git clone: %v", err)
	}
	wt, _ := a.Worktree()
	os.WriteFile(filepath.Join(dirA, "gogit.txt"), []byte("from go-git\n"), 0o644)
	wt.Add("gogit.txt")
	hash, err := wt.Commit("go-git commit", &git.CommitOptions{Author: &object.Signature{Name: "go-git", Email: "g@g", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.PushContext(ctx, &git.PushOptions{Auth: auth, RefSpecs: []config.RefSpec{"refs/heads/main:refs/heads/main"}}); err != nil {
		t.Fatalf("go-git push: %v", err)
	}
	if refs, _ := e.store.Refs("app"); refs.HeadHash != hash.String() {
		t.Fatalf("server HEAD %s after go-git push, want %s", refs.HeadHash, hash)
	}

	// A second clone, then a fetch of a commit pushed with the git CLI.
	b, err := git.PlainCloneContext(ctx, filepath.Join(t.TempDir(), "b"), true, &git.CloneOptions{URL: e.url("app"), Auth: auth})
	if err != nil {
		t.Fatalf("go-git clone: %v", err)
	}
	work := filepath.Join(t.TempDir(), "cli")
	e.mustGit("", ci, "clone", "-q", e.url("app"), work)
	e.mustGit(work, ci, "commit", "-q", "--allow-empty", "-m", "cli")
	e.mustGit(work, ci, "push", "-q")
	want := e.mustGit(work, ci, "rev-parse", "HEAD")
	if err := b.FetchContext(ctx, &git.FetchOptions{Auth: auth}); err != nil {
		t.Fatalf("go-git fetch: %v", err)
	}
	ref, err := b.Reference(plumbing.NewRemoteReferenceName("origin", "main"), true)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Hash().String() != want {
		t.Fatalf("go-git fetched %s, want %s", ref.Hash(), want)
	}
	// Nothing new: go-git reports so, answered from the snapshot.
	if err := b.FetchContext(ctx, &git.FetchOptions{Auth: auth}); err != git.NoErrAlreadyUpToDate {
		t.Fatalf("second fetch: %v, want already up to date", err)
	}
}
