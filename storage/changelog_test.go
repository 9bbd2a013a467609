package storage_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// fetchFrom returns a FetchFunc that fetches the wanted objects from the
// same repo of another store with the git CLI (protocol v2 serves any
// object asked for, as fjord's group key session does).
func fetchFrom(t *testing.T, from *storage.Store) storage.FetchFunc {
	return func(ctx context.Context, repo, dir string, wants []string) error {
		args := append([]string{"-C", dir, "-c", "protocol.version=2", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "file://" + from.RepoPath(repo)}, wants...)
		out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput()
		if err != nil {
			t.Logf("git fetch: %s", out)
		}
		return err
	}
}

// replicate applies every change of from that to lacks.
func replicate(t *testing.T, from, to *storage.Store) {
	t.Helper()
	ctx := context.Background()
	for {
		changes, err := from.ChangesSince(to.Position(), 3)
		if err != nil {
			t.Fatalf("ChangesSince(%d): %v", to.Position(), err)
		}
		if len(changes) == 0 {
			return
		}
		for _, c := range changes {
			files, err := from.ChangeFiles(c)
			if err != nil {
				t.Fatalf("ChangeFiles(%d): %v", c.Pos, err)
			}
			if _, err := to.ApplyChange(ctx, c.Raw, files, from.ChangePacks(c), fetchFrom(t, from)); err != nil {
				t.Fatalf("ApplyChange(%d): %v", c.Pos, err)
			}
		}
	}
}

// sameState fails unless two stores hold the same replicated metadata, the
// same refs in every repo and the same position.
func sameState(t *testing.T, a, b *storage.Store) {
	t.Helper()
	sa, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sa.Pos != sb.Pos || sa.Sum != sb.Sum {
		t.Fatalf("positions %d/%s and %d/%s differ", sa.Pos, sa.Sum, sb.Pos, sb.Sum)
	}
	if !reflect.DeepEqual(sa.Ops, sb.Ops) {
		for i := range min(len(sa.Ops), len(sb.Ops)) {
			if !reflect.DeepEqual(sa.Ops[i], sb.Ops[i]) {
				t.Fatalf("metadata differs at entry %d: %+v vs %+v", i, sa.Ops[i], sb.Ops[i])
			}
		}
		t.Fatalf("metadata differs: %d entries vs %d", len(sa.Ops), len(sb.Ops))
	}
	if len(sa.Refs) != len(sb.Refs) {
		t.Fatalf("ref snapshots of %d repos vs %d", len(sa.Refs), len(sb.Refs))
	}
	for repo, ra := range sa.Refs {
		rb := sb.Refs[repo]
		mem, _ := b.Refs(repo)
		if rb == nil || mem == nil || ra.Head != rb.Head || ra.HeadHash != rb.HeadHash || !reflect.DeepEqual(ra.Refs, rb.Refs) || !reflect.DeepEqual(ra.Refs, mem.Refs) || !reflect.DeepEqual(ra.Hidden, rb.Hidden) {
			t.Fatalf("refs of %q differ: %+v vs %+v (in memory %+v)", repo, ra, rb, mem)
		}
		out, err := exec.Command("git", "-C", b.RepoPath(repo), "fsck", "--no-progress").CombinedOutput()
		if err != nil {
			t.Fatalf("git fsck of %q: %v: %s", repo, err, out)
		}
	}
}

