package ha

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// syncState is the primary's sync set and the highest position it
// acknowledged. Pushes are released under the read lock; a change of the
// set takes the write lock, so no push is acknowledged while the Lease is
// being rewritten and a joining member is checked against every
// acknowledged position.
type syncState struct {
	mu        sync.RWMutex
	members   []string      // the sync followers named in the Lease
	acked     atomic.Uint64 // highest position acknowledged to a client
	lastAckAt atomic.Int64  // unix nanoseconds of the last acknowledgement
	started   bool          // beginTerm ran, and endTerm not since
}

func (e *Elector) termStarted() bool {
	e.sync.mu.RLock()
	defer e.sync.mu.RUnlock()
	return e.sync.started
}

// endTerm forgets the sync state of the term that ended: should this
// member find the Lease still its own when it stands again, its next term
// starts from the Lease's annotations and checks its position against
// them, as after a restart.
func (e *Elector) endTerm() {
	e.sync.mu.Lock()
	defer e.sync.mu.Unlock()
	e.sync.started = false
}

// beginTerm sets up the sync state of a new term from the previous
// primary's annotations (nil for a new group): its sync followers other
// than this member hold everything acknowledged so far, and so does this
// member, whose whole position counts as acknowledged from now on.
func (e *Elector) beginTerm(prev map[string]string) {
	e.sync.mu.Lock()
	defer e.sync.mu.Unlock()
	e.sync.started = true
	e.sync.members = nil
	for _, id := range splitList(prev[AnnotationSyncFollowers]) {
		if id != e.cfg.ID {
			e.sync.members = append(e.sync.members, id)
		}
	}
	e.sync.acked.Store(max(e.cfg.Position(), annotationUint(prev, AnnotationAckedPosition)))
}

// writeAnnotations puts the primary's annotations into a, the leader
// Lease's.
func (e *Elector) writeAnnotations(a map[string]string) {
	e.sync.mu.RLock()
	defer e.sync.mu.RUnlock()
	e.annotate(a, e.sync.members, e.sync.acked.Load())
}

func (e *Elector) annotate(a map[string]string, members []string, acked uint64) {
	a[AnnotationSyncFollowers] = strings.Join(members, ",")
	a[AnnotationSyncReplicas] = strconv.Itoa(e.syncN())
	a[AnnotationAckedPosition] = strconv.FormatUint(acked, 10)
	a[AnnotationPrimaryAdvertise] = e.cfg.Advertise
}

