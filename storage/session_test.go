package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// TestRefsChangedSurvivesRestart: a repo's Changed is when a ref last
// moved, not when fjord last started and read the refs again.
func TestRefsChangedSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := storage.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	commitInto(t, s.RepoPath("app"), "refs/heads/main")
	if _, err := s.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	refs, _ := s.Refs("app")
	changed := refs.Changed
	if changed.IsZero() {
		t.Fatal("Changed is not set after a ref moved")
	}
	s.Close()
	time.Sleep(10 * time.Millisecond) // so a reset Changed would differ
	s, err = storage.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	refs, _ = s.Refs("app")
	if !refs.Changed.Equal(changed) {
		t.Fatalf("after a restart Changed is %s, want %s (nothing moved)", refs.Changed, changed)
	}
	commitInto(t, s.RepoPath("app"), "refs/heads/next")
	if _, err := s.RefreshRefs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if refs, _ = s.Refs("app"); !refs.Changed.After(changed) {
		t.Fatalf("after a new ref Changed is %s, want after %s", refs.Changed, changed)
	}
}

// TestLoginTokens: a token logs in once, an expired one never, and the
// session it opens ends with its user.
func TestLoginTokens(t *testing.T) {
	s := open(t, t.TempDir())
	if _, _, err := s.CreateLoginToken("nobody", time.Minute); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a token for a missing user: %v", err)
	}
	key, _ := storage.ParseKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host")
	if _, err := s.CreateUser(storage.User{Name: "alice", Keys: []storage.Key{key}}); err != nil {
		t.Fatal(err)
	}
	token, _, err := s.CreateLoginToken("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	id, sess, err := s.RedeemLoginToken(token, time.Hour)
	if err != nil || sess.User != "alice" || sess.CSRF == "" || id == "" || id == token {
		t.Fatalf("redeem: %q %+v %v", id, sess, err)
	}
	if _, _, err := s.RedeemLoginToken(token, time.Hour); !errors.Is(err, storage.ErrLoginToken) {
		t.Fatalf("a second redemption: %v", err)
	}
	if got, err := s.Session(id); err != nil || got.User != "alice" {
		t.Fatalf("session: %+v %v", got, err)
	}
	old, _, _ := s.CreateLoginToken("alice", -time.Second)
	if _, _, err := s.RedeemLoginToken(old, time.Hour); !errors.Is(err, storage.ErrLoginToken) {
		t.Fatalf("an expired token: %v", err)
	}
	if err := s.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(id); !errors.Is(err, storage.ErrNoSession) {
		t.Fatalf("the session of a deleted user: %v", err)
	}
}

// TestFollowerPublishesEvents: a follower applying its primary's app and
// mirror writes announces them as the primary did, so pages served by a
// follower stay live.
func TestFollowerPublishesEvents(t *testing.T) {
	ctx := context.Background()
	p, f := open(t, t.TempDir()), open(t, t.TempDir())
	if _, err := p.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PutApp("web", "kind: Application", storage.AppMeta{}); err != nil {
		t.Fatal(err)
	}
	replicate(t, p, f)
	sub := f.SubscribeEvents()
	defer sub.Close()
	if err := p.RecordAppSync("web", storage.AppStatus{Repo: "app", Sync: storage.Synced}, nil, storage.AppSync{Trigger: storage.TriggerPush}); err != nil {
		t.Fatal(err)
	}
	if err := p.RecordDrift("web", storage.DriftEvent{Object: "ConfigMap/x", Action: storage.DriftReverted}); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteApp("web"); err != nil {
		t.Fatal(err)
	}
	replicate(t, p, f)
	want := []storage.Event{{Kind: storage.EventApp, Name: "web"}, {Kind: storage.EventApp, Name: "web"}, {Kind: storage.EventAppDeleted, Name: "web"}}
	for i, w := range want {
		select {
		case got := <-sub.C:
			if got.Kind != w.Kind || got.Name != w.Name {
				t.Fatalf("event %d on the follower: %+v, want %+v", i, got, w)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("event %d (%+v) never came on the follower", i, w)
		}
	}
}
