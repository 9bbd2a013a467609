package storage_test

import (
	"errors"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

func TestApps(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.App("web"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("App of nothing: %v", err)
	}
	a, err := s.PutApp("web", "manifest v1", storage.AppMeta{})
	if err != nil {
		t.Fatal(err)
	}
	inv := storage.AppInventory{Commit: "c1", Entries: []storage.InventoryEntry{{ID: "ns_web_apps_Deployment", Version: "v1", Hash: "h"}}}
	st := storage.AppStatus{Sync: "Synced", Health: "Current", SyncedCommit: "c1"}
	if err := s.RecordAppSync("web", st, &inv, storage.AppSync{Trigger: "apply", Revision: "c1"}); err != nil {
		t.Fatal(err)
	}
	// A new manifest keeps status and creation time.
	b, err := s.PutApp("web", "manifest v2", storage.AppMeta{})
	if err != nil || b.Status.SyncedCommit != "c1" || !b.Created.Equal(a.Created) || b.Manifest != "manifest v2" {
		t.Fatalf("PutApp again: %+v %v", b, err)
	}
	if err := s.RecordDrift("web", storage.DriftEvent{Object: "Deployment.apps/ns/web", Fields: []string{"spec.replicas"}, Manager: "kubectl", Action: "reverted"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateAppStatus("web", func(st *storage.AppStatus) { st.Health = "InProgress" }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 120; i++ {
		if err := s.RecordAppSync("web", st, nil, storage.AppSync{Trigger: "resync"}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	// Everything survives a reopen; history is capped.
	s = open(t, dir)
	got, err := s.App("web")
	if err != nil || got.Status.LastDrift == nil || got.Status.LastDrift.Manager != "kubectl" {
		t.Fatalf("App after reopen: %+v %v", got, err)
	}
	if gi, ok, err := s.AppInventory("web"); err != nil || !ok || gi.Commit != "c1" || len(gi.Entries) != 1 {
		t.Errorf("inventory: %+v %v %v", gi, ok, err)
	}
	if h, _ := s.AppSyncs("web", 0); len(h) != 100 || h[0].Trigger != "resync" {
		t.Errorf("history: %d records, newest %+v", len(h), h[0])
	}
	if d, _ := s.AppDrifts("web", 0); len(d) != 1 {
		t.Errorf("drifts: %+v", d)
	}
	if apps, _ := s.Apps(); len(apps) != 1 {
		t.Errorf("Apps: %+v", apps)
	}
	if err := s.DeleteApp("web"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.AppInventory("web"); ok {
		t.Error("inventory survives DeleteApp")
	}
	if h, _ := s.AppSyncs("web", 0); len(h) != 0 {
		t.Error("history survives DeleteApp")
	}
	if err := s.DeleteApp("web"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second DeleteApp: %v", err)
	}
}