// syncN is the number of synchronous followers a push needs. With
// --sync-replicas -1 that is 0 only once the member Leases show this
// member alone; an unknown size (no List has succeeded) needs 1, so that
// no push is acknowledged that a failover could lose.
func (e *Elector) syncN() int {
	if e.cfg.SyncReplicas >= 0 {
		return e.cfg.SyncReplicas
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.groupSize == 1 {
		return 0
	}
	return 1
}

// healthy says whether a follower is connected, so worth waiting for.
func (e *Elector) healthy(f Follower, _ time.Time) bool { return f.Connected }

func (e *Elector) followers() map[string]Follower {
	out := map[string]Follower{}
	if e.cfg.Replication == nil {
		return out
	}
	for _, f := range e.cfg.Replication.Followers() {
		out[f.ID] = f
	}
	return out
}

// maintainSync keeps the sync set at --sync-replicas members while this
// member is primary: it adds followers that hold every acknowledged change,
// and replaces a silent member only by such a follower (a silent member
// stays named rather than leave no one eligible).
func (e *Elector) maintainSync(ctx context.Context) {
	tick := time.NewTicker(min(e.cfg.RetryPeriod, 500*time.Millisecond))
	defer tick.Stop()
	for {
		if next, ok := e.nextSyncSet(); ok {
			if err := e.setSyncSet(ctx, next); err != nil && ctx.Err() == nil {
				e.log.Warn("change the synchronous replicas", "want", next, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// nextSyncSet proposes the sync set; ok is false when it stays as is.
func (e *Elector) nextSyncSet() (next []string, ok bool) {
	n := e.syncN()
	fs := e.followers()
	now := time.Now()
	e.sync.mu.RLock()
	cur := slices.Clone(e.sync.members)
	acked := e.sync.acked.Load()
	e.sync.mu.RUnlock()

	var live, silent []string
	for _, id := range cur {
		if f, ok := fs[id]; ok && e.healthy(f, now) {
			live = append(live, id)
		} else {
			silent = append(silent, id)
		}
	}
	var cands []Follower
	for _, f := range fs {
		if !slices.Contains(cur, f.ID) && f.ID != e.cfg.ID && e.healthy(f, now) && f.Acked >= acked {
			cands = append(cands, f)
		}
	}
	slices.SortFunc(cands, func(a, b Follower) int {
		if a.Acked != b.Acked {
			return compare(b.Acked, a.Acked)
		}
		return strings.Compare(a.ID, b.ID)
	})
	next = live
	for _, c := range cands {
		if len(next) >= n {
			break
		}
		next = append(next, c.ID)
	}
	// Keep silent members while the set is short: each holds every
	// acknowledged change and may be the only one that can take over.
	for _, id := range silent {
		if len(next) >= n {
			break
		}
		next = append(next, id)
	}
	if len(next) > n {
		next = next[:n]
	}
	slices.Sort(next)
	sorted := slices.Clone(cur)
	slices.Sort(sorted)
	return next, !slices.Equal(next, sorted)
}

func compare(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// setSyncSet writes next to the leader Lease, then counts it. No push is
// acknowledged meanwhile; a joining member must hold every acknowledged
// position.
func (e *Elector) setSyncSet(ctx context.Context, next []string) error {
	e.sync.mu.Lock()
	defer e.sync.mu.Unlock()
	fs := e.followers()
	for _, id := range next {
		if slices.Contains(e.sync.members, id) {
			continue
		}
		// acked cannot move meanwhile: acknowledging needs the read lock.
		if f, ok := fs[id]; !ok || f.Acked < e.sync.acked.Load() {
			return fmt.Errorf("%s fell behind position %d", id, e.sync.acked.Load())
		}
	}
	wctx, cancel := context.WithTimeout(ctx, e.cfg.RetryPeriod)
	defer cancel()
	a := map[string]string{}
	e.annotate(a, next, e.sync.acked.Load())
	if err := e.lock.writeSync(wctx, a); err != nil {
		return err
	}
	prev := e.sync.members
	e.sync.members = next
	e.log.Info("synchronous replicas", "members", next, "was", prev)
	return nil
}

// ErrNotDurable wraps the refusal of a change that the synchronous
// followers did not confirm in time.
var ErrNotDurable = errors.New("not acknowledged")

// WaitDurable returns nil once every synchronous follower holds position
// pos (at once with --sync-replicas 0), and an error naming what is
// missing when this member is not a writable primary or AckTimeout
// passes first. A push is acknowledged to its client only after nil.
func (e *Elector) WaitDurable(ctx context.Context, pos uint64) error {
	if err := e.Writable(); err != nil {
		return err
	}
	n := e.syncN()
	start := time.Now()
	defer func() { e.metrics.syncWait.Observe(time.Since(start).Seconds()) }()
	if n == 0 {
		e.markAcked(pos)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.AckTimeout)
	defer cancel()
	if e.cfg.Replication != nil {
		// Blocks until n followers acked; usually those of the sync set.
		_ = e.cfg.Replication.WaitAcked(ctx, pos, n)
	}
	wait := 200 * time.Microsecond
	for {
		if e.ackedBySyncSet(pos, n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return e.notDurable(pos, n)
		case <-time.After(wait):
			wait = min(2*wait, 5*time.Millisecond)
		}
	}
}

// ackedBySyncSet reports whether the sync set has n members that all hold
// pos, and if so marks pos acknowledged under the same lock.
func (e *Elector) ackedBySyncSet(pos uint64, n int) bool {
	fs := e.followers()
	e.sync.mu.RLock()
	defer e.sync.mu.RUnlock()
	if len(e.sync.members) < n {
		return false
	}
	for _, id := range e.sync.members {
		if fs[id].Acked < pos {
			return false
		}
	}
	e.markAckedLocked(pos)
	return true
}

func (e *Elector) markAcked(pos uint64) {
	e.sync.mu.RLock()
	defer e.sync.mu.RUnlock()
	e.markAckedLocked(pos)
}

// markAckedLocked raises the acknowledged position; the caller holds the
// read lock, which keeps the sync set from changing meanwhile.
func (e *Elector) markAckedLocked(pos uint64) {
	for {
		cur := e.sync.acked.Load()
		if pos <= cur || e.sync.acked.CompareAndSwap(cur, pos) {
			break
		}
	}
	e.sync.lastAckAt.Store(time.Now().UnixNano())
}

func (e *Elector) notDurable(pos uint64, n int) error {
	fs := e.followers()
	e.sync.mu.RLock()
	members := slices.Clone(e.sync.members)
	e.sync.mu.RUnlock()
	now := time.Now()
	var missing []string
	for _, id := range members {
		f, ok := fs[id]
		switch {
		case !ok:
			missing = append(missing, id+" not connected")
		case !e.healthy(f, now):
			missing = append(missing, fmt.Sprintf("%s disconnected %s ago", id, now.Sub(f.LastContact).Round(time.Second)))
		case f.Acked < pos:
			missing = append(missing, fmt.Sprintf("%s at position %d of %d", id, f.Acked, pos))
		}
	}
	if len(members) < n {
		missing = append(missing, fmt.Sprintf("%d of %d synchronous replicas in sync", len(members), n))
	}
	return fmt.Errorf("%w: the group is read-only: no %d synchronous replica(s) confirmed this change within %s (%s); the change is kept on the primary but was not acknowledged: retry once `fjord replicas` shows the replicas in sync",
		ErrNotDurable, n, e.cfg.AckTimeout, strings.Join(missing, "; "))
}

// SyncHealth returns "" when the primary can acknowledge pushes now, else
// why not (for /readyz and `fjord replicas`).
func (e *Elector) SyncHealth() string {
	e.sync.mu.RLock()
	members := slices.Clone(e.sync.members)
	e.sync.mu.RUnlock()
	why := syncHealth(e.syncN(), members, e.followers())
	e.mu.Lock()
	unknown := e.cfg.SyncReplicas < 0 && e.groupSize == 0 && e.listErr != ""
	listErr := e.listErr
	e.mu.Unlock()
	if why != "" && unknown {
		why += "; the group's size is unknown, so a synchronous replica is needed: listing the member Leases fails (" + listErr + ")"
	}
	return why
}

func syncHealth(n int, members []string, fs map[string]Follower) string {
	if n == 0 {
		return ""
	}
	var bad []string
	for _, id := range members {
		if f, ok := fs[id]; !ok || !f.Connected {
			bad = append(bad, id)
		}
	}
	switch {
	case len(members) < n:
		return fmt.Sprintf("read-only: %d of %d synchronous replicas in sync (no other replica is connected and caught up)", len(members), n)
	case len(bad) > 0:
		return fmt.Sprintf("read-only: synchronous replica(s) %s not connected, and no other replica is caught up to replace them", strings.Join(bad, ", "))
	}
	return ""
}
