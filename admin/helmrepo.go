package admin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/fjordhq/fjord/helmrepo"
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
	repo, err := s.helmRepos.Delete(r.Context(), r.URL.Query().Get("repo"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, repo)
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
// it keeps, and returns what it was.
func (c *Client) DeleteHelmRepo(ctx context.Context, nameOrURL string) (storage.HelmRepo, error) {
	var out storage.HelmRepo
	return out, c.do(ctx, http.MethodDelete, "/v1/helmrepos?repo="+queryEscape(nameOrURL), nil, &out)
}

// RefreshHelmRepo reads a Helm repository's index now and returns its
// status (LastError says how the read went).
func (c *Client) RefreshHelmRepo(ctx context.Context, nameOrURL string) (storage.HelmRepo, error) {
	var out storage.HelmRepo
	return out, c.do(ctx, http.MethodPost, "/v1/helmrepos/refresh?repo="+queryEscape(nameOrURL), nil, &out)
}
