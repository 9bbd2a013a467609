package storage

import (
	"context"
	"sync"
)

// repoGate orders the writers of a repo's objects against its upkeep:
// pushes and syncs share it, housekeeping takes it alone.
type repoGate struct {
	mu    sync.Mutex
	gates map[string]*sync.RWMutex
	// upkeep is held shared by housekeeping and alone by Backup, so a
	// backup never copies packs a repack is replacing.
	upkeep sync.RWMutex
}

func (g *repoGate) get(repo string) *sync.RWMutex {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates == nil {
		g.gates = make(map[string]*sync.RWMutex)
	}
	l, ok := g.gates[repo]
	if !ok {
		l = new(sync.RWMutex)
		g.gates[repo] = l
	}
	return l
}

// BeginRepoWrite marks a write to repo's objects and refs (a push, a
// mirror sync) as running until done is called. It waits while
// housekeeping rewrites the repo's packs; writes do not wait for each
// other.
func (s *Store) BeginRepoWrite(repo string) (done func()) {
	l := s.gate.get(repo)
	l.RLock()
	return l.RUnlock
}

// LockRepoUpkeep gives housekeeping repo alone: it waits for the writes
// running now to finish (new ones wait for unlock) and for a backup in
// progress. It returns ctx's error if ctx ends first.
func (s *Store) LockRepoUpkeep(ctx context.Context, repo string) (unlock func(), err error) {
	locked := make(chan struct{})
	l := s.gate.get(repo)
	go func() {
		s.gate.upkeep.RLock()
		l.Lock()
		close(locked)
	}()
	select {
	case <-locked:
		// Housekeeping's packs hold no new objects: no change sends them.
		return func() { s.markPacksSeen(repo, false); l.Unlock(); s.gate.upkeep.RUnlock() }, nil
	case <-ctx.Done():
		go func() { <-locked; l.Unlock(); s.gate.upkeep.RUnlock() }()
		return nil, ctx.Err()
	}
}
