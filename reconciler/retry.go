package reconciler

import (
	"context"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// retryState is where an app's syncPolicy.retry stands; guarded by the
// appState's mu.
type retryState struct {
	revision string // the commit whose failed sync is retried
	done     int    // retries made for it
	next     time.Time
	timer    *time.Timer
}

// stop cancels a pending retry.
func (s *retryState) stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
	*s = retryState{}
}

// syncAndRetry syncs an app and then, per its syncPolicy.retry, schedules
// a retry of a failed sync (or forgets the retries after a good one).
func (r *Reconciler) syncAndRetry(ctx context.Context, st *appState, trigger storage.Trigger, opts SyncOptions) (storage.AppSync, error) {
	rec, err := r.syncApp(ctx, st, trigger, opts)
	if rec.Start.IsZero() || ctx.Err() != nil {
		return rec, err // not a sync that ran (app gone, shutting down)
	}
	r.afterSync(st, trigger, rec)
	return rec, err
}

// afterSync records and schedules the retry of a failed sync: retry n
// (from 1) waits Backoff(n), and no retry follows the limit's.
func (r *Reconciler) afterSync(st *appState, trigger storage.Trigger, rec storage.AppSync) {
	st.mu.Lock()
	app := st.app
	if app == nil || st.deleting {
		st.mu.Unlock()
		return
	}
	policy, retries := app.RetryPolicy()
	rs := &st.retry
	if rec.Error == "" || !retries {
		had := rs.revision != ""
		rs.stop()
		st.mu.Unlock()
		if had {
			_ = r.store.UpdateAppStatus(st.name, func(s *storage.AppStatus) { s.Retry = nil })
		}
		return
	}
	if rs.revision != rec.Revision {
		// A new commit (or the first failure) starts the count again.
		rs.stop()
		rs.revision = rec.Revision
	}
	if trigger == storage.TriggerRetry {
		rs.done++
	}
	state := storage.RetryState{Attempt: rs.done, Limit: policy.Limit, Revision: rs.revision}
	switch {
	case policy.Limit >= 0 && rs.done >= policy.Limit:
		// Spent: the next push or resync tries again.
		if rs.timer != nil {
			rs.timer.Stop()
			rs.timer = nil
		}
		rs.next = time.Time{}
	case rs.timer != nil && trigger != storage.TriggerRetry:
		// A push or resync failed while a retry is pending: keep it.
	default:
		wait := policy.Backoff(rs.done + 1)
		rs.next = time.Now().Add(wait).UTC()
		name := st.name
		rs.timer = time.AfterFunc(wait, func() { r.enqueue(name, storage.TriggerRetry) })
	}
	state.Next = rs.next
	st.mu.Unlock()
	if err := r.store.UpdateAppStatus(st.name, func(s *storage.AppStatus) { s.Retry = &state }); err != nil {
		r.log.Error("record retry", "app", st.name, "err", err)
	}
}
