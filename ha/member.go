package ha

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations of a member Lease.
const (
	AnnotationAdvertise = "fjord.dev/advertise"
	AnnotationPosition  = "fjord.dev/position"
	AnnotationRole      = "fjord.dev/role"
	// AnnotationFollowers is the primary's view of its followers (JSON
	// list of Follower), so that any member can report lag.
	AnnotationFollowers = "fjord.dev/followers"
)

var getOpts = metav1.GetOptions{}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// memberLease is one member as its Lease tells.
type memberLease struct {
	ID        string
	Advertise string
	Position  uint64
	Role      Role
	RenewTime time.Time
	Alive     bool // renewed within its lease duration
	Followers []Follower
}

func (e *Elector) memberLeaseName() string { return e.cfg.Name + "-" + e.cfg.ID }

// keepMember creates and renews this member's Lease every retry period
// with its address, position and role.
func (e *Elector) keepMember(ctx context.Context) {
	tick := time.NewTicker(e.cfg.RetryPeriod)
	defer tick.Stop()
	for {
		if err := e.renewMember(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("renew the member Lease", "lease", e.cfg.Namespace+"/"+e.memberLeaseName(), "err", err)
		}
		e.countMembers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// countMembers records the group's size from its member Leases. Until a
// List succeeds the size stays unknown, which counts as a group (pushes
// wait for a synchronous replica): a primary that cannot see its group
// must not acknowledge as if it were alone.
func (e *Elector) countMembers(ctx context.Context) {
	ms, err := e.members(ctx)
	e.mu.Lock()
	last := e.listErr
	e.listErr = ""
	if err != nil {
		e.listErr = err.Error()
	}
	e.mu.Unlock()
	if err != nil {
		// Logged when it starts or changes, not every retry period.
		if ctx.Err() == nil && err.Error() != last {
			e.log.Warn("list the group's member Leases (needs RBAC list on leases); until it works the group size is unknown and pushes wait for a synchronous replica",
				"namespace", e.cfg.Namespace, "group", e.cfg.Name, "err", err)
		}
		return
	}
	n := len(ms)
	if !slices.ContainsFunc(ms, func(m memberLease) bool { return m.ID == e.cfg.ID }) {
		n++ // this member's own Lease is not written yet
	}
	e.mu.Lock()
	e.groupSize = n
	e.mu.Unlock()
}

func (e *Elector) renewMember(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	secs := int32(e.cfg.LeaseDuration / time.Second)
	id := e.cfg.ID
	role := RoleReplica
	if e.isPrimary() {
		role = RolePrimary
	}
	ann := map[string]string{
		AnnotationAdvertise: e.cfg.Advertise,
		AnnotationPosition:  strconv.FormatUint(e.cfg.Position(), 10),
		AnnotationRole:      string(role),
	}
	if role == RolePrimary && e.cfg.Replication != nil {
		if b, err := json.Marshal(e.cfg.Replication.Followers()); err == nil {
			ann[AnnotationFollowers] = string(b)
		}
	}
	l, err := e.leases.Get(ctx, e.memberLeaseName(), getOpts)
	if isNotFound(err) {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:        e.memberLeaseName(),
				Namespace:   e.cfg.Namespace,
				Labels:      map[string]string{LabelGroup: e.cfg.Name},
				Annotations: ann,
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}
		_, err = e.leases.Create(ctx, l, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	delete(l.Annotations, AnnotationFollowers)
	for k, v := range ann {
		l.Annotations[k] = v
	}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &id, &secs, &now
	_, err = e.leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// members lists the group's member Leases.
func (e *Elector) members(ctx context.Context) ([]memberLease, error) {
	list, err := e.leases.List(ctx, metav1.ListOptions{LabelSelector: LabelGroup + "=" + e.cfg.Name})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]memberLease, 0, len(list.Items))
	for i := range list.Items {
		l := &list.Items[i]
		m := memberLease{
			ID:        holder(l),
			Advertise: l.Annotations[AnnotationAdvertise],
			Position:  annotationUint(l.Annotations, AnnotationPosition),
			Role:      Role(l.Annotations[AnnotationRole]),
			Alive:     leaseValid(l, now),
		}
		if l.Spec.RenewTime != nil {
			m.RenewTime = l.Spec.RenewTime.Time
		}
		if f := l.Annotations[AnnotationFollowers]; f != "" {
			_ = json.Unmarshal([]byte(f), &m.Followers)
		}
		out = append(out, m)
	}
	return out, nil
}

// setPodRole labels this member's Pod with its role, when it runs in one
// and the label differs from the last one set.
func (e *Elector) setPodRole(ctx context.Context, role Role) {
	if e.pods == nil {
		return
	}
	e.mu.Lock()
	same := e.podRole == role
	e.mu.Unlock()
	if same {
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{LabelRole: string(role)}}})
	if _, err := e.pods.Patch(ctx, e.cfg.PodName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if ctx.Err() == nil {
			e.log.Warn("label the pod with its role (the fjord-rw Service routes by it; tried again next period)", "pod", e.cfg.PodName, "role", role, "err", err)
		}
		return
	}
	e.mu.Lock()
	e.podRole = role
	e.mu.Unlock()
	e.log.Info("pod labelled", "pod", e.cfg.PodName, LabelRole, role)
}
