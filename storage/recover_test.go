package storage_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

// TestOpenMovesStrayRepoDirs checks that a repo directory left without a
// database entry (a create or delete cut short by a crash) is moved to
// DATA/lost+found at Open, so the name can be created again, and that the
// directories of known repos stay.
func TestOpenMovesStrayRepoDirs(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.CreateRepo(context.Background(), storage.Repo{Name: "team/kept"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, p := range []string{"stray.git", "team/stray.git"} {
		if out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(dir, "repos", p)).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v %s", err, out)
		}
	}
	s = open(t, dir)
	for _, p := range []string{"stray.git", "team/stray.git"} {
		if _, err := os.Stat(filepath.Join(dir, "repos", p)); !os.IsNotExist(err) {
			t.Errorf("stray %s still in repos/: %v", p, err)
		}
	}
	moved, _ := filepath.Glob(filepath.Join(dir, "lost+found", "*"))
	if len(moved) != 2 {
		t.Errorf("lost+found holds %v, want the two stray repos", moved)
	}
	if _, err := os.Stat(s.RepoPath("team/kept")); err != nil {
		t.Errorf("known repo moved: %v", err)
	}
	if _, err := s.CreateRepo(context.Background(), storage.Repo{Name: "stray"}); err != nil {
		t.Errorf("create of a name whose stray directory was moved: %v", err)
	}
}

// TestOpenClearsStaleLocks checks that the lock files and push quarantine
// a killed git leaves are removed at Open, so the next update of the ref
// succeeds.
func TestOpenClearsStaleLocks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.CreateRepo(context.Background(), storage.Repo{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	path := s.RepoPath("m")
	s.Close()
	stale := []string{"refs/heads/main.lock", "packed-refs.lock", "HEAD.lock", "config.lock"}
	for _, p := range stale {
		os.WriteFile(filepath.Join(path, p), nil, 0o644)
	}
	os.MkdirAll(filepath.Join(path, "objects", "incoming-abc", "pack"), 0o755)
	s = open(t, dir)
	for _, p := range append(stale, "objects/incoming-abc") {
		if _, err := os.Stat(filepath.Join(path, p)); !os.IsNotExist(err) {
			t.Errorf("%s left after Open: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(path, "config")); err != nil {
		t.Errorf("config removed: %v", err)
	}
}
