package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/fjordhq/fjord/storage"
)

// ApplyProjectRequest is the body of POST /v1/projects.
type ApplyProjectRequest struct {
	// Manifest is the AppProject in YAML or JSON.
	Manifest string `json:"manifest"`
}

// ProjectDetail is a project with the apps that use it.
type ProjectDetail struct {
	storage.Project
	Apps []string `json:"apps,omitempty"`
}

func (s *Server) projectRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/projects", s.listProjects)
	mux.HandleFunc("POST /v1/projects", s.applyProject)
	mux.HandleFunc("GET /v1/projects/get", s.getProject)
	mux.HandleFunc("DELETE /v1/projects", s.deleteProject)
}

func (s *Server) listProjects(w http.ResponseWriter, _ *http.Request) {
	ps, err := s.store.Projects()
	if err != nil {
		s.fail(w, err)
		return
	}
	if ps == nil {
		ps = []storage.Project{}
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Server) applyProject(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	var req ApplyProjectRequest
	if !decode(w, r, &req) {
		return
	}
	p, err := s.apps.ApplyProject([]byte(req.Manifest))
	if err != nil {
		s.failApp(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	p, err := s.store.Project(name)
	if err != nil {
		s.fail(w, err)
		return
	}
	apps, err := s.store.Apps()
	if err != nil {
		s.fail(w, err)
		return
	}
	d := ProjectDetail{Project: p}
	for _, a := range apps {
		if a.Project == name {
			d.Apps = append(d.Apps, a.Name)
		}
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) {
	err := s.store.DeleteProject(r.URL.Query().Get("name"))
	if errors.Is(err, storage.ErrProjectInUse) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Projects lists the stored AppProjects.
func (c *Client) Projects(ctx context.Context) ([]storage.Project, error) {
	var out []storage.Project
	return out, c.do(ctx, http.MethodGet, "/v1/projects", nil, &out)
}

// ApplyProject creates or updates a project from an AppProject document.
func (c *Client) ApplyProject(ctx context.Context, manifest []byte) (storage.Project, error) {
	var out storage.Project
	return out, c.do(ctx, http.MethodPost, "/v1/projects", ApplyProjectRequest{Manifest: string(manifest)}, &out)
}

// Project returns one project and the apps that use it.
func (c *Client) Project(ctx context.Context, name string) (ProjectDetail, error) {
	var out ProjectDetail
	return out, c.do(ctx, http.MethodGet, "/v1/projects/get?name="+url.QueryEscape(name), nil, &out)
}

// DeleteProject removes a project; it is refused while apps use it.
func (c *Client) DeleteProject(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/projects?name="+url.QueryEscape(name), nil, nil)
}
