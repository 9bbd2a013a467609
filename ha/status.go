package ha

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MemberStatus is one member of the group as `fjord replicas` shows it.
type MemberStatus struct {
	ID        string `json:"id"`
	Role      Role   `json:"role"`
	Advertise string `json:"advertise"`
	Position  uint64 `json:"position"`
	// LagChanges is how many changes the member is behind the primary.
	LagChanges uint64 `json:"lagChanges"`
	// LagSeconds is how far behind the primary the member's last applied
	// change is, as the primary's stream measures it.
	LagSeconds float64 `json:"lagSeconds"`
	// LastContact is the primary's last word from the member (for the
	// primary itself, its last Lease renewal).
	LastContact time.Time `json:"lastContact,omitzero"`
	// Alive says the member renewed its own Lease within its duration.
	Alive bool `json:"alive"`
	// Sync says the member is one of the synchronous followers.
	Sync bool `json:"sync"`
}

// Status is the group as one member sees it.
type Status struct {
	Group         string         `json:"group"`
	Self          string         `json:"self"`
	Primary       string         `json:"primary,omitempty"`
	ReadOnly      bool           `json:"readOnly"`
	Reason        string         `json:"reason,omitempty"`
	SyncReplicas  int            `json:"syncReplicas"`
	SyncFollowers []string       `json:"syncFollowers"`
	AckedPosition uint64         `json:"ackedPosition"`
	Members       []MemberStatus `json:"members"`
}

// Status reads the member and leader Leases and reports the group.
func (e *Elector) Status(ctx context.Context) (Status, error) {
	st := Status{Group: e.cfg.Namespace + "/" + e.cfg.Name, Self: e.cfg.ID, SyncFollowers: []string{}}
	ms, err := e.members(ctx)
	if err != nil {
		return st, fmt.Errorf("list the member Leases: %w", err)
	}
	now := time.Now()
	leader, err := e.leases.Get(ctx, e.cfg.Name, getOpts)
	if err != nil && !isNotFound(err) {
		return st, fmt.Errorf("read the leader Lease: %w", err)
	}
	if err == nil {
		if leaseValid(leader, now) {
			st.Primary = holder(leader)
		}
		st.SyncFollowers = append(st.SyncFollowers, splitList(leader.Annotations[AnnotationSyncFollowers])...)
		st.SyncReplicas, _ = strconv.Atoi(leader.Annotations[AnnotationSyncReplicas])
		st.AckedPosition = annotationUint(leader.Annotations, AnnotationAckedPosition)
	}
	self := e.Writable() == nil
	if self {
		st.Primary = e.cfg.ID
		st.SyncReplicas = e.syncN()
		e.sync.mu.RLock()
		st.SyncFollowers = slices.Clone(e.sync.members)
		e.sync.mu.RUnlock()
		st.AckedPosition = e.sync.acked.Load()
	}

	// The followers as the primary's stream sees them: live on the
	// primary, else from the primary's member Lease.
	fs := map[string]Follower{}
	var primaryPos uint64
	for _, m := range ms {
		if m.ID == st.Primary {
			primaryPos = m.Position
			for _, f := range m.Followers {
				fs[f.ID] = f
			}
		}
	}
	if self {
		fs = e.followers()
		primaryPos = e.cfg.Position()
	}
	for _, m := range ms {
		if m.ID == e.cfg.ID {
			m.Position, m.Alive = e.cfg.Position(), true
		}
		ms := MemberStatus{ID: m.ID, Role: RoleReplica, Advertise: m.Advertise, Position: m.Position, Alive: m.Alive,
			Sync: slices.Contains(st.SyncFollowers, m.ID)}
		if m.ID == st.Primary {
			ms.Role, ms.LastContact = RolePrimary, m.RenewTime
		} else {
			if primaryPos > m.Position {
				ms.LagChanges = primaryPos - m.Position
			}
			if f, ok := fs[m.ID]; ok {
				ms.LagSeconds, ms.LastContact = f.Lag.Seconds(), f.LastContact
			}
		}
		st.Members = append(st.Members, ms)
	}
	slices.SortFunc(st.Members, func(a, b MemberStatus) int { return strings.Compare(a.ID, b.ID) })

	switch {
	case st.Primary == "":
		st.ReadOnly = true
		e.mu.Lock()
		st.Reason = e.blocked
		e.mu.Unlock()
		if st.Reason == "" {
			st.Reason = "no member holds the leader Lease " + st.Group
			if len(st.SyncFollowers) > 0 {
				st.Reason += "; only the synchronous replica(s) " + strings.Join(st.SyncFollowers, ", ") + " may take over"
			}
		}
	case self:
		st.Reason = e.SyncHealth()
	default:
		st.Reason = syncHealth(st.SyncReplicas, st.SyncFollowers, fs)
	}
	if st.Reason != "" && st.Primary != "" {
		st.ReadOnly = true
	}
	return st, nil
}

// Promote lets member id take the leader Lease although it may lack
// acknowledged changes: the escape hatch for a group whose synchronous
// replicas are gone. It refuses while a primary holds the Lease, and
// without force.
func (e *Elector) Promote(ctx context.Context, id string, force bool) error {
	if !force {
		return errors.New("promote may lose pushes that were acknowledged: only the synchronous replicas are known to hold them. Pass --force to accept that")
	}
	ms, err := e.members(ctx)
	if err != nil {
		return fmt.Errorf("list the member Leases: %w", err)
	}
	i := slices.IndexFunc(ms, func(m memberLease) bool { return m.ID == id })
	if i < 0 {
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		return fmt.Errorf("no member %q in group %s/%s (members: %s)", id, e.cfg.Namespace, e.cfg.Name, strings.Join(ids, ", "))
	}
	if !ms[i].Alive {
		return fmt.Errorf("member %q has not renewed its Lease for %s: start it first, it takes over once promoted", id, time.Since(ms[i].RenewTime).Round(time.Second))
	}
	for range 5 {
		l, err := e.leases.Get(ctx, e.cfg.Name, getOpts)
		if err != nil {
			return fmt.Errorf("read the leader Lease: %w", err)
		}
		if h := holder(l); leaseValid(l, time.Now()) && h != id {
			return fmt.Errorf("the primary %s holds the Lease (renewed %s ago): promote is for a group with no primary", h, time.Since(l.Spec.RenewTime.Time).Round(time.Second))
		}
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[AnnotationPromote] = id
		_, err = e.leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			e.log.Warn("member promoted by force; it takes the Lease at its next try", "member", id)
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("write the leader Lease: %w", err)
		}
	}
	return errors.New("the leader Lease kept changing; try again")
}
