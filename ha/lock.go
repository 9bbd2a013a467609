package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Annotations of the leader Lease. The primary writes them on every
// renewal; a candidate reads them before it may take the Lease.
const (
	// AnnotationSyncFollowers names the synchronous followers, comma
	// separated: every acknowledged change is on each of them.
	AnnotationSyncFollowers = "fjord.dev/sync-followers"
	// AnnotationSyncReplicas is the primary's --sync-replicas.
	AnnotationSyncReplicas = "fjord.dev/sync-replicas"
	// AnnotationAckedPosition is the highest position the primary
	// acknowledged to a client (written at renewals, so it may trail).
	AnnotationAckedPosition = "fjord.dev/acked-position"
	// AnnotationPrimaryAdvertise is the primary's advertise address.
	AnnotationPrimaryAdvertise = "fjord.dev/primary-advertise"
	// AnnotationPromote names a member an operator allowed to take over
	// although it may lack acknowledged changes (`fjord replicas promote
	// ID --force`).
	AnnotationPromote = "fjord.dev/promote"
)

// NotEligibleError is why this member may not take the leader Lease.
type NotEligibleError struct{ Reason string }

func (e *NotEligibleError) Error() string { return e.Reason }

// leaderLock is the resourcelock.Interface the elector runs on: a Lease
// whose annotations carry the sync set, and whose Update refuses to take
// the Lease over from another holder unless this member holds every
// acknowledged change.
type leaderLock struct {
	e *Elector

	mu    sync.Mutex
	lease *coordinationv1.Lease // as last read or written
}

var _ resourcelock.Interface = (*leaderLock)(nil)

func (l *leaderLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	lease, err := l.e.leases.Get(ctx, l.e.cfg.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	l.mu.Lock()
	l.lease = lease
	l.mu.Unlock()
	l.e.observeLeader(lease)
	rec := resourcelock.LeaseSpecToLeaderElectionRecord(&lease.Spec)
	raw, err := json.Marshal(rec)
	if err != nil {
		return nil, nil, err
	}
	return rec, raw, nil
}

// Create makes the leader Lease of a new group. A group with no Lease has
// acknowledged nothing this member could lack, unless another member's
// Lease says it holds more than this one: then it waits for that one.
func (l *leaderLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	if err := l.e.mayFound(ctx); err != nil {
		l.e.setBlocked(err.Error())
		return err
	}
	start := time.Now()
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:        l.e.cfg.Name,
			Namespace:   l.e.cfg.Namespace,
			Labels:      map[string]string{LabelGroup + "-leader": l.e.cfg.Name},
			Annotations: map[string]string{},
		},
		Spec: resourcelock.LeaderElectionRecordToLeaseSpec(&ler),
	}
	l.e.beginTerm(nil)
	l.e.writeAnnotations(lease.Annotations)
	got, err := l.e.leases.Create(ctx, lease, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.lease = got
	l.mu.Unlock()
	l.e.renewed(start)
	return nil
}

// Update renews, takes over or releases the Lease. Taking it over from
// another holder (or from none, after a release) needs this member to be
// eligible by the previous primary's annotations.
func (l *leaderLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	// The sync state's lock is never taken while l.mu is held: setSyncSet
	// takes them in the other order.
	l.mu.Lock()
	if l.lease == nil {
		l.mu.Unlock()
		return errors.New("ha: leader lease not read yet")
	}
	lease := l.lease.DeepCopy()
	l.mu.Unlock()
	me := l.e.cfg.ID
	prev := holder(lease)
	takeover := ler.HolderIdentity == me && prev != me
	// A primary restarted within its lease finds the Lease still its own:
	// its term starts from the annotations too, not from nothing.
	resume := ler.HolderIdentity == me && prev == me && !l.e.termStarted()
	if takeover {
		if err := l.e.eligible(lease); err != nil {
			l.e.setBlocked(err.Error())
			return err
		}
	}
	if resume {
		if pos, acked := l.e.cfg.Position(), annotationUint(lease.Annotations, AnnotationAckedPosition); pos < acked {
			err := &NotEligibleError{Reason: fmt.Sprintf("%s holds position %d but acknowledged %d as primary before its restart: its copy is behind (was its data lost?)", me, pos, acked)}
			l.e.setBlocked(err.Error())
			return err
		}
	}
	lease.Spec = resourcelock.LeaderElectionRecordToLeaseSpec(&ler)
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	if takeover || resume {
		l.e.beginTerm(lease.Annotations)
		delete(lease.Annotations, AnnotationPromote)
	}
	if ler.HolderIdentity == me {
		l.e.writeAnnotations(lease.Annotations)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	start := time.Now()
	got, err := l.e.leases.Update(ctx, lease, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	l.lease = got
	if ler.HolderIdentity == me {
		l.e.renewed(start)
		if takeover && prev != "" {
			l.e.metrics.failovers.Inc()
			l.e.log.Warn("took over as primary", "previous", prev)
		}
	}
	return nil
}

// writeSync records a new sync set on the Lease this member holds.
func (l *leaderLock) writeSync(ctx context.Context, ann map[string]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	lease, err := l.e.leases.Get(ctx, l.e.cfg.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if holder(lease) != l.e.cfg.ID {
		return fmt.Errorf("ha: the leader Lease is held by %q", holder(lease))
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	for k, v := range ann {
		lease.Annotations[k] = v
	}
	got, err := l.e.leases.Update(ctx, lease, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	l.lease = got
	return nil
}

func (l *leaderLock) RecordEvent(string) {}

func (l *leaderLock) Identity() string { return l.e.cfg.ID }

func (l *leaderLock) Describe() string { return l.e.cfg.Namespace + "/" + l.e.cfg.Name }

func holder(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// leaseValid reports whether l's holder may still be renewing: its last
// renewal is younger than its duration.
func leaseValid(l *coordinationv1.Lease, now time.Time) bool {
	if holder(l) == "" || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second).After(now)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func annotationUint(a map[string]string, key string) uint64 {
	n, _ := strconv.ParseUint(a[key], 10, 64)
	return n
}
