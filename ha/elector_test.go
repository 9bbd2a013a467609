package ha_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fjordhq/fjord/ha"
	"github.com/fjordhq/fjord/internal/testenv"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stream stands in for the primary's change stream: the test sets what
// each follower acked. It is the one part not real here; the end-to-end
// tests in cmd/fjord run the real one.
type stream struct {
	mu sync.Mutex
	fs map[string]ha.Follower
}

func (s *stream) ack(id string, pos uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fs[id] = ha.Follower{ID: id, Connected: true, Acked: pos, LastContact: time.Now()}
}

func (s *stream) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.fs, id)
}

func (s *stream) touch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.fs {
		f.LastContact = time.Now()
		s.fs[id] = f
	}
}

func (s *stream) Followers() []ha.Follower {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ha.Follower
	for _, f := range s.fs {
		out = append(out, f)
	}
	return out
}

func (s *stream) WaitAcked(ctx context.Context, pos uint64, n int) error {
	for {
		got := 0
		for _, f := range s.Followers() {
			if f.Acked >= pos {
				got++
			}
		}
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

type member struct {
	id     string
	pos    atomic.Uint64
	e      *ha.Elector
	cancel context.CancelFunc
	done   chan struct{}
	follow atomic.Value // ha.Primary last followed
}

type group struct {
	t      *testing.T
	rest   *rest.Config
	ns     string
	stream *stream
}

func newGroup(t *testing.T) *group {
	env := testenv.Shared(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	g := &group{t: t, rest: cfg, ns: env.Namespace(t), stream: &stream{fs: map[string]ha.Follower{}}}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := t.Context()
	if _, err := cs.CoreV1().ServiceAccounts(g.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "fjord-" + id},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "fjord", Image: "fjord"}}},
		}
		if _, err := cs.CoreV1().Pods(g.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for ctx.Err() == nil {
			g.stream.touch()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return g
}

func (g *group) start(id string, pos uint64) *member {
	m := &member{id: id, done: make(chan struct{})}
	m.pos.Store(pos)
	e, err := ha.New(ha.Config{
		REST: g.rest, Namespace: g.ns, Name: "fjord", ID: id, Advertise: id + ".fjord:2222",
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond,
		SyncReplicas: 1, AckTimeout: 300 * time.Millisecond,
		Position:    m.pos.Load,
		Replication: g.stream,
		PodName:     "fjord-" + id,
		OnFollow:    func(ctx context.Context, p ha.Primary) { m.follow.Store(p); <-ctx.Done() },
		Logger:      slog.New(slog.NewTextHandler(testWriter{g.t}, nil)).With("member", id),
	})
	if err != nil {
		g.t.Fatal(err)
	}
	m.e = e
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { defer close(m.done); e.Run(ctx) }()
	g.t.Cleanup(m.stop)
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (m *member) stop() {
	m.cancel()
	<-m.done
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func (g *group) podRole(name string) string {
	cs := kubernetes.NewForConfigOrDie(g.rest)
	p, err := cs.CoreV1().Pods(g.ns).Get(g.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		g.t.Fatal(err)
	}
	return p.Labels[ha.LabelRole]
}

// TestElection runs three members on the real API server: one is elected,
// labels its Pod, and the others follow it and refuse writes naming it; a
// push needs the synchronous follower's ack; when the primary goes, only
// the synchronous follower may take over, and promote --force is the way
// out when it is gone too.
func TestElection(t *testing.T) {
	g := newGroup(t)
	a := g.start("a", 5)
	eventually(t, "a becomes primary", func() error { return a.e.Writable() })
	b := g.start("b", 5)
	c := g.start("c", 5)
	for _, m := range []*member{b, c} {
		eventually(t, m.id+" follows a", func() error {
			if p, _ := m.follow.Load().(ha.Primary); p.ID != "a" || p.Advertise != "a.fjord:2222" {
				return errors.New("not following a yet")
			}
			return nil
		})
		err := m.e.Writable()
		if !errors.Is(err, ha.ErrReadOnly) || !strings.Contains(err.Error(), "a.fjord:2222") {
			t.Fatalf("%s: a write is refused with the primary's address; got %v", m.id, err)
		}
	}
	eventually(t, "pods labelled", func() error {
		for pod, want := range map[string]string{"fjord-a": "primary", "fjord-b": "replica", "fjord-c": "replica"} {
			if got := g.podRole(pod); got != want {
				return errors.New(pod + " is labelled " + got + ", want " + want)
			}
		}
		return nil
	})

	// No follower on the stream: a push is refused, the group says so.
	ctx := t.Context()
	a.pos.Store(6)
	if err := a.e.WaitDurable(ctx, 6); !errors.Is(err, ha.ErrNotDurable) {
		t.Fatalf("with no synchronous follower, WaitDurable = %v, want ErrNotDurable", err)
	}
	st, err := c.e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Primary != "a" || !st.ReadOnly || len(st.Members) != 3 {
		t.Fatalf("status from c: %+v; want primary a, read-only, 3 members", st)
	}

	// b connects and catches up: it joins the sync set; c, behind,
	// does not.
	g.stream.ack("c", 5)
	g.stream.ack("b", 6)
	eventually(t, "b becomes the sync follower", func() error {
		st, err := a.e.Status(ctx)
		if err != nil {
			return err
		}
		if strings.Join(st.SyncFollowers, ",") != "b" || st.ReadOnly {
			return errors.New("sync followers " + strings.Join(st.SyncFollowers, ",") + ", reason " + st.Reason)
		}
		return nil
	})
	if err := a.e.WaitDurable(ctx, 6); err != nil {
		t.Fatalf("b acked 6: %v", err)
	}
	a.pos.Store(7)
	g.stream.ack("c", 7) // the async follower acking does not count
	if err := a.e.WaitDurable(ctx, 7); !errors.Is(err, ha.ErrNotDurable) {
		t.Fatalf("only c acked 7: WaitDurable = %v, want ErrNotDurable", err)
	}
	g.stream.ack("b", 7)
	b.pos.Store(7)
	c.pos.Store(7)
	if err := a.e.WaitDurable(ctx, 7); err != nil {
		t.Fatal(err)
	}

	// b and then a go away: c holds position 7 too, but it is not named
	// in the Lease, so it must not take over.
	b.stop()
	g.stream.drop("b")
	a.stop()
	eventually(t, "c explains why it does not take over", func() error {
		st, err := c.e.Status(ctx)
		if err != nil {
			return err
		}
		if st.Primary != "" || !st.ReadOnly || !strings.Contains(st.Reason, "not a synchronous replica") {
			return errors.New("status: primary " + st.Primary + ", reason " + st.Reason)
		}
		return nil
	})
	// That reason is the Lock's refusal of c's attempt (the status
	// reports it only after one): c is not writable and the leader Lease
	// does not name it.
	eventually(t, "c's writes refused with the Lock's reason", func() error {
		if err := c.e.Writable(); err == nil || !strings.Contains(err.Error(), "not a synchronous replica") {
			return fmt.Errorf("Writable = %v", err)
		}
		return nil
	})
	l, err := kubernetes.NewForConfigOrDie(g.rest).CoordinationV1().Leases(g.ns).Get(ctx, "fjord", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := l.Spec.HolderIdentity; h != nil && *h == "c" {
		t.Fatal("c, not a synchronous replica, took the leader Lease")
	}

	// b comes back and takes over: it holds every acknowledged change.
	// c is off the stream, so it does not join b's sync set.
	g.stream.drop("c")
	b = g.start("b", 7)
	eventually(t, "b takes over", func() error { return b.e.Writable() })
	eventually(t, "c follows b", func() error {
		if p, _ := c.follow.Load().(ha.Primary); p.ID != "b" {
			return errors.New("not following b yet")
		}
		return nil
	})

	// b goes too, before c caught up with it: only promote --force lets
	// c take over.
	b.stop()
	if err := c.e.Promote(ctx, "c", false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("promote without --force: %v", err)
	}
	eventually(t, "b's Lease expires", func() error { return c.e.Promote(ctx, "c", true) })
	eventually(t, "c takes over once promoted", func() error { return c.e.Writable() })
	eventually(t, "c's pod labelled primary", func() error {
		if got := g.podRole("fjord-c"); got != "primary" {
			return errors.New("fjord-c is labelled " + got)
		}
		return nil
	})
}

func TestConfigCheck(t *testing.T) {
	base := func() ha.Config {
		return ha.Config{Namespace: "fjord", Name: "fjord", ID: "fjord-0", Advertise: "fjord-0.fjord:2222", Position: func() uint64 { return 0 }}
	}
	for _, tc := range []struct {
		name string
		mod  func(*ha.Config)
		want string
	}{
		{"ok", func(*ha.Config) {}, ""},
		{"no lease", func(c *ha.Config) { c.Name = "" }, "NAMESPACE/NAME"},
		{"bad id", func(c *ha.Config) { c.ID = "Fjord_0" }, "--replica-id"},
		{"no advertise", func(c *ha.Config) { c.Advertise = "" }, "--advertise"},
		{"renew not shorter", func(c *ha.Config) { c.RenewDeadline = 15 * time.Second }, "shorter than --lease-duration"},
		{"fractional lease", func(c *ha.Config) { c.LeaseDuration = 1500 * time.Millisecond }, "whole seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Check()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestSyncUnknownGroupSize: with --sync-replicas -1, a primary that cannot
// list its group's member Leases (RBAC without list) does not know it is
// alone, so it acknowledges no push; once the List works and shows it
// alone, it acknowledges at once.
func TestSyncUnknownGroupSize(t *testing.T) {
	env := testenv.Shared(t)
	admin, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(admin)
	user := "fjord-nolist-" + ns[len(ns)-6:]
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "fjord"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			Verbs: []string{"get", "create", "update"}}},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "fjord"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "fjord"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A former primary's expired Lease that promised no synchronous copy:
	// taking it over needs no List.
	old, secs, renewed := "old", int32(1), metav1.NewMicroTime(time.Now().Add(-time.Minute))
	if _, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "fjord", Annotations: map[string]string{ha.AnnotationSyncReplicas: "0", ha.AnnotationAckedPosition: "0"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &old, LeaseDurationSeconds: &secs, AcquireTime: &renewed, RenewTime: &renewed},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	limited := rest.CopyConfig(admin)
	limited.Impersonate.UserName = user
	var pos atomic.Uint64
	pos.Store(5)
	e, err := ha.New(ha.Config{
		REST: limited, Namespace: ns, Name: "fjord", ID: "a", Advertise: "a.fjord:2222",
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond,
		SyncReplicas: -1, AckTimeout: 300 * time.Millisecond,
		Position:    pos.Load,
		Replication: &stream{fs: map[string]ha.Follower{}},
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "a becomes primary", e.Writable)
	if err := e.WaitDurable(ctx, 5); !errors.Is(err, ha.ErrNotDurable) {
		t.Fatalf("group size unknown (List forbidden): WaitDurable = %v, want ErrNotDurable", err)
	}
	eventually(t, "SyncHealth names the failing List", func() error {
		if why := e.SyncHealth(); !strings.Contains(why, "listing the member Leases fails") || !strings.Contains(why, "forbidden") {
			return fmt.Errorf("SyncHealth = %q", why)
		}
		return nil
	})

	role.Rules[0].Verbs = append(role.Rules[0].Verbs, "list")
	if _, err := cs.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a, seen alone, acknowledges", func() error { return e.WaitDurable(ctx, 5) })
}
