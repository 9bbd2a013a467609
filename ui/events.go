package ui

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// heartbeat keeps idle streams open through proxies and notices a
// session that ended.
const heartbeat = 20 * time.Second

// eventWriteTimeout bounds one write to an event stream: a tab that
// stopped reading for this long is dropped (the browser reconnects when it
// reads again).
const eventWriteTimeout = 15 * time.Second

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
	// The subscriptions are drained at once into a set of pending names,
	// so a tab that stops reading holds neither the store's queues (they
	// grow without bound) nor more than one entry per record here; the
	// page asks for the record's state itself, so one event per name is
	// all it needs.
	pending := newPendingEvents()
	go pending.drain(evs, refs)
	write := func(b []byte) bool {
		// A tab that stops reading would block Write for ever: give each
		// write a deadline. A ResponseWriter without one (a test
		// recorder) cannot block anyway.
		if err := rc.SetWriteDeadline(time.Now().Add(h.writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-stop:
			return
		case <-pending.done:
			return
		case <-tick.C:
			if _, err := h.store.Session(v.id); err != nil {
				return // logged out, or expired: the next request gets the login page
			}
			if !write([]byte(": ping\n\n")) {
				return
			}
		case <-pending.wake:
			for _, ev := range pending.take() {
				visible := h.mayRead(v, ev.Name)
				if ev.Kind != "refs" {
					visible = h.eventVisible(v, storage.Event{Kind: storage.EventKind(ev.Kind), Name: ev.Name})
				}
				if !visible {
					continue
				}
				data, _ := json.Marshal(ev)
				if !write([]byte("event: change\ndata: " + string(data) + "\n\n")) {
					return
				}
			}
		}
	}
}

// pendingEvents is one stream's events not yet written, each record once,
// in the order first seen.
type pendingEvents struct {
	mu    sync.Mutex
	order []liveEvent
	set   map[liveEvent]struct{}
	wake  chan struct{} // one token: something is pending
	done  chan struct{} // closed when a subscription ends
}

func newPendingEvents() *pendingEvents {
	return &pendingEvents{set: map[liveEvent]struct{}{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// add records ev unless it is already pending.
func (p *pendingEvents) add(ev liveEvent) {
	p.mu.Lock()
	if _, ok := p.set[ev]; !ok {
		p.set[ev] = struct{}{}
		p.order = append(p.order, ev)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take returns the pending events and forgets them.
func (p *pendingEvents) take() []liveEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.order
	p.order = nil
	clear(p.set)
	return out
}

// drain moves both subscriptions' values into p until either is closed
// (the handler's deferred Close ends it).
func (p *pendingEvents) drain(evs *storage.Subscription[storage.Event], refs *storage.Subscription[storage.RefChange]) {
	defer close(p.done)
	for {
		select {
		case ev, ok := <-evs.C:
			if !ok {
				return
			}
			p.add(liveEvent{Kind: string(ev.Kind), Name: ev.Name})
		case c, ok := <-refs.C:
			if !ok {
				return
			}
			p.add(liveEvent{Kind: "refs", Name: c.Repo})
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
