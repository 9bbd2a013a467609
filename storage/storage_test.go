package storage_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, dir string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNormalizeRepoName(t *testing.T) {
	good := map[string]string{
		"app":            "app",
		"/app":           "app",
		"app.git":        "app",
		"/team/app.git/": "team/app",
		"a_b-c.d":        "a_b-c.d",
	}
	for in, want := range good {
		got, err := storage.NormalizeRepoName(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRepoName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/", "..", "a/../b", "../etc/passwd", "//etc/passwd", "~root/x",
		"a\x00b", "a\nb", "a\tb", "a//b", "./a", ".hidden", "-flag", "a b", "a;b", "a/.git/b", "x.git/y",
		strings.Repeat("a", 200)} {
		if got, err := storage.NormalizeRepoName(in); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("NormalizeRepoName(%q) = %q, %v; want ErrInvalidName", in, got, err)
		}
	}
}

func TestSchemaTooNewIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, "fjord.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, storage.SchemaVersion+1))
	})
	db.Close()
	_, err = storage.Open(context.Background(), dir, nil)
	if !errors.Is(err, storage.ErrSchemaTooNew) {
		t.Fatalf("Open of newer schema: err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "newer fjord") {
		t.Errorf("error %q does not say what to do", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	_, err := storage.Open(context.Background(), dir, &storage.Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
}

func TestRepoLifecycleAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	r, err := s.CreateRepo(ctx, storage.Repo{Name: "/team/app.git"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "team/app" {
		t.Fatalf("name = %q", r.Name)
	}
	if _, err := s.CreateRepo(ctx, storage.Repo{Name: "team/app"}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "repos", "team", "app.git", "HEAD")); err != nil || fi.IsDir() {
		t.Fatalf("bare repo missing: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "repos", ".tmp")); len(ents) != 0 {
		t.Fatalf("temp dir not cleaned: %v", ents)
	}

	// A commit pushed behind the store's back shows up on refresh, with a
	// notification.
	sub := s.Subscribe()
	defer sub.Close()
	hash := commitInto(t, s.RepoPath("team/app"), "refs/heads/main")
	changes, err := s.RefreshRefs(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	// The change is the one after the repo's creation in the change log.
	want := storage.RefChange{Repo: "team/app", Ref: "refs/heads/main", New: hash, Pos: 2}
	if len(changes) != 1 || changes[0] != want {
		t.Fatalf("changes = %+v, want %+v", changes, want)
	}
	select {
	case got := <-sub.C:
		if got != want {
			t.Fatalf("notification = %+v, want %+v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	if refs, _ := s.Refs("team/app"); refs.HeadHash != hash || refs.Head != "refs/heads/main" {
		t.Fatalf("snapshot = %+v", refs)
	}
	// An unchanged refresh reports nothing.
	if changes, _ := s.RefreshRefs(ctx, "team/app"); len(changes) != 0 {
		t.Fatalf("no-op refresh reported %v", changes)
	}

	u, err := s.CreateUser(storage.User{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetGrant("ci", "team/app", storage.AccessWrite); err != nil {
		t.Fatal(err)
	}
	if a := s.AccessFor(&u, "team/app"); a != storage.AccessWrite {
		t.Fatalf("access = %v", a)
	}
	s.Close()

	// Restart: everything is still there, and the snapshot is read from disk.
	s2 := open(t, dir)
	if refs, ok := s2.Refs("team/app"); !ok || refs.HeadHash != hash {
		t.Fatalf("after restart snapshot = %+v, %v", refs, ok)
	}
	u2, err := s2.User("ci")
	if err != nil {
		t.Fatal(err)
	}
	if a := s2.AccessFor(&u2, "team/app"); a != storage.AccessWrite {
		t.Fatalf("after restart access = %v", a)
	}
	if err := s2.DeleteRepo(ctx, "team/app"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s2.RepoPath("team/app")); !os.IsNotExist(err) {
		t.Fatalf("repo dir still there: %v", err)
	}
	if g, _ := s2.Grants(); len(g) != 0 {
		t.Fatalf("grants of a deleted repo remain: %v", g)
	}
}

func TestAccess(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	s.CreateRepo(ctx, storage.Repo{Name: "private"})
	s.CreateRepo(ctx, storage.Repo{Name: "public", AnonRead: true})
	admin, _ := s.CreateUser(storage.User{Name: "root", Admin: true})
	bob, _ := s.CreateUser(storage.User{Name: "bob"})
	s.SetGrant("bob", "private", storage.AccessRead)
	cases := []struct {
		user *storage.User
		repo string
		want storage.Access
	}{
		{nil, "private", storage.AccessNone},
		{nil, "public", storage.AccessRead},
		{nil, "missing", storage.AccessNone},
		{&bob, "private", storage.AccessRead},
		{&bob, "public", storage.AccessRead},
		{&bob, "missing", storage.AccessNone},
		{&admin, "private", storage.AccessAdmin},
		{&admin, "missing", storage.AccessNone},
	}
	for _, c := range cases {
		if got := s.AccessFor(c.user, c.repo); got != c.want {
			name := "anonymous"
			if c.user != nil {
				name = c.user.Name
			}
			t.Errorf("AccessFor(%s, %s) = %v, want %v", name, c.repo, got, c.want)
		}
	}
	if !s.AnyAnonRead() {
		t.Error("AnyAnonRead = false with a public repo")
	}
	if err := s.SetGrant("bob", "missing", storage.AccessRead); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("grant on missing repo: %v", err)
	}
}

func TestKeysBelongToOneUser(t *testing.T) {
	s := open(t, t.TempDir())
	key, err := storage.ParseKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(storage.User{Name: "a", Keys: []storage.Key{key}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(storage.User{Name: "b", Keys: []storage.Key{key}}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("same key for second user: %v", err)
	}
	u, err := s.UserByKey(key.Fingerprint)
	if err != nil || u.Name != "a" {
		t.Fatalf("UserByKey = %v, %v", u.Name, err)
	}
	if _, err := storage.ParseKey("ssh-ed25519 not-base64"); err == nil {
		t.Fatal("garbage key parsed")
	}
	// The --admin-key bootstrap is idempotent and promotes the owner.
	if u, err := s.EnsureAdminKey(key); err != nil || !u.Admin || u.Name != "a" {
		t.Fatalf("EnsureAdminKey = %+v, %v", u, err)
	}
	if err := s.DeleteUser("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UserByKey(key.Fingerprint); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("key of deleted user still resolves: %v", err)
	}
}

// commitInto writes one commit straight into a bare repo with the git CLI
// and points ref at it.
func commitInto(t *testing.T, repo, ref string) string {
	t.Helper()
	env := append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
	git := func(stdin string, args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	blob := git("hello\n", "hash-object", "-w", "--stdin")
	tree := git("100644 blob "+blob+"\tREADME\n", "mktree")
	commit := git("", "commit-tree", tree, "-m", "first")
	git("", "update-ref", ref, commit)
	return commit
}
