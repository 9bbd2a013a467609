package storage

import "sync"

// Subscription delivers the values of one feed (ref changes, or record
// events) in the order they were published. It buffers without bound, so a
// slow subscriber never holds up a push or a sync; it must be closed when
// no longer read.
type Subscription[T any] struct {
	// C receives each value once.
	C <-chan T

	f     *feed[T]
	out   chan T
	mu    sync.Mutex
	queue []T
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// feed fans published values out to its subscribers.
type feed[T any] struct {
	mu   sync.Mutex
	subs map[*Subscription[T]]struct{}
}

// Subscribe returns a subscription to every ref change accepted from now on:
// pushes, mirror syncs, anything that calls RefreshRefs.
func (s *Store) Subscribe() *Subscription[RefChange] {
	return s.notify.subscribe()
}

func (f *feed[T]) subscribe() *Subscription[T] {
	sub := &Subscription[T]{
		f:    f,
		out:  make(chan T),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	sub.C = sub.out
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[*Subscription[T]]struct{})
	}
	f.subs[sub] = struct{}{}
	f.mu.Unlock()
	go sub.pump()
	return sub
}

func (f *feed[T]) publish(v T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		sub.mu.Lock()
		sub.queue = append(sub.queue, v)
		sub.mu.Unlock()
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// pump moves queued values to C until the subscription is closed.
func (sub *Subscription[T]) pump() {
	defer close(sub.out)
	for {
		sub.mu.Lock()
		q := sub.queue
		sub.queue = nil
		sub.mu.Unlock()
		for _, v := range q {
			select {
			case sub.out <- v:
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
func (sub *Subscription[T]) Close() {
	sub.once.Do(func() {
		sub.f.mu.Lock()
		delete(sub.f.subs, sub)
		sub.f.mu.Unlock()
		close(sub.done)
	})
}
