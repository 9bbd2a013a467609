package storage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// TestMirrorLogsAreBounded checks that sync history keeps the newest 50
// and that event retention reports what it dropped, oldest first.
func TestMirrorLogsAreBounded(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.CreateRepo(ctx, storage.Repo{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMirror(storage.Mirror{Repo: "m", Upstream: "file:///x"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 60; i++ {
		rec := storage.MirrorSync{Start: time.Unix(int64(i), 0), Trigger: fmt.Sprint(i)}
		if err := s.RecordMirrorSync("m", rec, func(m *storage.Mirror) { m.Failures = i }); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.MirrorSyncs("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 50 || recs[0].Trigger != "59" || recs[49].Trigger != "10" {
		t.Fatalf("kept %d syncs, newest %q oldest %q; want 50, 59, 10", len(recs), recs[0].Trigger, recs[len(recs)-1].Trigger)
	}
	if m, _ := s.Mirror("m"); m.Failures != 59 {
		t.Fatalf("status not updated with the record: %+v", m)
	}
	var dropped []storage.MirrorEvent
	for i := 0; i < 5; i++ {
		d, err := s.RecordMirrorEvents("m", []storage.MirrorEvent{{Ref: fmt.Sprint(i)}}, 3)
		if err != nil {
			t.Fatal(err)
		}
		dropped = append(dropped, d...)
	}
	evs, _ := s.MirrorEvents("m", 0)
	if len(evs) != 3 || evs[0].Ref != "4" || len(dropped) != 2 || dropped[0].Ref != "0" || dropped[1].Ref != "1" {
		t.Fatalf("events %+v, dropped %+v", evs, dropped)
	}
}

// TestDeletePushMirrorReplicates deletes a push mirror with a password:
// the follower drops the password too.
func TestDeletePushMirrorReplicates(t *testing.T) {
	ctx := context.Background()
	p := open(t, t.TempDir())
	f := open(t, t.TempDir())
	if _, err := p.CreateRepo(ctx, storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if err := p.CreatePushMirror(storage.PushMirror{Repo: "app", Remote: "https://git.example.com/app.git", ID: "abc", Credentials: []string{"password"}}); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteCredentials(p.PushCredentialDir("app", "abc"), "app", map[string][]byte{"password": []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	replicate(t, p, f)
	if _, err := os.Stat(filepath.Join(f.PushCredentialDir("app", "abc"), "password")); err != nil {
		t.Fatalf("the follower lacks the password: %v", err)
	}
	if err := p.DeletePushMirror("app", "abc"); err != nil {
		t.Fatal(err)
	}
	replicate(t, p, f)
	if _, err := os.Stat(f.PushCredentialDir("app", "abc")); !os.IsNotExist(err) {
		t.Errorf("the follower keeps the deleted push mirror's credentials: %v", err)
	}
}