func TestChangeLogRecordsEveryWrite(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	steps := []struct {
		what string
		do   func() error
	}{
		{"create repo", func() error { _, err := s.CreateRepo(ctx, storage.Repo{Name: "team/app"}); return err }},
		{"update repo", func() error {
			_, err := s.UpdateRepo("team/app", func(r *storage.Repo) error { r.AnonRead = true; return nil })
			return err
		}},
		{"create user", func() error { _, err := s.CreateUser(storage.User{Name: "ci"}); return err }},
		{"grant", func() error { return s.SetGrant("ci", "team/app", storage.AccessWrite) }},
		{"push", func() error {
			commitInto(t, s.RepoPath("team/app"), "refs/heads/main")
			_, err := s.RefreshRefs(ctx, "team/app")
			return err
		}},
		{"mirror", func() error { return s.CreateMirror(storage.Mirror{Repo: "team/app", Upstream: "file:///x"}) }},
		{"mirror sync", func() error {
			return s.RecordMirrorSync("team/app", storage.MirrorSync{Trigger: "interval"}, func(m *storage.Mirror) {})
		}},
		{"project", func() error { _, err := s.PutProject("p", "kind: AppProject", "", nil); return err }},
		{"app", func() error {
			_, err := s.PutApp("web", "kind: Application", storage.AppMeta{Project: "p"})
			return err
		}},
		{"app status", func() error { return s.SetAppStatus("web", storage.AppStatus{Sync: storage.Synced}) }},
		{"delete app", func() error { return s.DeleteApp("web") }},
		{"delete user", func() error { return s.DeleteUser("ci") }},
		{"signing key", func() error {
			k, err := storage.ParseSigningKey("ci", []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host"))
			if err == nil {
				_, err = s.AddSigningKey(k)
			}
			return err
		}},
		{"delete signing key", func() error { return s.DeleteSigningKey("ci") }},
	}
	for _, st := range steps {
		before := s.Position()
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		if got := s.Position(); got != before+1 {
			t.Fatalf("%s: position %d -> %d, want one change", st.what, before, got)
		}
	}
	// A refresh that finds nothing new is no change.
	if _, err := s.RefreshRefs(ctx, "team/app"); err != nil || s.Position() != uint64(len(steps)) {
		t.Fatalf("idle refresh: position %d, err %v", s.Position(), err)
	}
	all, err := s.ChangesSince(0, 0)
	if err != nil || len(all) != len(steps) {
		t.Fatalf("ChangesSince(0) = %d changes, %v; want %d", len(all), err, len(steps))
	}
	push := all[4]
	if push.Repo != "team/app" || len(push.Refs) != 1 || push.Refs[0].Pos != 5 || push.Head != "refs/heads/main" {
		t.Fatalf("push change = %+v", push)
	}
	if rest, _ := s.ChangesSince(10, 1); len(rest) != 1 || rest[0].Pos != 11 {
		t.Fatalf("ChangesSince(10, 1) = %+v", rest)
	}

	// WaitChange wakes on the next change, and not before.
	woke := make(chan error, 1)
	go func() { woke <- s.WaitChange(ctx, s.Position()) }()
	if _, err := s.CreateUser(storage.User{Name: "late"}); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := s.WaitChange(short, s.Position()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitChange with nothing new = %v", err)
	}
}

func TestRefuseWrites(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	if _, err := s.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	s.RefuseWrites(errors.New("this replica follows fjord-0 at 10.0.0.1:2222"))
	pos := s.Position()
	if _, err := s.CreateUser(storage.User{Name: "x"}); !errors.Is(err, storage.ErrReadOnly) || !strings.Contains(err.Error(), "fjord-0 at 10.0.0.1:2222") {
		t.Fatalf("CreateUser on a read-only store = %v", err)
	}
	if _, err := s.CreateRepo(ctx, storage.Repo{Name: "new"}); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("CreateRepo on a read-only store = %v", err)
	}
	if _, err := os.Stat(s.RepoPath("new")); !os.IsNotExist(err) {
		t.Fatalf("a refused CreateRepo left %s: %v", s.RepoPath("new"), err)
	}
	if err := s.WriteCredentials(s.CredentialDir("mirror", "app"), "app", map[string][]byte{"password": []byte("x")}); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("WriteCredentials on a read-only store = %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.CredentialDir("mirror", "app"), "password")); !os.IsNotExist(err) {
		t.Fatalf("a refused WriteCredentials left the file: %v", err)
	}
	// A refresh that finds nothing new writes no change and passes; one
	// that finds a moved ref is refused.
	if _, err := s.RefreshRefs(ctx, "app"); err != nil {
		t.Fatalf("idle refresh on a read-only store: %v", err)
	}
	commitInto(t, s.RepoPath("app"), "refs/heads/main")
	if _, err := s.RefreshRefs(ctx, "app"); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("refresh of a moved ref on a read-only store = %v", err)
	}
	if s.Position() != pos {
		t.Fatalf("position moved from %d to %d while refusing writes", pos, s.Position())
	}
	s.RefuseWrites(nil)
	if _, err := s.CreateUser(storage.User{Name: "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestChangeLogIsTrimmed(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(context.Background(), dir, &storage.Options{ChangeLogSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if _, err := s.CreateUser(storage.User{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ChangesSince(1, 0); !errors.Is(err, storage.ErrChangesTrimmed) {
		t.Fatalf("ChangesSince(1) with changes 3-5 kept = %v, want ErrChangesTrimmed", err)
	}
	if got, err := s.ChangesSince(2, 0); err != nil || len(got) != 3 || got[0].Pos != 3 {
		t.Fatalf("ChangesSince(2) = %+v, %v", got, err)
	}
	if _, err := s.SumAt(1); !errors.Is(err, storage.ErrChangesTrimmed) {
		t.Fatalf("SumAt(1) = %v", err)
	}
}

