package server

import (
	"context"
	"errors"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// appsAPI adapts the reconciler to what the admin API needs.
type appsAPI struct{ r *reconciler.Reconciler }

var (
	_ admin.Apps     = appsAPI{}
	_ admin.Clusters = (*reconciler.Reconciler)(nil)
)

func (a appsAPI) Apply(ctx context.Context, manifest []byte) (storage.App, error) {
	return a.r.Apply(ctx, manifest)
}

func (a appsAPI) Sync(ctx context.Context, name string, prune bool) (storage.AppSync, error) {
	return a.r.Sync(ctx, name, reconciler.SyncOptions{Prune: prune})
}

func (a appsAPI) Diff(ctx context.Context, name string) (string, error) { return a.r.Diff(ctx, name) }

func (a appsAPI) Delete(ctx context.Context, name string, cascade bool) ([]string, error) {
	cs, err := a.r.Delete(ctx, name, cascade)
	var out []string
	for _, c := range cs {
		line := c.Ref.String() + " " + string(c.Action)
		if c.Reason != "" {
			line += " (" + c.Reason + ")"
		}
		out = append(out, line)
	}
	return out, err
}

func (a appsAPI) ApplyProject(manifest []byte) (storage.Project, error) {
	return a.r.ApplyProject(manifest)
}

func (a appsAPI) IsInvalid(err error) bool { return errors.Is(err, reconciler.ErrInvalidApp) }
