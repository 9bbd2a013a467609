package mirror_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
)

// TestRestore recovers an upstream force-push: the old tip kept by history
// protection goes back to the upstream, onto a new branch or onto its own
// ref, and the mirror serves it after the sync that follows. A restore
// never overwrites upstream work pushed since, nor an existing branch.
func TestRestore(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	up := newUpstream(t, t.TempDir(), "up")
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "m", Upstream: "file://" + up.bare, Interval: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	lost := up.commit()
	up.push("main")
	f.mgr.Sync(ctx, "m")
	// Someone force-pushes the commit away, and deletes a tag.
	git(t, up.work, "tag", "v1", lost)
	up.push("v1")
	f.mgr.Sync(ctx, "m")
	git(t, up.work, "reset", "-q", "--hard", "HEAD~1")
	rewritten := up.commit()
	up.push("--force", "main")
	git(t, up.work, "push", "-q", "origin", ":refs/tags/v1")
	if _, err := f.mgr.Sync(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	evs, _ := f.store.MirrorEvents("m", 0)
	var push, del storage.MirrorEvent
	for _, e := range evs {
		switch e.Kind {
		case "force-push":
			push = e
		case "delete":
			del = e
		}
	}
	if push.ID == 0 || push.Old != lost || del.ID == 0 || del.Ref != "refs/tags/v1" {
		t.Fatalf("events: %+v", evs)
	}
	upRef := func(ref string) string {
		out := git(t, "", "--git-dir", up.bare, "for-each-ref", "--format=%(objectname)", ref)
		return strings.TrimSpace(out)
	}
	localRef := func(ref string) string {
		return strings.TrimSpace(git(t, "", "--git-dir", f.store.RepoPath("m"), "for-each-ref", "--format=%(objectname)", ref))
	}

	// To a new branch: upstream and mirror have it; main is untouched.
	res, err := f.mgr.Restore(ctx, "m", push.ID, "rescued")
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "refs/heads/rescued" || res.Sync.Trigger != "restore" || res.Sync.Error != "" {
		t.Fatalf("restore result %+v", res)
	}
	if upRef("refs/heads/rescued") != lost || localRef("refs/heads/rescued") != lost || upRef("refs/heads/main") != rewritten {
		t.Fatalf("after restore to a branch: upstream rescued=%s main=%s, mirror rescued=%s", upRef("refs/heads/rescued"), upRef("refs/heads/main"), localRef("refs/heads/rescued"))
	}
	// Again: the branch already holds it, nothing to do.
	if _, err := f.mgr.Restore(ctx, "m", push.ID, "rescued"); err != nil {
		t.Fatalf("restore repeated: %v", err)
	}
	// Onto an existing branch holding other work: refused, not overwritten.
	if _, err := f.mgr.Restore(ctx, "m", push.ID, "main"); err == nil || !strings.Contains(err.Error(), "already has refs/heads/main") {
		t.Fatalf("restore onto an existing branch: %v", err)
	}
	if upRef("refs/heads/main") != rewritten {
		t.Fatal("a refused restore moved the upstream's main")
	}
	// The deleted tag, onto its own ref.
	if _, err := f.mgr.Restore(ctx, "m", del.ID, ""); err != nil {
		t.Fatal(err)
	}
	if upRef("refs/tags/v1") != lost || localRef("refs/tags/v1") != lost {
		t.Fatal("the deleted tag was not restored upstream and in the mirror")
	}
	// main moved upstream since the force-push: restoring onto it would
	// overwrite that work, so it is refused.
	newer := up.commit()
	up.push("main")
	if _, err := f.mgr.Restore(ctx, "m", push.ID, ""); err == nil || !strings.Contains(err.Error(), "has moved since event") || !strings.Contains(err.Error(), "--to-branch") {
		t.Fatalf("restore over newer upstream work: %v", err)
	}
	if upRef("refs/heads/main") != newer {
		t.Fatal("a refused restore moved the upstream's main")
	}
	// Nothing moved since: main goes back to the old tip.
	f.mgr.Sync(ctx, "m")
	git(t, up.work, "reset", "-q", "--hard", rewritten)
	up.push("--force", "main")
	f.mgr.Sync(ctx, "m")
	evs, _ = f.store.MirrorEvents("m", 1)
	if _, err := f.mgr.Restore(ctx, "m", evs[0].ID, ""); err != nil {
		t.Fatal(err)
	}
	if upRef("refs/heads/main") != newer || localRef("refs/heads/main") != newer {
		t.Fatalf("restore onto main: upstream %s, mirror %s, want %s", upRef("refs/heads/main"), localRef("refs/heads/main"), newer)
	}

	for _, c := range []struct {
		id     uint64
		branch string
		want   string
	}{
		{999, "", "not found"},
		{push.ID, "bad..name", "not a valid branch name"},
	} {
		if _, err := f.mgr.Restore(ctx, "m", c.id, c.branch); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Restore(%d, %q): %v, want %q", c.id, c.branch, err, c.want)
		}
	}
}
