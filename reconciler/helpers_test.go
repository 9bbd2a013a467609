package reconciler_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

func openStore(t testing.TB, dir string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// work is a clone of a fjord repo in which a test commits, as CI would,
// and pushes by file path; push then refreshes the store's snapshot, which
// is what gitserver does after a push and fires the notification.
type work struct {
	t     testing.TB
	store *storage.Store
	repo  string
	dir   string
}

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=ci", "GIT_AUTHOR_EMAIL=ci@example.com",
		"GIT_COMMITTER_NAME=ci", "GIT_COMMITTER_EMAIL=ci@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newWork creates repo in store and a clone holding the files under
// testdata/src (if src is not empty), committed and pushed.
func newWork(t testing.TB, store *storage.Store, repo, src string) *work {
	t.Helper()
	if _, err := store.CreateRepo(context.Background(), storage.Repo{Name: repo}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	git(t, dir, "clone", "-q", store.RepoPath(repo), ".")
	git(t, dir, "checkout", "-q", "-b", "main")
	w := &work{t: t, store: store, repo: repo, dir: dir}
	if src != "" {
		err := filepath.WalkDir(filepath.Join("testdata", src), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join("testdata", src), p)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			w.write(rel, string(b))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		w.commit("seed")
	}
	return w
}

func (w *work) write(rel, content string) {
	w.t.Helper()
	p := filepath.Join(w.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *work) read(rel string) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, rel))
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

func (w *work) remove(rel string) {
	w.t.Helper()
	git(w.t, w.dir, "rm", "-q", rel)
}

// sed replaces old with new in a file, as a CI job bumping a tag does.
func (w *work) sed(rel, old, new string) {
	w.t.Helper()
	s := w.read(rel)
	if !strings.Contains(s, old) {
		w.t.Fatalf("%s does not contain %q", rel, old)
	}
	w.write(rel, strings.Replace(s, old, new, 1))
}

// commit commits everything, pushes it and refreshes the snapshot; it
// returns the new commit.
func (w *work) commit(msg string) string {
	w.t.Helper()
	c := w.push(msg)
	w.refresh()
	return c
}

// push commits and pushes without telling the store: refresh is the
// moment the push lands, as gitserver sees it.
func (w *work) push(msg string) string {
	w.t.Helper()
	git(w.t, w.dir, "add", "-A")
	git(w.t, w.dir, "commit", "-q", "-m", msg)
	git(w.t, w.dir, "push", "-q", "origin", "HEAD:refs/heads/main")
	return git(w.t, w.dir, "rev-parse", "HEAD")
}

// refresh is what gitserver does after a push: it fires the notification.
func (w *work) refresh() {
	w.t.Helper()
	if _, err := w.store.RefreshRefs(context.Background(), w.repo); err != nil {
		w.t.Fatal(err)
	}
}
