package admin

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
)

// Mirrors is what the admin API needs of the mirror manager.
type Mirrors interface {
	Add(ctx context.Context, m storage.Mirror, creds map[string][]byte) (storage.MirrorSync, error)
	Sync(ctx context.Context, repo string) (storage.MirrorSync, error)
	Delete(ctx context.Context, repo string, keepRepo bool) error
	Update(ctx context.Context, repo string, u mirror.Update) (storage.Mirror, error)
	Restore(ctx context.Context, repo string, event uint64, toBranch string) (mirror.Restored, error)
	AddPush(ctx context.Context, p storage.PushMirror, creds map[string][]byte) (storage.PushMirror, error)
	DeletePush(ctx context.Context, repo, remote string) error
}

// AddPushMirrorRequest is the body of POST /v1/pushmirrors.
type AddPushMirrorRequest struct {
	Repo        string            `json:"repo"`
	Remote      string            `json:"remote"`
	Interval    time.Duration     `json:"interval,omitempty"`
	Credentials map[string][]byte `json:"credentials,omitempty"`
}

// AddMirrorRequest is the body of POST /v1/mirrors. Credentials are file
// contents keyed by ssh_key, known_hosts, token, webhook_secret.
type AddMirrorRequest struct {
	Repo        string            `json:"repo"`
	Upstream    string            `json:"upstream"`
	Interval    time.Duration     `json:"interval,omitempty"`
	Retention   int               `json:"retention,omitempty"`
	Credentials map[string][]byte `json:"credentials,omitempty"`
}

// UpdateMirrorRequest is the body of PATCH /v1/mirrors?repo=NAME; nil and
// empty fields keep what is there. Credentials are file contents keyed as
// in AddMirrorRequest; RemoveCredentials names files to delete.
type UpdateMirrorRequest struct {
	Interval          *time.Duration    `json:"interval,omitempty"`
	Retention         *int              `json:"retention,omitempty"`
	Credentials       map[string][]byte `json:"credentials,omitempty"`
	RemoveCredentials []string          `json:"removeCredentials,omitempty"`
}

// MirrorStatus is a mirror as `fjord mirror list` shows it.
type MirrorStatus struct {
	storage.Mirror
	HeadHash string `json:"headHash,omitempty"`
	// Lag is how long the mirror may have been behind its upstream: zero
	// when the last sync succeeded, else the time since the last success.
	Lag time.Duration `json:"lag"`
}

func (s *Server) mirrorRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/mirrors", s.listMirrors)
	mux.HandleFunc("POST /v1/mirrors", s.addMirror)
	mux.HandleFunc("DELETE /v1/mirrors", s.deleteMirror)
	mux.HandleFunc("PATCH /v1/mirrors", s.updateMirror)
	mux.HandleFunc("POST /v1/mirrors/restore", s.restoreMirror)
	mux.HandleFunc("POST /v1/mirrors/sync", s.syncMirror)
	mux.HandleFunc("GET /v1/mirrors/syncs", s.mirrorSyncs)
	mux.HandleFunc("GET /v1/mirrors/events", s.mirrorEvents)
	mux.HandleFunc("GET /v1/pushmirrors", s.listPushMirrors)
	mux.HandleFunc("POST /v1/pushmirrors", s.addPushMirror)
	mux.HandleFunc("DELETE /v1/pushmirrors", s.deletePushMirror)
}

