package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
)

// Defaults of Config's durations.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	DefaultAckTimeout    = 5 * time.Second
)

// Role is what a member does in the group.
type Role string

// The roles a member reports.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// LabelRole is the Pod label the member sets to its role, which the
// fjord-rw Service selects on.
const LabelRole = "fjord.dev/role"

// LabelGroup labels every member Lease with the group's name.
const LabelGroup = "fjord.dev/group"

// Replication is the primary's side of the change stream, as the elector
// needs it: which followers acked what, and a way to wait for acks.
type Replication interface {
	// WaitAcked returns when n followers acked position pos, or with an
	// error when ctx ends first.
	WaitAcked(ctx context.Context, pos uint64, n int) error
	// Followers reports the followers connected now or lately.
	Followers() []Follower
}

// Follower is one follower as the primary's stream sees it.
type Follower struct {
	ID string `json:"id"`
	// Connected says its stream is open now: only a connected follower
	// is waited for or joins the sync set.
	Connected   bool          `json:"connected"`
	Acked       uint64        `json:"acked"`
	Lag         time.Duration `json:"lag"`
	LastContact time.Time     `json:"lastContact"`
}

// Primary names the member holding the leader Lease.
type Primary struct {
	ID        string
	Advertise string
}

// Config configures an Elector. Client, Namespace, Name, ID, Advertise and
// Position are required.
type Config struct {
	// REST reaches the API server that holds the Leases (and the Pod).
	REST *rest.Config
	// Namespace and Name name the leader Lease; member Leases are
	// NAME-ID in the same namespace.
	Namespace, Name string
	// ID is this member's name in the group (lowercase letters, digits,
	// '-'), e.g. the Pod name.
	ID string
	// Advertise is the SSH address other members reach this one on.
	Advertise string
	// LeaseDuration, RenewDeadline and RetryPeriod are leaderelection's;
	// zero means 15 s, 10 s, 2 s. RenewDeadline must be shorter than
	// LeaseDuration: a primary stops taking writes after it, before any
	// other member may take the Lease.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// SyncReplicas is how many followers hold a change before a push is
	// acknowledged. Negative means 1 when the group has two or more
	// members, else 0.
	SyncReplicas int
	// AckTimeout bounds how long a push waits for its synchronous
	// followers before it is refused. Zero means 5 s.
	AckTimeout time.Duration
	// Position is this member's replication position.
	Position func() uint64
	// Replication is the primary's change stream; nil means no member
	// ever acks (only SyncReplicas 0 then takes writes).
	Replication Replication
	// PodNamespace and PodName, when set, name this member's Pod, which
	// is labelled fjord.dev/role=primary or replica.
	PodNamespace, PodName string
	// OnPrimary runs while this member is primary: its ctx ends when the
	// Lease is lost, and it must return soon after. Writes are refused
	// from the moment renewal fails, before ctx ends.
	OnPrimary func(ctx context.Context)
	// OnFollow runs while this member follows p: its ctx ends when the
	// primary changes or this member is elected.
	OnFollow func(ctx context.Context, p Primary)
	// RefuseWrites, when set, says whether this member's own store may
	// take writes: it is called with nil just before the member serves
	// writes as primary, and with the reason when it stops being primary
	// or starts following one. A follower's store then takes only its
	// primary's changes, so its change log stays a copy of the primary's
	// (a local write would diverge it and force a full copy).
	RefuseWrites func(why error)
	// Logger receives the elector's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

var idPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Check validates c and fills in the defaults.
func (c *Config) Check() error {
	if c.Namespace == "" || c.Name == "" {
		return errors.New("--ha: want NAMESPACE/NAME of the leader Lease, e.g. --ha fjord/fjord")
	}
	if !idPattern.MatchString(c.Name) || len(c.Name) > 200 {
		return fmt.Errorf("--ha %s/%s: the Lease name must be lowercase letters, digits and '-'", c.Namespace, c.Name)
	}
	if !idPattern.MatchString(c.ID) || len(c.ID) > 50 {
		return fmt.Errorf("--replica-id %q: want lowercase letters, digits and '-' (e.g. the Pod name, fjord-0)", c.ID)
	}
	if c.Advertise == "" {
		return errors.New("--advertise: want the HOST:PORT other replicas reach this one's SSH on, e.g. fjord-0.fjord:2222")
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.LeaseDuration < time.Second || c.LeaseDuration%time.Second != 0 {
		return fmt.Errorf("--lease-duration %s: want whole seconds, at least 1s (a Lease counts seconds)", c.LeaseDuration)
	}
	if c.RenewDeadline >= c.LeaseDuration {
		return fmt.Errorf("--renew-deadline %s must be shorter than --lease-duration %s: a primary must stop taking pushes before another may take over", c.RenewDeadline, c.LeaseDuration)
	}
	if float64(c.RenewDeadline) <= leaderelection.JitterFactor*float64(c.RetryPeriod) {
		return fmt.Errorf("--renew-deadline %s must be longer than %.1f × --retry-period %s", c.RenewDeadline, leaderelection.JitterFactor, c.RetryPeriod)
	}
	if c.Position == nil {
		return errors.New("ha: Config.Position is required")
	}
	return nil
}

// Elector runs one member of a group. Create it with New, run it with Run.
type Elector struct {
	cfg     Config
	log     *slog.Logger
	leases  coordinationv1client.LeaseInterface
	pods    corev1client.PodInterface // nil outside a Pod
	lock    *leaderLock
	metrics *metrics

	mu          sync.Mutex
	primary     bool      // this member holds the Lease
	renewedAt   time.Time // start of the last successful renewal
	leader      Primary   // the primary last observed, when valid
	leaderLease *coordinationv1.Lease
	observedAt  time.Time // when leaderLease last changed
	blocked     string    // why this member could not take over
	groupSize   int       // members by the last successful List; 0: unknown
	podRole     Role      // the role label last set on the Pod
	listErr     string    // the last member-Lease List's error, "" after a success
	serving     bool      // primary, and no longer following: takes writes

	termMu sync.Mutex // held by lead: one term's services at a time

	followMu   sync.Mutex
	following  Primary
	stopFollow func()

	sync syncState
}

// New checks cfg and returns an Elector that has touched nothing yet.
func New(cfg Config) (*Elector, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.REST == nil {
		return nil, errors.New("--ha needs a cluster for its Leases: give --kubeconfig FILE, set KUBECONFIG, or run in a Pod")
	}
	// A member makes a handful of requests per retry period; client-go's
	// default of 5 per second would delay renewals behind status reads.
	rc := rest.CopyConfig(cfg.REST)
	rc.QPS, rc.Burst = 50, 100
	cfg.REST = rc
	coord, err := coordinationv1client.NewForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("ha: lease client: %w", err)
	}
	e := &Elector{cfg: cfg, log: cfg.Logger, leases: coord.Leases(cfg.Namespace)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if cfg.PodName != "" {
		core, err := corev1client.NewForConfig(cfg.REST)
		if err != nil {
			return nil, fmt.Errorf("ha: pod client: %w", err)
		}
		ns := cfg.PodNamespace
		if ns == "" {
			ns = cfg.Namespace
		}
		e.pods = core.Pods(ns)
	}
	e.lock = &leaderLock{e: e}
	e.metrics = newMetrics(cfg.Registerer, e)
	return e, nil
}

// ID is this member's id.
func (e *Elector) ID() string { return e.cfg.ID }

// Run keeps the member Lease, stands for election and follows the primary
// until ctx ends. A member that stepped down from primary follows the new
// one and stands again at once: it may take the Lease back when it is
// eligible (it is in the sync set and holds every acknowledged change),
// and its primary services then run again for the new term.
func (e *Elector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { e.keepMember(ctx) })
	wg.Go(func() { e.observe(ctx) })
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            e.lock,
			LeaseDuration:   e.cfg.LeaseDuration,
			RenewDeadline:   e.cfg.RenewDeadline,
			RetryPeriod:     e.cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            e.cfg.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: e.lead,
				OnStoppedLeading: e.stopLeading,
			},
		})
		if err != nil {
			return fmt.Errorf("ha: leader election on Lease %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err)
		}
		le.Run(ctx)
		if ctx.Err() == nil {
			e.log.Info("standing for election again")
		}
	}
	return nil
}

