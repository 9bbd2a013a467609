package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// Config configures a Server. Store is required.
type Config struct {
	Store *storage.Store
	// Info is returned by GET /v1/info.
	Info Info
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Mirrors serves the /v1/mirrors endpoints; nil answers them with 503.
	Mirrors Mirrors
	// HelmRepos serves the /v1/helmrepos endpoints; nil answers them with
	// 503.
	HelmRepos HelmRepos
	// Apps serves the /v1/apps endpoints that need the reconciler; nil
	// (no cluster) answers them with 503 saying how to turn it on.
	Apps Apps
	// Clusters serves the /v1/clusters endpoints; nil (no reconciler)
	// lists the stored clusters and answers the rest with 503.
	Clusters Clusters
	// Notify adds notifiers (POST /v1/notifiers); nil answers it with 503.
	Notify Notify
	// HostKeyFile is the SSH host private key a backup includes; empty
	// means DATA/ssh_host_ed25519_key.
	HostKeyFile string
	// Replicas serves /v1/replicas; nil means the server runs alone.
	Replicas Replicas
	// WriteGate, if set, is asked before every request that writes; its
	// error (which names the primary) refuses the request.
	WriteGate func() error
	// Durable, if set, holds the answer to a write until the change is
	// safe (on a replica group's synchronous replicas); its error turns
	// the answer into a refusal.
	Durable func(ctx context.Context) error
}

// Server serves the admin API for one store.
type Server struct {
	store   *storage.Store
	info    Info
	log     *slog.Logger
	mirrors Mirrors
	apps    Apps
	// clusters is nil when the reconciler does not run.
	clusters Clusters
	notify   Notify
	http     *http.Server

	replicas  Replicas
	writeGate func() error
	durable   func(ctx context.Context) error

	hostKeyFile string
	helmRepos   HelmRepos // nil answers /v1/helmrepos with 503
}

// NewServer returns an admin API server.
func NewServer(cfg Config) *Server {
	s := &Server{store: cfg.Store, info: cfg.Info, log: cfg.Logger, mirrors: cfg.Mirrors, apps: cfg.Apps, clusters: cfg.Clusters, notify: cfg.Notify, hostKeyFile: cfg.HostKeyFile,
		replicas: cfg.Replicas, writeGate: cfg.WriteGate, durable: cfg.Durable}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.helmRepos = cfg.HelmRepos
	mux := http.NewServeMux()
	s.mirrorRoutes(mux)
	s.helmRepoRoutes(mux)
	s.appRoutes(mux)
	s.signKeyRoutes(mux)
	s.notifyRoutes(mux)
	s.uiRoutes(mux)
	s.replicaRoutes(mux)
	s.clusterRoutes(mux)
	mux.HandleFunc("GET /v1/info", s.getInfo)
	mux.HandleFunc("GET /v1/repos", s.listRepos)
	mux.HandleFunc("POST /v1/repos", s.createRepo)
	mux.HandleFunc("PATCH /v1/repos/{name...}", s.updateRepo)
	mux.HandleFunc("DELETE /v1/repos/{name...}", s.deleteRepo)
	mux.HandleFunc("GET /v1/users", s.listUsers)
	mux.HandleFunc("POST /v1/users", s.createUser)
	mux.HandleFunc("DELETE /v1/users/{name}", s.deleteUser)
	mux.HandleFunc("GET /v1/grants", s.listGrants)
	mux.HandleFunc("PUT /v1/grants", s.setGrant)
	mux.HandleFunc("POST /v1/backup", s.backup)
	s.http = &http.Server{Handler: s.gate(mux), ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Listen creates the socket in dataDir with mode 0600. A socket left by a
// crashed server is replaced: the caller holds the database lock, so no
// other server can be using it.
func Listen(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, SocketName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin: remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin: chmod %s: %w", path, err)
	}
	return l, nil
}

// Serve serves the API on l until Shutdown.
func (s *Server) Serve(l net.Listener) error { return s.http.Serve(l) }

// Shutdown stops the server, letting requests in flight finish until ctx
// is done.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

func (s *Server) getInfo(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.info) }