func (s *Server) listPushMirrors(w http.ResponseWriter, r *http.Request) {
	ps, err := s.store.PushMirrors(r.URL.Query().Get("repo"))
	if err != nil {
		s.fail(w, err)
		return
	}
	if ps == nil {
		ps = []storage.PushMirror{}
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Server) addPushMirror(w http.ResponseWriter, r *http.Request) {
	if !s.needMirrors(w) {
		return
	}
	var req AddPushMirrorRequest
	if !decode(w, r, &req) {
		return
	}
	for k := range req.Credentials {
		switch k {
		case "ssh_key", "known_hosts", "token":
		default:
			writeError(w, http.StatusBadRequest, "unknown credential "+strconv.Quote(k))
			return
		}
	}
	p, err := s.mirrors.AddPush(r.Context(), storage.PushMirror{Repo: req.Repo, Remote: req.Remote, Interval: req.Interval}, req.Credentials)
	if err != nil && p.ID == "" {
		s.failBadRequest(w, err)
		return
	}
	// Added; a failed first push is in LastError and will be retried.
	writeJSON(w, http.StatusCreated, p)
}

func (s *Server) deletePushMirror(w http.ResponseWriter, r *http.Request) {
	if !s.needMirrors(w) {
		return
	}
	if err := s.mirrors.DeletePush(r.Context(), r.URL.Query().Get("repo"), r.URL.Query().Get("remote")); err != nil {
		s.failBadRequest(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// PushMirrors lists push mirrors (of one repo, or all when repo is "").
func (c *Client) PushMirrors(ctx context.Context, repo string) ([]storage.PushMirror, error) {
	var out []storage.PushMirror
	return out, c.do(ctx, http.MethodGet, "/v1/pushmirrors?repo="+queryEscape(repo), nil, &out)
}

// AddPushMirror adds a push mirror and runs its first push.
func (c *Client) AddPushMirror(ctx context.Context, req AddPushMirrorRequest) (storage.PushMirror, error) {
	var out storage.PushMirror
	return out, c.do(ctx, http.MethodPost, "/v1/pushmirrors", req, &out)
}

// DeletePushMirror removes a push mirror.
func (c *Client) DeletePushMirror(ctx context.Context, repo, remote string) error {
	return c.do(ctx, http.MethodDelete, "/v1/pushmirrors?repo="+queryEscape(repo)+"&remote="+queryEscape(remote), nil, nil)
}

func (s *Server) needMirrors(w http.ResponseWriter) bool {
	if s.mirrors == nil {
		writeError(w, http.StatusServiceUnavailable, "mirrors are not running on this server")
		return false
	}
	return true
}

func (s *Server) listMirrors(w http.ResponseWriter, _ *http.Request) {
	ms, err := s.store.Mirrors()
	if err != nil {
		s.fail(w, err)
		return
	}
	out := make([]MirrorStatus, 0, len(ms))
	now := time.Now()
	for _, m := range ms {
		st := MirrorStatus{Mirror: m}
		if refs, ok := s.store.Refs(m.Repo); ok {
			st.HeadHash = refs.HeadHash
		}
		if m.LastError != "" {
			since := m.Created
			if !m.LastSuccess.IsZero() {
				since = m.LastSuccess
			}
			st.Lag = now.Sub(since).Round(time.Second)
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addMirror(w http.ResponseWriter, r *http.Request) {
	if !s.needMirrors(w) {
		return
	}
	var req AddMirrorRequest
	if !decode(w, r, &req) {
		return
	}
	if !knownMirrorCredentials(w, req.Credentials, nil) {
		return
	}
	rec, err := s.mirrors.Add(r.Context(), storage.Mirror{Repo: req.Repo, Upstream: req.Upstream, Interval: req.Interval, Retention: req.Retention}, req.Credentials)
	if err != nil {
		s.failBadRequest(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, rec)
}

// knownMirrorCredentials answers 400 and reports false for a credential
// name a mirror does not have.
func knownMirrorCredentials(w http.ResponseWriter, creds map[string][]byte, remove []string) bool {
	names := slices.Collect(maps.Keys(creds))
	for _, k := range append(names, remove...) {
		switch k {
		case mirror.CredSSHKey, mirror.CredKnownHosts, mirror.CredToken, mirror.CredWebhookSecret:
		default:
			writeError(w, http.StatusBadRequest, "unknown credential "+strconv.Quote(k))
			return false
		}
	}
	return true
}

func (s *Server) updateMirror(w http.ResponseWriter, r *http.Request) {
	if !s.needMirrors(w) {
		return
	}
	var req UpdateMirrorRequest
	if !decode(w, r, &req) || !knownMirrorCredentials(w, req.Credentials, req.RemoveCredentials) {
		return
	}
	m, err := s.mirrors.Update(r.Context(), r.URL.Query().Get("repo"), mirror.Update{Interval: req.Interval, Retention: req.Retention,
		Credentials: req.Credentials, RemoveCredentials: req.RemoveCredentials})
	if err != nil {
		s.failBadRequest(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) restoreMirror(w http.ResponseWriter, r *http.Request) {
	if !s.needMirrors(w) {
		return
	}
	q := r.URL.Query()
	id, err := strconv.ParseUint(q.Get("event"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("event %q: give the number in the ID column of fjord mirror history %s", q.Get("event"), q.Get("repo")))
		return
	}
	res, err := s.mirrors.Restore(r.Context(), q.Get("repo"), id, q.Get("to-branch"))
	if err != nil {
		s.failBadRequest(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) deleteMirror(w http.ResponseWriter, r *http.Request) {
	if !s.needMirrors(w) {
		return
	}
	keep := r.URL.Query().Get("keep-repo") == "true"
	if !keep && r.URL.Query().Get("force") != "true" {
		// Deleting the mirror deletes its repo: an app on it would fail
		// quietly from then on, so say so first (as repo delete does).
		name, err := storage.NormalizeRepoName(r.URL.Query().Get("repo"))
		if err != nil {
			s.fail(w, err)
			return
		}
		if apps, err := s.store.AppsUsingRepo(name); err != nil {
			s.fail(w, err)
			return
		} else if len(apps) > 0 {
			writeError(w, http.StatusConflict, fmt.Sprintf("mirror %q's repo is the source of apps %s: stop mirroring but keep the repo with --keep-repo, delete the apps first, or delete mirror and repo anyway with --force (their syncs fail until it exists again)", name, strings.Join(apps, ", ")))
			return
		}
	}
	if err := s.mirrors.Delete(r.Context(), r.URL.Query().Get("repo"), keep); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) syncMirror(w http.ResponseWriter, r *http.Request) {
	if !s.needMirrors(w) {
		return
	}
	rec, err := s.mirrors.Sync(r.Context(), r.URL.Query().Get("repo"))
	if err != nil && rec.Start.IsZero() {
		s.fail(w, err)
		return
	}
	// A failed sync is still a result: its error is in the record.
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) mirrorSyncs(w http.ResponseWriter, r *http.Request) {
	repo := r.URL.Query().Get("repo")
	if _, err := s.store.Mirror(repo); err != nil {
		s.fail(w, err)
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	recs, err := s.store.MirrorSyncs(repo, n)
	if err != nil {
		s.fail(w, err)
		return
	}
	if recs == nil {
		recs = []storage.MirrorSync{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (s *Server) mirrorEvents(w http.ResponseWriter, r *http.Request) {
	repo := r.URL.Query().Get("repo")
	if _, err := s.store.Mirror(repo); err != nil {
		s.fail(w, err)
		return
	}
	evs, err := s.store.MirrorEvents(repo, 0)
	if err != nil {
		s.fail(w, err)
		return
	}
	if evs == nil {
		evs = []storage.MirrorEvent{}
	}
	writeJSON(w, http.StatusOK, evs)
}

// Mirror client calls.

// Mirrors lists mirrors with their status.
func (c *Client) Mirrors(ctx context.Context) ([]MirrorStatus, error) {
	var out []MirrorStatus
	return out, c.do(ctx, http.MethodGet, "/v1/mirrors", nil, &out)
}

// AddMirror adds a mirror and waits for its first sync.
func (c *Client) AddMirror(ctx context.Context, req AddMirrorRequest) (storage.MirrorSync, error) {
	var out storage.MirrorSync
	return out, c.do(ctx, http.MethodPost, "/v1/mirrors", req, &out)
}

// UpdateMirror changes a mirror's settings and returns them.
func (c *Client) UpdateMirror(ctx context.Context, repo string, req UpdateMirrorRequest) (storage.Mirror, error) {
	var out storage.Mirror
	return out, c.do(ctx, http.MethodPatch, "/v1/mirrors?repo="+queryEscape(repo), req, &out)
}

// RestoreMirror pushes the old tip kept by history-protection event to the
// mirror's upstream (onto its ref, or onto toBranch if given) and syncs.
func (c *Client) RestoreMirror(ctx context.Context, repo, event, toBranch string) (mirror.Restored, error) {
	var out mirror.Restored
	return out, c.do(ctx, http.MethodPost, "/v1/mirrors/restore?repo="+queryEscape(repo)+"&event="+queryEscape(event)+"&to-branch="+queryEscape(toBranch), nil, &out)
}

// DeleteMirror removes a mirror, and its repo unless keepRepo; deleting
// a repo that apps use is refused (naming them) unless force.
func (c *Client) DeleteMirror(ctx context.Context, repo string, keepRepo, force bool) error {
	return c.do(ctx, http.MethodDelete, "/v1/mirrors?repo="+queryEscape(repo)+"&keep-repo="+strconv.FormatBool(keepRepo)+"&force="+strconv.FormatBool(force), nil, nil)
}

// SyncMirror runs a sync now and returns its record.
func (c *Client) SyncMirror(ctx context.Context, repo string) (storage.MirrorSync, error) {
	var out storage.MirrorSync
	return out, c.do(ctx, http.MethodPost, "/v1/mirrors/sync?repo="+queryEscape(repo), nil, &out)
}

// MirrorSyncs returns the last n syncs, newest first.
func (c *Client) MirrorSyncs(ctx context.Context, repo string, n int) ([]storage.MirrorSync, error) {
	var out []storage.MirrorSync
	return out, c.do(ctx, http.MethodGet, "/v1/mirrors/syncs?repo="+queryEscape(repo)+"&n="+strconv.Itoa(n), nil, &out)
}

// MirrorEvents returns the history-protection events, newest first.
func (c *Client) MirrorEvents(ctx context.Context, repo string) ([]storage.MirrorEvent, error) {
	var out []storage.MirrorEvent
	return out, c.do(ctx, http.MethodGet, "/v1/mirrors/events?repo="+queryEscape(repo), nil, &out)
}
