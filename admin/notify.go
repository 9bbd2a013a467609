package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fjordhq/fjord/notify"
	"github.com/fjordhq/fjord/storage"
)

// Notify adds notifiers: it checks them and records the state they start
// from (the notify package's Manager).
type Notify interface {
	Add(ctx context.Context, n storage.Notifier) (storage.Notifier, error)
}

// AddNotifierRequest is the body of POST /v1/notifiers.
type AddNotifierRequest struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Format string `json:"format,omitempty"`
	// Secret signs each POST; it is never returned.
	Secret  string   `json:"secret,omitempty"`
	On      []string `json:"on"`
	AppGlob string   `json:"appGlob,omitempty"`
}

// NotifierInfo is a notifier as the API shows it: the URL's path (which
// may hold a token) elided, the secret only as whether there is one.
type NotifierInfo struct {
	Name    string    `json:"name"`
	URL     string    `json:"url"`
	Format  string    `json:"format"`
	On      []string  `json:"on"`
	AppGlob string    `json:"appGlob,omitempty"`
	Signed  bool      `json:"signed"`
	Created time.Time `json:"created"`
	// Last is the newest delivery, without its body; nil when none yet.
	Last *storage.Delivery `json:"last,omitempty"`
}

func (s *Server) notifyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/notifiers", s.listNotifiers)
	mux.HandleFunc("POST /v1/notifiers", s.addNotifier)
	mux.HandleFunc("GET /v1/notifiers/history", s.notifierHistory)
	mux.HandleFunc("DELETE /v1/notifiers", s.deleteNotifier)
}

func (s *Server) listNotifiers(w http.ResponseWriter, _ *http.Request) {
	ns, err := s.store.Notifiers()
	if err != nil {
		s.fail(w, err)
		return
	}
	out := []NotifierInfo{}
	for _, n := range ns {
		info := notifierInfo(n)
		if ds, err := s.store.Deliveries(n.Name, 1); err == nil && len(ds) == 1 {
			ds[0].Body = nil
			info.Last = &ds[0]
		}
		out = append(out, info)
	}
	writeJSON(w, http.StatusOK, out)
}

func notifierInfo(n storage.Notifier) NotifierInfo {
	return NotifierInfo{Name: n.Name, URL: notify.RedactURL(n.URL), Format: n.Format, On: n.On, AppGlob: n.AppGlob, Signed: n.Secret != "", Created: n.Created}
}

func (s *Server) addNotifier(w http.ResponseWriter, r *http.Request) {
	if s.notify == nil {
		writeError(w, http.StatusServiceUnavailable, "notifications are not running on this server")
		return
	}
	var req AddNotifierRequest
	if !decode(w, r, &req) {
		return
	}
	n, err := s.notify.Add(r.Context(), storage.Notifier{Name: req.Name, URL: req.URL, Format: req.Format, Secret: req.Secret, On: req.On, AppGlob: req.AppGlob})
	if errors.Is(err, notify.ErrInvalid) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, notifierInfo(n))
}

func (s *Server) notifierHistory(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if _, err := s.store.Notifier(name); err != nil {
		s.fail(w, err)
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	ds, err := s.store.Deliveries(name, n)
	if err != nil {
		s.fail(w, err)
		return
	}
	if ds == nil {
		ds = []storage.Delivery{}
	}
	writeJSON(w, http.StatusOK, ds)
}

func (s *Server) deleteNotifier(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteNotifier(r.URL.Query().Get("name")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Notifiers lists the notifiers with their newest delivery.
func (c *Client) Notifiers(ctx context.Context) ([]NotifierInfo, error) {
	var out []NotifierInfo
	return out, c.do(ctx, http.MethodGet, "/v1/notifiers", nil, &out)
}

// AddNotifier adds a notifier; it is sent what happens from now on.
func (c *Client) AddNotifier(ctx context.Context, req AddNotifierRequest) (NotifierInfo, error) {
	var out NotifierInfo
	return out, c.do(ctx, http.MethodPost, "/v1/notifiers", req, &out)
}

// NotifierHistory returns up to n of a notifier's deliveries, newest
// first, with every attempt's response code (n <= 0: all kept).
func (c *Client) NotifierHistory(ctx context.Context, name string, n int) ([]storage.Delivery, error) {
	var out []storage.Delivery
	return out, c.do(ctx, http.MethodGet, "/v1/notifiers/history?name="+url.QueryEscape(name)+"&n="+strconv.Itoa(n), nil, &out)
}

// DeleteNotifier removes a notifier and its history.
func (c *Client) DeleteNotifier(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/notifiers?name="+url.QueryEscape(name), nil, nil)
}