// lead runs while this member holds the Lease.
func (e *Elector) lead(ctx context.Context) {
	// leaderelection starts lead in a goroutine and does not wait for it:
	// a term's services must have stopped before the next term's start
	// (a member that steps down stands again at once), and a term lost
	// before its goroutine ran starts nothing.
	e.termMu.Lock()
	defer e.termMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	// The stream from the previous primary stops before this member
	// takes its first write.
	e.stopFollowing()
	e.refuseWrites(nil)
	e.mu.Lock()
	e.serving = e.primary
	e.mu.Unlock()
	e.log.Info("elected primary", "lease", e.lock.Describe(), "position", e.cfg.Position())
	e.setPodRole(ctx, RolePrimary)
	var wg sync.WaitGroup
	wg.Go(func() { e.maintainSync(ctx) })
	if e.cfg.OnPrimary != nil {
		e.cfg.OnPrimary(ctx)
	}
	wg.Wait()
}

// stopLeading runs when leaderelection's Run returns: after a lost renewal
// or at shutdown. Writes stop at once.
func (e *Elector) stopLeading() {
	e.mu.Lock()
	was := e.primary
	e.primary, e.serving = false, false
	e.mu.Unlock()
	if was {
		e.endTerm()
		e.refuseWrites(fmt.Errorf("%s is no longer the primary (it lost its Lease)", e.cfg.ID))
		e.log.Warn("no longer primary: pushes and admin writes are refused from now on")
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RetryPeriod)
		e.setPodRole(ctx, RoleReplica)
		cancel()
	}
}

