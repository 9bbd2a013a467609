// Package ui is fjord's web UI: read-only pages of apps, their objects,
// diffs, history and drift, mirrors and repos, rendered on the server with
// html/template from the store, kept live by Server-Sent Events, behind a
// login by one-time link (`fjord ui login`). Its one write is "sync now",
// for admins, through the reconciler.
//
// Everything it serves is embedded (templates, the stylesheet shared with
// the bench reports, one small script for the live updates); there is no
// JavaScript build step.
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fjordhq/fjord/internal/style"
	"github.com/fjordhq/fjord/storage"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Prefix is where the UI is mounted on the HTTP listener.
const Prefix = "/ui/"

// Defaults.
const (
	// DefaultSessionTTL is how long a login lasts.
	DefaultSessionTTL = 12 * time.Hour
	// DefaultLoginTTL is how long a one-time login link is good for.
	DefaultLoginTTL = 10 * time.Minute
)

// Apps is what the UI needs of the reconciler. Methods are called with
// names of apps that exist in the store.
type Apps interface {
	// Sync syncs an app now, as `fjord app sync` does.
	Sync(ctx context.Context, name string) (storage.AppSync, error)
	// Diff returns the unified diff a sync would make (a server-side
	// dry-run apply of each object, as `fjord app diff`).
	Diff(ctx context.Context, name string) (string, error)
	// Objects returns what the reconciler knows in memory of an app's
	// objects and source: the target revision and each object's sync wave.
	Objects(name string) (AppObjects, bool)
}

// AppObjects is the reconciler's view of one app.
type AppObjects struct {
	// TargetRevision is the spec's revision (a branch, tag or commit).
	TargetRevision string
	// Waves maps an object (as ObjectHealth.ID names it, Kind/ns/name) to
	// its sync wave.
	Waves map[string]int
}

// Config configures New. Store is required; every other zero value picks
// the default its comment names.
type Config struct {
	Store *storage.Store
	// Apps is the reconciler; nil (no cluster) shows apps as stored and
	// says that diff and sync need the reconciler.
	Apps Apps
	// Logger; nil discards.
	Logger *slog.Logger
	// SessionTTL is how long a login lasts. Zero means DefaultSessionTTL.
	SessionTTL time.Duration
	// Git is the git binary that reads commit subjects. Empty means "git".
	Git string
	// WriteGate, if set, is asked before "sync now": on a replica group's
	// member that is not the primary its error (which names the primary)
	// refuses the sync, as the admin API's writes are.
	WriteGate func() error
}

// Handler serves the UI under Prefix. Create it with New.
type Handler struct {
	store   *storage.Store
	apps    Apps
	log     *slog.Logger
	ttl     time.Duration
	pages   map[string]*template.Template
	mux     *http.ServeMux
	commits *commitCache
	gate    func() error

	// streams are the open event streams; Shutdown ends them.
	mu       sync.Mutex
	streams  map[chan struct{}]struct{}
	shutdown bool
	// writeTimeout bounds each write to an event stream.
	writeTimeout time.Duration
}

var _ http.Handler = (*Handler)(nil)

// New parses the templates and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("ui: Config.Store is required")
	}
	h := &Handler{
		store:   cfg.Store,
		apps:    cfg.Apps,
		log:     cfg.Logger,
		ttl:     cfg.SessionTTL,
		pages:   map[string]*template.Template{},
		gate:    cfg.WriteGate,
		streams: map[chan struct{}]struct{}{},

		writeTimeout: eventWriteTimeout,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.commits = newCommitCache(cfg.Store, cfg.Git, h.log)
	if h.ttl <= 0 {
		h.ttl = DefaultSessionTTL
	}
	for _, page := range []string{"login", "apps", "app", "diff", "mirrors", "repos", "error"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", page, err)
		}
		h.pages[page] = t
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /ui/login", h.login)
	m.HandleFunc("GET /ui/static/{file}", h.static)
	m.Handle("POST /ui/logout", h.authed(h.logout))
	m.Handle("GET /ui/{$}", h.authed(h.appsPage))
	m.Handle("GET /ui/apps/{name}", h.authed(h.appPage))
	m.Handle("GET /ui/apps/{name}/diff", h.authed(h.diffPage))
	m.Handle("POST /ui/apps/{name}/sync", h.authed(h.syncApp))
	m.Handle("GET /ui/mirrors", h.authed(h.mirrorsPage))
	m.Handle("GET /ui/repos", h.authed(h.reposPage))
	m.Handle("GET /ui/events", h.authed(h.events))
	m.Handle("/ui/", h.authed(func(w http.ResponseWriter, r *http.Request, v *viewer) {
		h.fail(w, r, v, http.StatusNotFound, "no such page: "+r.URL.Path)
	}))
	h.mux = m
}

// ServeHTTP serves the UI. Every response says it must not be cached or
// framed: pages hold data only their viewer may see.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on the UI's own form posts, which the CSRF check
	// must refuse.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.mux.ServeHTTP(w, r)
}

// Shutdown ends every open event stream, so that http.Server.Shutdown
// (which waits for connections to go idle, and a stream never does) is
// not held up by an open browser tab. Register it with
// http.Server.RegisterOnShutdown.
func (h *Handler) Shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shutdown = true
	for c := range h.streams {
		close(c)
		delete(h.streams, c)
	}
}

// static serves the script and the stylesheet, to anyone: they hold no
// data.
func (h *Handler) static(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("file") {
	case "live.js":
		data, _ := assets.ReadFile("static/live.js")
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(data)
	case "style.css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Write([]byte(style.CSS()))
	default:
		http.NotFound(w, r)
	}
}

// page is what every template gets: the viewer, the page's own data, and
// what the live script should watch.
type page struct {
	Title string
	Nav   string // which nav entry is current
	V     *viewer
	// Live names the events that refresh the page: "apps", "app:NAME",
	// "mirrors", "repos"; empty for none.
	Live string
	Data any
}

// render writes a page; a template error after the header is sent can
// only be logged.
func (h *Handler) render(w http.ResponseWriter, status int, name string, p page) {
	var b strings.Builder
	if err := h.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		h.log.Error("ui: render", "page", name, "err", err)
		http.Error(w, "the page failed to render; the server log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (h *Handler) fail(w http.ResponseWriter, _ *http.Request, v *viewer, status int, msg string) {
	h.render(w, status, "error", page{Title: http.StatusText(status), V: v, Data: msg})
}
