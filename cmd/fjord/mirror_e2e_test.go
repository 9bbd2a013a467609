package main_test

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMirrorKilledMidFetch kills `fjord serve` with SIGKILL while a mirror
// is fetching a large change, then restarts it: the repo must still hold
// the previous consistent state, serve it, and sync to the new one.
func TestMirrorKilledMidFetch(t *testing.T) {
	s := newSession(t)
	s.start("--admin-key", s.key+".pub")
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)

	up := filepath.Join(s.dir, "upstream.git")
	work := filepath.Join(s.dir, "upwork")
	s.mustGit("", "init", "-q", "--bare", "--initial-branch=main", up)
	s.mustGit("", "init", "-q", "--initial-branch=main", work)
	os.WriteFile(filepath.Join(work, "README"), []byte("small\n"), 0o644)
	s.mustGit(work, "add", ".")
	s.mustGit(work, "commit", "-q", "-m", "small")
	s.mustGit(work, "push", "-q", up, "main")
	old := s.mustGit(work, "rev-parse", "HEAD")

	out := s.mustFjord("mirror", "add", "gitops", "--upstream", "file://"+up, "--interval", "1h")
	if !strings.Contains(out, "mirror gitops added") {
		t.Fatalf("mirror add: %q", out)
	}

	// A large change upstream: random data does not compress, so pack
	// and index take long enough to be killed in the middle.
	big := make([]byte, 48<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644)
	s.mustGit(work, "add", ".")
	s.mustGit(work, "commit", "-q", "-m", "big")
	s.mustGit(work, "push", "-q", up, "main")
	newHead := s.mustGit(work, "rev-parse", "HEAD")

	mirrorRepo := filepath.Join(s.data, "repos", "gitops.git")
	go s.fjord("mirror", "sync", "gitops")
	// Wait until git is writing the incoming pack, then SIGKILL fjord.
	caught := false
	for i := 0; i < 5000 && !caught; i++ {
		// index-pack writes tmp_pack_*; a pack of few objects is unpacked
		// into loose objects written as tmp_obj_*.
		packs, _ := filepath.Glob(filepath.Join(mirrorRepo, "objects", "pack", "tmp_pack_*"))
		objs, _ := filepath.Glob(filepath.Join(mirrorRepo, "objects", "*", "tmp_obj_*"))
		caught = len(packs)+len(objs) > 0
		if !caught {
			time.Sleep(2 * time.Millisecond)
		}
	}
	s.serve.Process.Signal(syscall.SIGKILL)
	s.serve.Wait()
	s.serve = nil
	s.log.Close()
	if !caught {
		t.Log("the fetch finished before it could be caught; the restart checks still run")
	}
	got := s.mustGit("", "--git-dir", mirrorRepo, "rev-parse", "refs/heads/main")
	if caught && got != old {
		t.Fatalf("killed mid-fetch, yet main moved to %s (want the old %s)", got, old)
	}
	if got != old && got != newHead {
		t.Fatalf("after kill -9, main = %s: neither the old nor the new commit", got)
	}
	s.mustGit("", "--git-dir", mirrorRepo, "fsck", "--connectivity-only", "--no-progress")

	// Restart: it serves a consistent state and then syncs to the new one.
	s.start()
	clone := filepath.Join(s.dir, "clone")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/gitops", clone)
	if got := s.mustGit(clone, "rev-parse", "HEAD"); got != old && got != newHead {
		t.Fatalf("served HEAD %s after restart", got)
	}
	out = s.mustFjord("mirror", "sync", "gitops")
	if got := s.mustGit("", "--git-dir", mirrorRepo, "rev-parse", "refs/heads/main"); got != newHead {
		t.Fatalf("after restart and sync main = %s, want %s (%s)", got, newHead, out)
	}
	s.mustGit("", "--git-dir", mirrorRepo, "fsck", "--connectivity-only", "--no-progress")

	// The CLI around it.
	var list []struct {
		Repo      string `json:"repo"`
		Upstream  string `json:"upstream"`
		LastError string `json:"lastError"`
	}
	if err := json.Unmarshal([]byte(s.mustFjord("mirror", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Repo != "gitops" || list[0].Upstream != "file://"+up || list[0].LastError != "" {
		t.Fatalf("mirror list -o json: %+v", list)
	}
	var syncs []struct {
		Trigger string `json:"trigger"`
		Fetched bool   `json:"fetched"`
	}
	json.Unmarshal([]byte(s.mustFjord("mirror", "status", "gitops", "-o", "json")), &syncs)
	fetched := 0
	for i, r := range syncs {
		// Newest first: the oldest is the add's first sync.
		if want := map[bool]string{true: "add", false: "manual"}[i == len(syncs)-1]; r.Trigger != want {
			t.Fatalf("sync %d has trigger %q, want %q: %+v", i, r.Trigger, want, syncs)
		}
		if r.Fetched {
			fetched++
		}
	}
	if len(syncs) < 2 || fetched < 2 {
		t.Fatalf("mirror status -o json: %+v", syncs)
	}
	if out := s.mustFjord("mirror", "sync", "gitops"); !strings.Contains(out, "up to date") {
		t.Fatalf("sync of an unchanged mirror: %q", out)
	}
	// Force-push upstream: history shows it.
	s.mustGit(work, "reset", "-q", "--hard", "HEAD~1")
	s.mustGit(work, "commit", "-q", "--allow-empty", "-m", "rewritten")
	s.mustGit(work, "push", "-q", "--force", up, "main")
	s.mustFjord("mirror", "sync", "gitops")
	if out := s.mustFjord("mirror", "history", "gitops"); !strings.Contains(out, "force-push") || !strings.Contains(out, newHead[:12]) {
		t.Fatalf("mirror history: %q", out)
	}
	// Pushing to the mirror is refused.
	s.mustGit(clone, "commit", "-q", "--allow-empty", "-m", "local")
	if out, err := s.git(clone, "push", "origin", "HEAD:main"); err == nil || !strings.Contains(out, "read-only mirror of file://"+up) {
		t.Fatalf("push to mirror: %v %q", err, out)
	}
}

// TestMirrorURLRefusedFirst checks that a URL with a password is refused
// before the CLI says anything about syncing or pushing, and that a push
// mirror's URL is called the remote.
func TestMirrorURLRefusedFirst(t *testing.T) {
	s := newSession(t)
	s.start("--admin-key", s.key+".pub")
	s.mustFjord("repo", "create", "app")
	out, err := s.fjord("mirror", "add", "m", "--upstream", "https://bob:hunter2@example.com/x.git")
	if err == nil || !strings.Contains(out, "--upstream: upstream URL contains a password") || strings.Contains(out, "syncing") || strings.Contains(out, "hunter2") {
		t.Errorf("mirror add with a password in the URL: %v %q", err, out)
	}
	out, err = s.fjord("pushmirror", "add", "app", "--remote", "https://bob:hunter2@example.com/x.git")
	if err == nil || !strings.Contains(out, "--remote: remote URL contains a password") || strings.Contains(out, "pushing") || strings.Contains(out, "upstream") {
		t.Errorf("pushmirror add with a password in the URL: %v %q", err, out)
	}
}

// TestMirrorRestoreAndUpdate recovers an upstream force-push from the CLI
// as the README says (mirror history for the event ID and the full hidden
// ref, mirror restore to a new branch, a clone that has it), and changes a
// mirror with mirror update instead of delete-and-add.
func TestMirrorRestoreAndUpdate(t *testing.T) {
	s := newSession(t)
	s.start("--admin-key", s.key+".pub")
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)
	up := filepath.Join(s.dir, "upstream.git")
	work := filepath.Join(s.dir, "upwork")
	s.mustGit("", "init", "-q", "--bare", "--initial-branch=main", up)
	s.mustGit("", "clone", "-q", up, work)
	s.mustGit(work, "commit", "-q", "--allow-empty", "-m", "one")
	s.mustGit(work, "commit", "-q", "--allow-empty", "-m", "two: the work that gets lost")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")
	lost := s.mustGit(work, "rev-parse", "HEAD")
	s.mustFjord("mirror", "add", "gitops", "--upstream", "file://"+up, "--interval", "1h")

	s.mustGit(work, "reset", "-q", "--hard", "HEAD~1")
	s.mustGit(work, "commit", "-q", "--allow-empty", "-m", "two, rewritten")
	s.mustGit(work, "push", "-q", "--force", "origin", "HEAD:main")
	s.mustFjord("mirror", "sync", "gitops")

	hist := s.mustFjord("mirror", "history", "gitops")
	var id, backup string
	for _, l := range strings.Split(hist, "\n") {
		if f := strings.Fields(l); len(f) >= 8 && f[3] == "force-push" {
			id, backup = f[0], f[len(f)-1]
		}
	}
	if id == "" || !strings.HasPrefix(backup, "refs/fjord/backup/") || !strings.HasSuffix(backup, "/refs/heads/main") || !strings.Contains(hist, "fjord mirror restore gitops ID") {
		t.Fatalf("mirror history shows no event ID, full backup ref and restore hint:\n%s", hist)
	}
	out := s.mustFjord("mirror", "restore", "gitops", id, "--to-branch", "rescued")
	if !strings.Contains(out, "to the upstream's refs/heads/rescued") || !strings.Contains(out, "+ refs/heads/rescued "+lost[:12]) {
		t.Fatalf("mirror restore: %q", out)
	}
	if got := s.mustGit("", "--git-dir", up, "rev-parse", "refs/heads/rescued"); got != lost {
		t.Fatalf("upstream's rescued = %s, want %s", got, lost)
	}
	clone := filepath.Join(s.dir, "clone")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/gitops", clone)
	if got := s.mustGit(clone, "rev-parse", "origin/rescued"); got != lost {
		t.Fatalf("fjord serves rescued at %s, want %s", got, lost)
	}
	if out, err := s.fjord("mirror", "restore", "gitops", "x"); err == nil || !strings.Contains(out, "ID column of fjord mirror history") {
		t.Fatalf("restore with a bad event: %v %q", err, out)
	}

	// mirror update: interval and retention in place, history kept.
	out = s.mustFjord("mirror", "update", "gitops", "--interval", "2h", "--retention", "5")
	if !strings.Contains(out, "interval 2h0m0s, retention 5") {
		t.Fatalf("mirror update: %q", out)
	}
	var list []struct {
		Interval  int64 `json:"interval"`
		Retention int   `json:"retention"`
	}
	json.Unmarshal([]byte(s.mustFjord("mirror", "list", "-o", "json")), &list)
	if len(list) != 1 || list[0].Interval != int64(2*time.Hour) || list[0].Retention != 5 {
		t.Fatalf("mirror list after update: %+v", list)
	}
	if !strings.Contains(s.mustFjord("mirror", "history", "gitops"), backup) {
		t.Fatal("mirror update lost the history")
	}
	secret := filepath.Join(s.dir, "hook_secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	if out := s.mustFjord("mirror", "update", "gitops", "--webhook-secret-file", secret); !strings.Contains(out, "credentials webhook_secret") {
		t.Fatalf("mirror update --webhook-secret-file: %q", out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"mirror", "update", "gitops"}, "nothing to change"},
		{[]string{"mirror", "update", "gitops", "--remove", "token"}, "has no token to remove"},
		{[]string{"mirror", "update", "gitops", "--remove", "password"}, "give ssh-key, token or webhook-secret"},
		{[]string{"mirror", "update", "gitosp", "--interval", "1m"}, `did you mean "gitops"?`},
	} {
		if out, err := s.fjord(c.args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("fjord %v: %v %q, want %q", c.args, err, out, c.want)
		}
	}
}