// TestFollowerApplies replicates a primary store's changes into a follower
// store (objects fetched with git), then a full copy into a third, and
// checks all three agree, across a restart of the follower.
func TestFollowerApplies(t *testing.T) {
	ctx := context.Background()
	p := open(t, t.TempDir())
	fdir := t.TempDir()
	f := open(t, fdir)
	if _, err := p.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateRepo(ctx, storage.Repo{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateUser(storage.User{Name: "ci"}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetGrant("ci", "app", storage.AccessRead); err != nil {
		t.Fatal(err)
	}
	first := commitInto(t, p.RepoPath("app"), "refs/heads/main")
	if _, err := p.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	commitInto(t, p.RepoPath("app"), "refs/heads/dev")
	if _, err := p.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateMirror(storage.Mirror{Repo: "app", Upstream: "file:///x"}); err != nil {
		t.Fatal(err)
	}
	credDir := p.CredentialDir("mirror", "app")
	if err := p.WriteCredentials(credDir, "app", map[string][]byte{"password": []byte("s3cret"), "username": []byte("ci")}); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveCredentials(credDir, "app", []string{"username"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.RecordMirrorSync("app", storage.MirrorSync{Trigger: "interval"}, func(*storage.Mirror) {}); err != nil {
			t.Fatal(err)
		}
	}
	sub := f.Subscribe()
	defer sub.Close()
	replicate(t, p, f)
	sameState(t, p, f)
	select {
	case c := <-sub.C:
		if c.Repo != "app" || c.New != first {
			t.Fatalf("follower's first notification %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follower did not notify the refs it moved")
	}
	if f.AccessFor(&storage.User{Name: "ci"}, "app") != storage.AccessRead {
		t.Fatal("the grant did not replicate")
	}
	sameCredentials(t, p, f, "password")

	// A hidden ref (a history protection backup) replicates, but is
	// neither advertised nor notified.
	backup := commitInto(t, p.RepoPath("app"), "refs/fjord/backup/1/main")
	if _, err := p.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	for range 1 { // drain the notification of dev
		<-sub.C
	}
	replicate(t, p, f)
	sameState(t, p, f)
	if out, err := exec.Command("git", "-C", f.RepoPath("app"), "rev-parse", "refs/fjord/backup/1/main").Output(); err != nil || strings.TrimSpace(string(out)) != backup {
		t.Fatalf("hidden ref on the follower: %s, %v; want %s", out, err, backup)
	}
	if refs, _ := f.Refs("app"); len(refs.Refs) != 2 {
		t.Fatalf("follower advertises %+v", refs.Refs)
	}
	select {
	case c := <-sub.C:
		t.Fatalf("follower notified a hidden ref: %+v", c)
	default:
	}

	// A branch deleted, a repo deleted, a ref moved back: all replicate,
	// and a follower reopened goes on from its position.
	if err := exec.Command("git", "-C", p.RepoPath("app"), "update-ref", "-d", "refs/heads/dev").Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteRepo(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f, err := storage.Open(ctx, fdir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	replicate(t, p, f)
	sameState(t, p, f)
	if _, err := os.Stat(f.RepoPath("gone")); !os.IsNotExist(err) {
		t.Fatalf("deleted repo still on the follower's disk: %v", err)
	}
	// Applying a change out of order is refused.
	all, _ := p.ChangesSince(0, 0)
	if _, err := f.ApplyChange(ctx, all[0].Raw, nil, nil, nil); !errors.Is(err, storage.ErrPositionGap) {
		t.Fatalf("re-applying change 1 = %v, want ErrPositionGap", err)
	}

	// A new member gets a full copy and then follows the log from there.
	n := open(t, t.TempDir())
	if _, err := n.CreateRepo(ctx, storage.Repo{Name: "stray"}); err != nil { // a divergent leftover
		t.Fatal(err)
	}
	snap, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ApplySnapshot(ctx, snap, fetchFrom(t, p)); err != nil {
		t.Fatal(err)
	}
	sameState(t, p, n)
	sameCredentials(t, p, n, "password")
	if _, err := os.Stat(n.RepoPath("stray")); !os.IsNotExist(err) {
		t.Fatalf("a repo the primary lacks survived the full copy: %v", err)
	}
	if _, err := n.ChangesSince(0, 0); !errors.Is(err, storage.ErrChangesTrimmed) {
		t.Fatalf("a fully copied store claims changes before its copy: %v", err)
	}
	commitInto(t, p.RepoPath("app"), "refs/tags/v1")
	if _, err := p.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := p.RecordMirrorSync("app", storage.MirrorSync{Trigger: "webhook"}, func(*storage.Mirror) {}); err != nil {
		t.Fatal(err)
	}
	replicate(t, p, n)
	replicate(t, p, f)
	sameState(t, p, n)
	sameState(t, p, f)

	// Deleting the mirror removes its secrets everywhere.
	if err := p.DeleteMirror("app"); err != nil {
		t.Fatal(err)
	}
	replicate(t, p, f)
	if _, err := os.Stat(f.CredentialDir("mirror", "app")); !os.IsNotExist(err) {
		t.Fatalf("the deleted mirror's credentials are still on the follower: %v", err)
	}
}

// sameCredentials fails unless b holds a's mirror credentials for app,
// exactly the files named, 0600.
func sameCredentials(t *testing.T, a, b *storage.Store, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(b.CredentialDir("mirror", "app"))
	if err != nil || len(ents) != len(names) {
		t.Fatalf("follower's credentials: %v, %v; want %v", ents, err, names)
	}
	for _, name := range names {
		want, _ := os.ReadFile(filepath.Join(a.CredentialDir("mirror", "app"), name))
		path := filepath.Join(b.CredentialDir("mirror", "app"), name)
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(want) {
			t.Fatalf("credential %s on the follower: %q, %v; want %q", name, got, err, want)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("credential %s has mode %v", name, fi.Mode())
		}
	}
}

// TestWritesGoThroughTheChangeLog keeps every write of the store in
// Store.update, so none is missed by followers: a bbolt write anywhere
// else in storage fails this test.
func TestWritesGoThroughTheChangeLog(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"changelog.go": true, "follow.go": true, "store.go": true, "backup.go": true}
	// The store's own write methods are lower case (tx.put, tx.del); a
	// capitalised one is bbolt's.
	write := regexp.MustCompile(`\.db\.Update\(|\.(Put|Delete|DeleteBucket|SetSequence|NextSequence)\(`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || allowed[f] {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if loc := write.FindIndex(src); loc != nil {
			line := 1 + strings.Count(string(src[:loc[0]]), "\n")
			t.Errorf("%s:%d: a bbolt write outside Store.update (use s.update and tx.put/tx.del/tx.putJSON so followers get it)", f, line)
		}
	}
}

// TestChangeLogHoldsNoSecrets puts and rotates a cluster token and a
// mirror password: neither the old nor the new secret is anywhere in the
// bytes of fjord.db (the change log included) nor in a backup's copy of
// it, and a follower still gets the current secrets, never the rotated.
func TestChangeLogHoldsNoSecrets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := open(t, dir)
	secrets := []string{"old-cluster-token-4711", "new-cluster-token-4712", "old-mirror-pw-4713", "new-mirror-pw-4714"}
	for _, tok := range secrets[:2] {
		if _, err := p.PutCluster(storage.Cluster{Name: "edge", Server: "https://edge.example.com:6443"}, storage.ClusterCredentials{Token: tok}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateMirror(storage.Mirror{Repo: "app", Upstream: "file:///x"}); err != nil {
		t.Fatal(err)
	}
	credDir := p.CredentialDir("mirror", "app")
	for _, pw := range secrets[2:] {
		if err := p.WriteCredentials(credDir, "app", map[string][]byte{"password": []byte(pw)}); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(t.TempDir(), "b")
	if _, err := p.Backup(ctx, backup, nil); err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{filepath.Join(dir, "fjord.db"), filepath.Join(backup, "fjord.db")} {
		raw, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			// JSON holds []byte as base64.
			if strings.Contains(string(raw), s) || strings.Contains(string(raw), base64.StdEncoding.EncodeToString([]byte(s))) {
				t.Errorf("%s holds the secret %q", db, s)
			}
		}
	}

	f := open(t, t.TempDir())
	replicate(t, p, f)
	sameState(t, p, f)
	creds, err := f.ClusterCredentials(storage.Cluster{Name: "edge", Credentials: []string{storage.ClusterTokenFile}})
	if err != nil || creds.Token != secrets[1] {
		t.Fatalf("follower's cluster token %q, %v; want the rotated-in %q", creds.Token, err, secrets[1])
	}
	sameCredentials(t, p, f, "password")

	// A change whose file was since removed sends nothing for it.
	changes, err := p.ChangesSince(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteCluster("edge"); err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		files, err := p.ChangeFiles(c)
		if err != nil {
			t.Fatal(err)
		}
		for path := range files {
			if strings.HasPrefix(path, "cluster/edge/") {
				t.Errorf("change %d sends %s after the cluster was deleted", c.Pos, path)
			}
		}
	}
}
