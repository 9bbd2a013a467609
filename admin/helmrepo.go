package admin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// HelmRepos is what the admin API needs of the Helm repository manager.
type HelmRepos interface {
	Add(ctx context.Context, r storage.HelmRepo, creds map[string][]byte) (storage.HelmRepo, error)
	List() ([]helmrepo.Status, error)
	Refresh(ctx context.Context, name string) (storage.HelmRepo, error)
	Delete(ctx context.Context, nameOrURL string) (storage.HelmRepo, error)
	Find(nameOrURL string) (storage.HelmRepo, error)
}

// AddHelmRepoRequest is the body of POST /v1/helmrepos. Credentials are
// keyed by "username" and "password".
type AddHelmRepoRequest struct {
	URL         string            `json:"url"`
	Name        string            `json:"name,omitempty"`
	Interval    time.Duration     `json:"interval,omitempty"`
	PlainHTTP   bool              `json:"plainHTTP,omitempty"`
	Credentials map[string][]byte `json:"credentials,omitempty"`
}

func (s *Server) helmRepoRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/helmrepos", s.listHelmRepos)
	mux.HandleFunc("POST /v1/helmrepos", s.addHelmRepo)
	mux.HandleFunc("DELETE /v1/helmrepos", s.deleteHelmRepo)
	mux.HandleFunc("POST /v1/helmrepos/refresh", s.refreshHelmRepo)
}

func (s *Server) needHelmRepos(w http.ResponseWriter) bool {
	if s.helmRepos == nil {
		writeError(w, http.StatusServiceUnavailable, "helm repositories are not kept on this server")
		return false
	}
	return true
}

func (s *Server) listHelmRepos(w http.ResponseWriter, _ *http.Request) {
	if !s.needHelmRepos(w) {
		return
	}
	out, err := s.helmRepos.List()
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addHelmRepo(w http.ResponseWriter, r *http.Request) {
	if !s.needHelmRepos(w) {
		return
	}
	var req AddHelmRepoRequest
	if !decode(w, r, &req) {
		return
	}
	for k := range req.Credentials {
		switch k {
		case helmrepo.CredUsername, helmrepo.CredPassword:
		default:
			writeError(w, http.StatusBadRequest, "unknown credential "+strconv.Quote(k))
			return
		}
	}
	repo, err := s.helmRepos.Add(r.Context(), storage.HelmRepo{URL: req.URL, Name: req.Name, Interval: req.Interval, PlainHTTP: req.PlainHTTP}, req.Credentials)
	if err != nil {
		s.failBadRequest(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, repo)
}

func (s *Server) deleteHelmRepo(w http.ResponseWriter, r *http.Request) {
	if !s.needHelmRepos(w) {
		return
	}
	found, err := s.helmRepos.Find(r.URL.Query().Get("repo"))
	if err != nil {
		s.fail(w, err)
		return
	}
	if r.URL.Query().Get("force") != "true" {
		// An app whose chart repository vanishes fails if it is private:
		// say so first.
		if apps, err := s.appsUsingHelmRepo(found.URL); err != nil {
			s.fail(w, err)
			return
		} else if len(apps) > 0 {
			writeError(w, http.StatusConflict, fmt.Sprintf("helm repository %q is the chart source of apps %s: delete them first, or delete it anyway with --force (a public repository comes back by itself on their next sync, its charts fetched again; a private one fails their syncs until it is added again)", found.Name, strings.Join(apps, ", ")))
			return
		}
	}
	repo, err := s.helmRepos.Delete(r.Context(), found.Name)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, repo)
}

// appsUsingHelmRepo names the apps with a source that takes a chart from
// the repository at url (a chart's remote dependencies are not seen here:
// only a render reads them).
func (s *Server) appsUsingHelmRepo(url string) ([]string, error) {
	apps, err := s.store.Apps()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range apps {
		// A stored manifest passed ParseApplication once; one that no
		// longer does renders no chart either.
		app, err := reconciler.ParseApplication([]byte(a.Manifest))
		if err != nil {
			continue
		}
		for _, src := range app.AllSources() {
			if !src.IsChart() {
				continue
			}
			if u, err := helmrepo.NormalizeURL(src.ChartRepoURL()); err == nil && u == url {
				out = append(out, a.Name)
				break
			}
		}
	}
	return out, nil
}

func (s *Server) refreshHelmRepo(w http.ResponseWriter, r *http.Request) {
	if !s.needHelmRepos(w) {
		return
	}
	found, err := s.helmRepos.Find(r.URL.Query().Get("repo"))
	if err != nil {
		s.fail(w, err)
		return
	}
	// A failed read is still a result: its error is in LastError.
	repo, _ := s.helmRepos.Refresh(r.Context(), found.Name)
	if repo.Name == "" {
		repo = found
	}
	writeJSON(w, http.StatusOK, repo)
}

// Helm repository client calls.

// HelmRepos lists Helm repositories with the charts they keep.
func (c *Client) HelmRepos(ctx context.Context) ([]helmrepo.Status, error) {
	var out []helmrepo.Status
	return out, c.do(ctx, http.MethodGet, "/v1/helmrepos", nil, &out)
}

// AddHelmRepo adds a Helm repository and reads its index once.
func (c *Client) AddHelmRepo(ctx context.Context, req AddHelmRepoRequest) (storage.HelmRepo, error) {
	var out storage.HelmRepo
	return out, c.do(ctx, http.MethodPost, "/v1/helmrepos", req, &out)
}

// DeleteHelmRepo removes a Helm repository (by name or URL) and the charts
// it keeps, and returns what it was. Unless force, it is refused while an
// app takes a chart from it.
func (c *Client) DeleteHelmRepo(ctx context.Context, nameOrURL string, force bool) (storage.HelmRepo, error) {
	var out storage.HelmRepo
	return out, c.do(ctx, http.MethodDelete, "/v1/helmrepos?repo="+queryEscape(nameOrURL)+"&force="+strconv.FormatBool(force), nil, &out)
}

// RefreshHelmRepo reads a Helm repository's index now and returns its
// status (LastError says how the read went).
func (c *Client) RefreshHelmRepo(ctx context.Context, nameOrURL string) (storage.HelmRepo, error) {
	var out storage.HelmRepo
	return out, c.do(ctx, http.MethodPost, "/v1/helmrepos/refresh?repo="+queryEscape(nameOrURL), nil, &out)
}
