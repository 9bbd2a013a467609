package ui

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// heartbeat keeps idle streams open through proxies and notices a
// session that ended.
const heartbeat = 20 * time.Second

// liveEvent is what a stream sends: which record changed. The page asks
// for its new state itself, through the same authorization as any page.
type liveEvent struct {
	Kind string `json:"kind"` // app, app-deleted, mirror, refs
	Name string `json:"name"`
}

// events streams, as Server-Sent Events, a "change" event for every app,
// mirror and repo the viewer may see, as the store commits them.
func (h *Handler) events(w http.ResponseWriter, r *http.Request, v *viewer) {
	rc := http.NewResponseController(w)
	stop := make(chan struct{})
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	h.streams[stop] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if _, ok := h.streams[stop]; ok {
			delete(h.streams, stop)
		}
		h.mu.Unlock()
	}()

	evs := h.store.SubscribeEvents()
	defer evs.Close()
	refs := h.store.Subscribe()
	defer refs.Close()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The retry hint makes a browser reconnect quickly after a restart.
	if _, err := w.Write([]byte("retry: 1000\n: fjord live updates\n\n")); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	send := func(ev liveEvent) bool {
		data, _ := json.Marshal(ev)
		if _, err := w.Write([]byte("event: change\ndata: " + string(data) + "\n\n")); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-stop:
			return
		case <-tick.C:
			if _, err := h.store.Session(v.id); err != nil {
				return // logged out, or expired: the next request gets the login page
			}
			if _, err := w.Write([]byte(": ping\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		case ev, ok := <-evs.C:
			if !ok {
				return
			}
			if h.eventVisible(v, ev) && !send(liveEvent{Kind: string(ev.Kind), Name: ev.Name}) {
				return
			}
		case c, ok := <-refs.C:
			if !ok {
				return
			}
			if h.mayRead(v, c.Repo) && !send(liveEvent{Kind: "refs", Name: c.Repo}) {
				return
			}
		}
	}
}

// eventVisible applies the pages' rules to an event: an app's by its
// repo, a mirror's by its repo; a deleted app is announced to admins only
// (its repo is gone with it).
func (h *Handler) eventVisible(v *viewer, ev storage.Event) bool {
	switch ev.Kind {
	case storage.EventApp:
		a, err := h.store.App(ev.Name)
		return err == nil && h.mayRead(v, a.Status.Repo)
	case storage.EventMirror:
		return h.mayRead(v, ev.Name)
	default:
		return v.Admin()
	}
}
