package server

import (
	"context"
	"net/http"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
	"github.com/fjordhq/fjord/ui"
)

// mountUI serves the web UI under /ui/ on the HTTP listener and ends its
// event streams when the listener shuts down.
func (s *Server) mountUI(mux *http.ServeMux) error {
	var apps ui.Apps
	if s.rec != nil {
		apps = uiApps{s.rec}
	}
	cfg := ui.Config{Store: s.store, Apps: apps, Logger: s.log}
	if s.elector != nil {
		cfg.WriteGate = s.elector.Writable
	}
	h, err := ui.New(cfg)
	if err != nil {
		return err
	}
	mux.Handle(ui.Prefix, h)
	s.httpSrv.RegisterOnShutdown(h.Shutdown)
	return nil
}

// uiApps adapts the reconciler to what the web UI needs.
type uiApps struct{ r *reconciler.Reconciler }

var _ ui.Apps = uiApps{}

func (a uiApps) Sync(ctx context.Context, name string) (storage.AppSync, error) {
	return a.r.Sync(ctx, name, reconciler.SyncOptions{})
}

func (a uiApps) Diff(ctx context.Context, name string) (string, error) { return a.r.Diff(ctx, name) }

func (a uiApps) Objects(name string) (ui.AppObjects, bool) {
	v, ok := a.r.View(name)
	return ui.AppObjects{TargetRevision: v.TargetRevision, Waves: v.Waves}, ok
}
