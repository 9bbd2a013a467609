package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/fjordhq/fjord/storage"
)

// Apps is what the admin API needs of the reconciler.
type Apps interface {
	// Apply stores an Application document and syncs it if automated.
	Apply(ctx context.Context, manifest []byte) (storage.App, error)
	// Sync syncs an app now; prune deletes what git dropped even when
	// the app's policy does not.
	Sync(ctx context.Context, name string, prune bool) (storage.AppSync, error)
	// Diff returns a unified diff of the live objects against git (a
	// server-side dry-run apply of each).
	Diff(ctx context.Context, name string) (string, error)
	// Delete removes an app; cascade deletes its objects too. It returns
	// one line per object deleted or kept.
	Delete(ctx context.Context, name string, cascade bool) ([]string, error)
	// ApplyProject stores an AppProject document.
	ApplyProject(manifest []byte) (storage.Project, error)
	// IsInvalid reports whether err is a refused Application (400).
	IsInvalid(err error) bool
}

// ApplyAppRequest is the body of POST /v1/apps.
type ApplyAppRequest struct {
	// Manifest is the Application in YAML or JSON.
	Manifest string `json:"manifest"`
}

// SyncAppRequest is the body of POST /v1/apps/sync.
type SyncAppRequest struct {
	Name  string `json:"name"`
	Prune bool   `json:"prune,omitempty"`
}

// AppDetail is an app with its history and drift, for `fjord app get`.
type AppDetail struct {
	storage.App
	Drifts []storage.DriftEvent `json:"drifts,omitempty"`
}

// AppDiff is the answer of GET /v1/apps/diff.
type AppDiff struct {
	Diff string `json:"diff"`
}

// DeleteAppResult is the answer of DELETE /v1/apps.
type DeleteAppResult struct {
	Objects []string `json:"objects,omitempty"`
}

// The app name travels as a query parameter, like the mirror endpoints.
func (s *Server) appRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/apps", s.listApps)
	mux.HandleFunc("POST /v1/apps", s.applyApp)
	mux.HandleFunc("GET /v1/apps/get", s.getApp)
	mux.HandleFunc("GET /v1/apps/history", s.appHistory)
	mux.HandleFunc("GET /v1/apps/diff", s.diffApp)
	mux.HandleFunc("POST /v1/apps/sync", s.syncApp)
	mux.HandleFunc("DELETE /v1/apps", s.deleteApp)
	s.projectRoutes(mux)
}

func (s *Server) needApps(w http.ResponseWriter) bool {
	if s.apps == nil {
		writeError(w, http.StatusServiceUnavailable, "the reconciler is not running on this server: start `fjord serve` with --kubeconfig FILE (or KUBECONFIG, or in a cluster)")
		return false
	}
	return true
}

func (s *Server) failApp(w http.ResponseWriter, err error) {
	if s.apps != nil && s.apps.IsInvalid(err) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.fail(w, err)
}

func (s *Server) listApps(w http.ResponseWriter, _ *http.Request) {
	apps, err := s.store.Apps()
	if err != nil {
		s.fail(w, err)
		return
	}
	if apps == nil {
		apps = []storage.App{}
	}
	writeJSON(w, http.StatusOK, apps)
}

func (s *Server) applyApp(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	var req ApplyAppRequest
	if !decode(w, r, &req) {
		return
	}
	a, err := s.apps.Apply(r.Context(), []byte(req.Manifest))
	if err != nil {
		s.failApp(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	a, err := s.store.App(name)
	if err != nil {
		s.fail(w, err)
		return
	}
	ds, err := s.store.AppDrifts(name, 20)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, AppDetail{App: a, Drifts: ds})
}

func (s *Server) appHistory(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if _, err := s.store.App(name); err != nil {
		s.fail(w, err)
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	h, err := s.store.AppSyncs(name, n)
	if err != nil {
		s.fail(w, err)
		return
	}
	if h == nil {
		h = []storage.AppSync{}
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) diffApp(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	d, err := s.apps.Diff(r.Context(), r.URL.Query().Get("name"))
	if err != nil {
		s.failApp(w, err)
		return
	}
	writeJSON(w, http.StatusOK, AppDiff{Diff: d})
}

func (s *Server) syncApp(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	var req SyncAppRequest
	if !decode(w, r, &req) {
		return
	}
	rec, err := s.apps.Sync(r.Context(), req.Name, req.Prune)
	if err != nil && rec.Start.IsZero() {
		s.failApp(w, err)
		return
	}
	// A sync that ran and failed is a result: its error is in rec.Error.
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	q := r.URL.Query()
	objs, err := s.apps.Delete(r.Context(), q.Get("name"), q.Get("cascade") == "true")
	if err != nil {
		s.failApp(w, err)
		return
	}
	writeJSON(w, http.StatusOK, DeleteAppResult{Objects: objs})
}

// Apps lists apps with their status.
func (c *Client) Apps(ctx context.Context) ([]storage.App, error) {
	var out []storage.App
	return out, c.do(ctx, http.MethodGet, "/v1/apps", nil, &out)
}

// ApplyApp creates or updates an app from an Application document.
func (c *Client) ApplyApp(ctx context.Context, manifest []byte) (storage.App, error) {
	var out storage.App
	return out, c.do(ctx, http.MethodPost, "/v1/apps", ApplyAppRequest{Manifest: string(manifest)}, &out)
}

// App returns one app with its recent drift.
func (c *Client) App(ctx context.Context, name string) (AppDetail, error) {
	var out AppDetail
	return out, c.do(ctx, http.MethodGet, "/v1/apps/get?name="+url.QueryEscape(name), nil, &out)
}

// AppHistory returns up to n recent syncs of an app (0: all kept).
func (c *Client) AppHistory(ctx context.Context, name string, n int) ([]storage.AppSync, error) {
	var out []storage.AppSync
	return out, c.do(ctx, http.MethodGet, "/v1/apps/history?name="+url.QueryEscape(name)+"&n="+strconv.Itoa(n), nil, &out)
}

// DiffApp returns the unified diff of the live objects against git.
func (c *Client) DiffApp(ctx context.Context, name string) (string, error) {
	var out AppDiff
	return out.Diff, c.do(ctx, http.MethodGet, "/v1/apps/diff?name="+url.QueryEscape(name), nil, &out)
}

// SyncApp syncs an app now.
func (c *Client) SyncApp(ctx context.Context, name string, prune bool) (storage.AppSync, error) {
	var out storage.AppSync
	return out, c.do(ctx, http.MethodPost, "/v1/apps/sync", SyncAppRequest{Name: name, Prune: prune}, &out)
}

// DeleteApp removes an app; cascade deletes its objects too.
func (c *Client) DeleteApp(ctx context.Context, name string, cascade bool) ([]string, error) {
	var out DeleteAppResult
	return out.Objects, c.do(ctx, http.MethodDelete, "/v1/apps?name="+url.QueryEscape(name)+"&cascade="+strconv.FormatBool(cascade), nil, &out)
}