// renewed records a successful write of the Lease by this member, begun
// at start.
func (e *Elector) renewed(start time.Time) {
	e.mu.Lock()
	e.primary = true
	e.renewedAt = start
	e.blocked = ""
	e.mu.Unlock()
}

// ErrReadOnly wraps every refusal of a write on a member that is not a
// fenced-in primary.
var ErrReadOnly = errors.New("read-only replica")

// Writable returns nil when this member is the primary and its last
// renewal is younger than the renew deadline; else an error whose text
// names the primary to write to (one line, shown to clients as is).
func (e *Elector) Writable() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.serving && time.Since(e.renewedAt) < e.cfg.RenewDeadline {
		return nil
	}
	if e.primary && !e.serving {
		return fmt.Errorf("%w: %s was just elected primary and is stopping its replication stream; retry in a moment", ErrReadOnly, e.cfg.ID)
	}
	if e.primary {
		return fmt.Errorf("%w: %s could not renew its primary Lease for %s and is stepping down; retry in a few seconds", ErrReadOnly, e.cfg.ID, time.Since(e.renewedAt).Round(time.Second))
	}
	if e.leader.ID != "" && e.leader.ID != e.cfg.ID {
		return fmt.Errorf("%w: %s is a replica; push to the primary %s at %s (or through the fjord-rw Service)", ErrReadOnly, e.cfg.ID, e.leader.ID, e.leader.Advertise)
	}
	reason := "no member holds the primary Lease"
	if e.blocked != "" {
		reason = e.blocked
	}
	return fmt.Errorf("%w: %s is a replica and the group has no primary (%s)", ErrReadOnly, e.cfg.ID, reason)
}

// observeLeader notes the leader Lease as last read.
func (e *Elector) observeLeader(l *coordinationv1.Lease) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leaderLease == nil || e.leaderLease.ResourceVersion != l.ResourceVersion {
		e.observedAt = time.Now()
	}
	e.leaderLease = l.DeepCopy()
	if leaseValid(l, time.Now()) || time.Since(e.observedAt) < e.cfg.LeaseDuration && holder(l) != "" {
		e.leader = Primary{ID: holder(l), Advertise: l.Annotations[AnnotationPrimaryAdvertise]}
		if e.leader.ID != e.cfg.ID {
			e.blocked = ""
		}
	} else {
		e.leader = Primary{}
	}
}