func (s *Server) listRepos(w http.ResponseWriter, _ *http.Request) {
	repos, err := s.store.Repos()
	if err != nil {
		s.fail(w, err)
		return
	}
	out := make([]RepoStatus, 0, len(repos))
	for _, r := range repos {
		st := RepoStatus{Repo: r}
		if refs, ok := s.store.Refs(r.Name); ok {
			st.Head, st.HeadHash, st.Refs = refs.Head, refs.HeadHash, len(refs.Refs)
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createRepo(w http.ResponseWriter, r *http.Request) {
	var req CreateRepoRequest
	if !decode(w, r, &req) {
		return
	}
	repo, err := s.store.CreateRepo(r.Context(), storage.Repo{Name: req.Name, AnonRead: req.AnonRead, Description: req.Description})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, repo)
}

func (s *Server) updateRepo(w http.ResponseWriter, r *http.Request) {
	var req UpdateRepoRequest
	if !decode(w, r, &req) {
		return
	}
	name, err := storage.NormalizeRepoName(r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	repo, err := s.store.UpdateRepo(name, func(repo *storage.Repo) error {
		if req.AnonRead != nil {
			repo.AnonRead = *req.AnonRead
		}
		if req.Description != nil {
			repo.Description = *req.Description
		}
		return nil
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, repo)
}

func (s *Server) deleteRepo(w http.ResponseWriter, r *http.Request) {
	name, err := storage.NormalizeRepoName(r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	if r.URL.Query().Get("force") != "true" {
		// An app whose repo vanishes fails quietly: say so first.
		if apps, err := s.store.AppsUsingRepo(name); err != nil {
			s.fail(w, err)
			return
		} else if len(apps) > 0 {
			writeError(w, http.StatusConflict, fmt.Sprintf("repo %q is the source of apps %s: delete them first, or delete the repo anyway with --force (their syncs fail until it exists again)", name, strings.Join(apps, ", ")))
			return
		}
	}
	if err := s.store.DeleteRepo(r.Context(), name); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listUsers(w http.ResponseWriter, _ *http.Request) {
	users, err := s.store.Users()
	if err != nil {
		s.fail(w, err)
		return
	}
	if users == nil {
		users = []storage.User{}
	}
	writeJSON(w, http.StatusOK, users)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var req CreateUserRequest
	if !decode(w, r, &req) {
		return
	}
	u := storage.User{Name: req.Name, Admin: req.Admin}
	for _, text := range req.Keys {
		k, err := storage.ParseKey(text)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		u.Keys = append(u.Keys, k)
	}
	if len(u.Keys) == 0 {
		writeError(w, http.StatusBadRequest, "a user needs at least one public key (--key FILE.pub)")
		return
	}
	u, err := s.store.CreateUser(u)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteUser(r.PathValue("name")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listGrants(w http.ResponseWriter, _ *http.Request) {
	grants, err := s.store.Grants()
	if err != nil {
		s.fail(w, err)
		return
	}
	if grants == nil {
		grants = []storage.Grant{}
	}
	writeJSON(w, http.StatusOK, grants)
}

func (s *Server) setGrant(w http.ResponseWriter, r *http.Request) {
	var g storage.Grant
	if !decode(w, r, &g) {
		return
	}
	a, err := storage.ParseAccess(g.Access)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	repo, err := storage.NormalizeRepoName(g.Repo)
	if err != nil {
		s.fail(w, err)
		return
	}
	if err := s.store.SetGrant(g.User, repo, a); err != nil {
		s.fail(w, err)
		return
	}
	g.Repo = repo
	writeJSON(w, http.StatusOK, g)
}

// failBadRequest answers errors of operations whose failures are mostly
// the caller's input (a bad URL, an unreachable upstream) with 400, unless
// storage says otherwise.
func (s *Server) failBadRequest(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExists), errors.Is(err, storage.ErrInvalidName):
		s.fail(w, err)
	default:
		writeError(w, http.StatusBadRequest, err.Error())
	}
}

// fail maps storage errors to HTTP statuses; the message goes to the CLI
// user as is.
func (s *Server) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	msg := err.Error()
	switch {
	case errors.Is(err, storage.ErrNotFound):
		status = http.StatusNotFound
		msg += s.didYouMean(err)
	case errors.Is(err, storage.ErrExists):
		status = http.StatusConflict
	case errors.Is(err, storage.ErrInvalidName):
		status = http.StatusBadRequest
	default:
		s.log.Error("admin request failed", "err", err)
	}
	writeError(w, status, msg)
}

// didYouMean suggests, for a repo, user or mirror that does not exist, the
// existing one whose name is nearest ("; did you mean \"demo\"?"), or
// returns "". Whoever holds the admin socket may list them all anyway.
func (s *Server) didYouMean(err error) string {
	var nf *storage.NotFoundError
	if !errors.As(err, &nf) {
		return ""
	}
	var names []string
	switch nf.Kind {
	case "repo":
		repos, _ := s.store.Repos()
		for _, r := range repos {
			names = append(names, r.Name)
		}
	case "user":
		users, _ := s.store.Users()
		for _, u := range users {
			names = append(names, u.Name)
		}
	case "mirror":
		ms, _ := s.store.Mirrors()
		for _, m := range ms {
			names = append(names, m.Repo)
		}
	case "cluster":
		cs, _ := s.store.Clusters()
		for _, c := range cs {
			names = append(names, c.Name)
		}
	}
	if near := storage.Nearest(nf.Name, names); near != "" {
		return fmt.Sprintf("; did you mean %q?", near)
	}
	return ""
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}
