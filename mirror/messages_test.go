package mirror_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
)

// TestFirstSyncFailureMessage checks the one message a failed first sync
// gives: that nothing was added (and no promise of retries, as nothing is
// left to retry), with git's own last lines whole, down to git daemon's
// "errno=Connection refused" on the line after "fatal:".
func TestFirstSyncFailureMessage(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	_, err = f.mgr.Add(context.Background(), storage.Mirror{Repo: "gone", Upstream: "git://" + addr + "/x.git"}, nil)
	if err == nil {
		t.Fatal("add from a closed port succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"first sync of \"gone\" failed, so nothing was added", "the server is unreachable", "errno=Connection refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	for _, wrong := range []string{"retries", "keeps serving"} {
		if strings.Contains(msg, wrong) {
			t.Errorf("error %q promises what a failed add does not do (%q)", msg, wrong)
		}
	}
}

// TestFirstSyncTrigger checks that the first sync is recorded as the add
// it is, and later ones as what asked for them.
func TestFirstSyncTrigger(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	up := newUpstream(t, t.TempDir(), "up")
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "m", Upstream: "file://" + up.bare, Interval: 1 << 40}, nil); err != nil {
		t.Fatal(err)
	}
	up.commit()
	up.push("main")
	if _, err := f.mgr.Sync(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	recs, err := f.store.MirrorSyncs("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1].Trigger != "add" || recs[0].Trigger != "manual" {
		t.Fatalf("triggers (newest first) = %+v, want manual then add", recs)
	}
}

// TestPushMirrorURLErrorsSayRemote checks that a push mirror's bad URL is
// called the remote URL, not an upstream.
func TestPushMirrorURLErrorsSayRemote(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	if _, err := f.store.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"https://bob:hunter2@example.com/x.git", "ftp://example.com/x.git", "notaurl"} {
		_, err := f.mgr.AddPush(ctx, storage.PushMirror{Repo: "app", Remote: url}, nil)
		if err == nil || !strings.Contains(err.Error(), "remote") || strings.Contains(err.Error(), "upstream") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("AddPush(%s): %v", url, err)
		}
	}
	if ps, _ := f.store.PushMirrors("app"); len(ps) != 0 {
		t.Fatalf("refused push mirrors were stored: %+v", ps)
	}
}
