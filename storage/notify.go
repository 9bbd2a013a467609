package storage

import "sync"

// Subscription delivers ref changes in the order they were accepted. It
// buffers without bound, so a slow subscriber never holds up a push; it
// must be closed when no longer read.
type Subscription struct {
	// C receives each change once.
	C <-chan RefChange

	n     *notifier
	out   chan RefChange
	mu    sync.Mutex
	queue []RefChange
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// notifier fans ref changes out to subscribers.
type notifier struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscribe returns a subscription to every ref change accepted from now on:
// pushes, mirror syncs, anything that calls RefreshRefs.
func (s *Store) Subscribe() *Subscription {
	return s.notify.subscribe()
}

func (n *notifier) subscribe() *Subscription {
	sub := &Subscription{
		n:    n,
		out:  make(chan RefChange),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	sub.C = sub.out
	n.mu.Lock()
	if n.subs == nil {
		n.subs = make(map[*Subscription]struct{})
	}
	n.subs[sub] = struct{}{}
	n.mu.Unlock()
	go sub.pump()
	return sub
}

func (n *notifier) publish(c RefChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sub := range n.subs {
		sub.mu.Lock()
		sub.queue = append(sub.queue, c)
		sub.mu.Unlock()
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// pump moves queued changes to C until the subscription is closed.
func (sub *Subscription) pump() {
	defer close(sub.out)
	for {
		sub.mu.Lock()
		q := sub.queue
		sub.queue = nil
		sub.mu.Unlock()
		for _, c := range q {
			select {
			case sub.out <- c:
			case <-sub.done:
				return
			}
		}
		select {
		case <-sub.wake:
		case <-sub.done:
			return
		}
	}
}

// Close stops delivery and closes C. It is safe to call more than once.
func (sub *Subscription) Close() {
	sub.once.Do(func() {
		sub.n.mu.Lock()
		delete(sub.n.subs, sub)
		sub.n.mu.Unlock()
		close(sub.done)
	})
}