// observe reads the leader Lease every retry period and runs OnFollow for
// the primary while this member is not it.
func (e *Elector) observe(ctx context.Context) {
	defer e.stopFollowing()
	tick := time.NewTicker(e.cfg.RetryPeriod)
	defer tick.Stop()
	for {
		if l, err := e.leases.Get(ctx, e.cfg.Name, getOpts); err == nil {
			e.observeLeader(l)
		} else if ctx.Err() == nil && !isNotFound(err) {
			e.log.Warn("read the leader Lease", "lease", e.lock.Describe(), "err", err)
		}
		e.follow(ctx)
		if e.pods != nil {
			role := RoleReplica
			if e.isPrimary() {
				role = RolePrimary
			}
			e.setPodRole(ctx, role)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (e *Elector) isPrimary() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.primary
}

// follow starts OnFollow for the primary last observed, stopping the one
// for a previous primary; it follows no one while this member is primary.
func (e *Elector) follow(ctx context.Context) {
	e.followMu.Lock()
	defer e.followMu.Unlock()
	e.mu.Lock()
	want := e.leader
	if e.primary || want.ID == e.cfg.ID {
		want = Primary{}
	}
	e.mu.Unlock()
	if want == e.following {
		return
	}
	// leaderelection reports a lost Lease before the term's services
	// (lead) have returned: follow only once they have, on a later tick.
	if !e.termMu.TryLock() {
		return
	}
	e.termMu.Unlock()
	e.stopFollowingLocked()
	e.following = want
	if want.ID == "" || e.cfg.OnFollow == nil {
		return
	}
	e.refuseWrites(fmt.Errorf("this replica follows %s at %s", want.ID, want.Advertise))
	e.log.Info("following the primary", "primary", want.ID, "address", want.Advertise)
	e.setPodRole(ctx, RoleReplica)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.cfg.OnFollow(fctx, want) }()
	e.stopFollow = func() { cancel(); <-done }
}

// refuseWrites passes why to Config.RefuseWrites, if set.
func (e *Elector) refuseWrites(why error) {
	if e.cfg.RefuseWrites != nil {
		e.cfg.RefuseWrites(why)
	}
}

func (e *Elector) stopFollowing() {
	e.followMu.Lock()
	defer e.followMu.Unlock()
	e.stopFollowingLocked()
}

func (e *Elector) stopFollowingLocked() {
	if e.stopFollow != nil {
		e.stopFollow()
		e.stopFollow = nil
	}
	e.following = Primary{}
}

// eligible says whether this member may take over the leader Lease l
// from its previous holder.
func (e *Elector) eligible(l *coordinationv1.Lease) error {
	a := l.Annotations
	if a[AnnotationPromote] == e.cfg.ID {
		e.log.Warn("taking over by `fjord replicas promote --force`: changes the last primary acknowledged may be lost")
		return nil
	}
	if n, _ := strconv.Atoi(a[AnnotationSyncReplicas]); n == 0 {
		return nil // the group promised no synchronous copy
	}
	prev := holder(l)
	if prev == "" {
		prev = "the last primary"
	}
	syncs := splitList(a[AnnotationSyncFollowers])
	if len(syncs) == 0 {
		return &NotEligibleError{Reason: fmt.Sprintf("%s had no synchronous replica in sync when it stopped, so no member is known to hold every acknowledged push; run `fjord replicas promote ID --force` to accept that loss", prev)}
	}
	if !slices.Contains(syncs, e.cfg.ID) {
		return &NotEligibleError{Reason: fmt.Sprintf("%s is not a synchronous replica of %s (those are %s): waiting for one of them to take over; `fjord replicas promote %s --force` accepts losing acknowledged pushes", e.cfg.ID, prev, strings.Join(syncs, ", "), e.cfg.ID)}
	}
	if pos, acked := e.cfg.Position(), annotationUint(a, AnnotationAckedPosition); pos < acked {
		return &NotEligibleError{Reason: fmt.Sprintf("%s holds position %d but %s acknowledged %d: its copy is behind (was its data lost?)", e.cfg.ID, pos, prev, acked)}
	}
	return nil
}

// mayFound says whether this member may create the group's leader Lease:
// no other member's Lease may report a higher position.
func (e *Elector) mayFound(ctx context.Context) error {
	members, err := e.members(ctx)
	if err != nil {
		return err
	}
	mine := e.cfg.Position()
	for _, m := range members {
		if m.ID != e.cfg.ID && m.Position > mine {
			return &NotEligibleError{Reason: fmt.Sprintf("the group has no leader Lease yet and member %s holds position %d, ahead of %s's %d: waiting for it", m.ID, m.Position, e.cfg.ID, mine)}
		}
	}
	return nil
}

// setBlocked records why this member could not take over, logging it
// when it changes.
func (e *Elector) setBlocked(reason string) {
	e.mu.Lock()
	changed := e.blocked != reason
	e.blocked = reason
	e.mu.Unlock()
	if changed {
		e.log.Warn("not taking over as primary", "reason", reason)
	}
}
