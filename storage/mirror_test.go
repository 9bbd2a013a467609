package storage_test

import (
	"context"
	"fmt"
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
