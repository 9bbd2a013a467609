package ha_test

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fjordhq/fjord/ha"
	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/testenv"
)

// fjordGroup is three real `fjord serve --ha` processes on loopback
// sharing one host key, one group key, one admin key and one leader Lease
// on the test API server.
type fjordGroup struct {
	t       *testing.T
	ns      string
	kube    string
	hostKey string
	haKey   string
	members map[string]*fjordtest.Server
	sync    int
}

// Short leases keep failover tests fast: a primary is replaced within
// about 2 s.
const (
	testLease  = "2s"
	testRenew  = "1500ms"
	testRetry  = "250ms"
	leaseGrace = 2*time.Second + 5*time.Second
)

func newFjordGroup(t *testing.T, syncReplicas int, ids ...string) *fjordGroup {
	env := testenv.Shared(t)
	g := &fjordGroup{t: t, ns: env.Namespace(t), kube: env.Kubeconfig(), members: map[string]*fjordtest.Server{}, sync: syncReplicas}
	dir := t.TempDir()
	var err error
	if g.hostKey, err = fjordtest.WriteKey(filepath.Join(dir, "host_key")); err != nil {
		t.Fatal(err)
	}
	if g.haKey, err = fjordtest.WriteKey(filepath.Join(dir, "ha_key")); err != nil {
		t.Fatal(err)
	}
	var first *fjordtest.Server
	for _, id := range ids {
		s := fjordtest.New(t)
		if first == nil {
			first = s
		} else {
			// One admin for the group: the primary registers it.
			s.Key = first.Key
		}
		g.members[id] = s
	}
	return g
}

func (g *fjordGroup) start(id string) {
	g.t.Helper()
	s := g.members[id]
	err := s.Start("--host-key", g.hostKey, "--kubeconfig", g.kube,
		"--ha", g.ns+"/fjord", "--replica-id", id, "--advertise", s.SSHAddr, "--ha-key", g.haKey,
		"--lease-duration", testLease, "--renew-deadline", testRenew, "--retry-period", testRetry,
		"--sync-replicas", fmt.Sprint(g.sync), "--sync-timeout", "3s")
	if err != nil {
		g.t.Fatal(err)
	}
}

func (g *fjordGroup) status(id string) (ha.Status, error) {
	var st ha.Status
	out, err := g.members[id].Fjord("replicas", "-o", "json")
	if err != nil {
		return st, fmt.Errorf("fjord replicas on %s: %v: %s", id, err, out)
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// waitPrimary waits until member asked reports a primary other than
// "not", and returns it.
func (g *fjordGroup) waitPrimary(asked, not string, within time.Duration) string {
	g.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		st, err := g.status(asked)
		if err == nil && st.Primary != "" && st.Primary != not {
			return st.Primary
		}
		last = fmt.Sprintf("%+v %v", st, err)
		time.Sleep(100 * time.Millisecond)
	}
	g.t.Fatalf("no primary (other than %q) as %s sees it within %s: %s", not, asked, within, last)
	return ""
}

// clone makes a work tree of repo from member id with one commit staged
// for pushing.
func (g *fjordGroup) clone(id, repo string) string {
	g.t.Helper()
	s := g.members[id]
	dir := filepath.Join(g.t.TempDir(), "work")
	ctx := g.t.Context()
	if out, err := s.Git(ctx, "", "clone", s.URL(repo), dir); err != nil {
		g.t.Fatalf("clone: %v\n%s", err, out)
	}
	return dir
}

func commit(t *testing.T, s *fjordtest.Server, dir, msg string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte(msg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "f"}, {"commit", "-qm", msg}} {
		if out, err := s.Git(t.Context(), dir, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// push pushes HEAD of dir to main on member id.
func (g *fjordGroup) push(ctx context.Context, id, dir, repo string) (string, error) {
	s := g.members[id]
	return s.Git(ctx, dir, "push", s.URL(repo), "HEAD:refs/heads/main")
}

func readyz(t *testing.T, s *fjordtest.Server) string {
	resp, err := http.Get("http://" + s.HTTPAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestGroupRolesAndReadOnly: three members elect one primary, all answer
// `fjord replicas`, a follower refuses an admin write naming the primary,
// and with --sync-replicas 1 and both followers down a push is refused,
// not acknowledged, and the group says it is read-only.
func TestGroupRolesAndReadOnly(t *testing.T) {
	g := newFjordGroup(t, 1, "a", "b", "c")
	g.start("a")
	if p := g.waitPrimary("a", "", leaseGrace); p != "a" {
		t.Fatalf("the first member up is not primary: %s", p)
	}
	g.start("b")
	g.start("c")
	for _, id := range []string{"b", "c"} {
		st, err := g.status(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Primary != "a" || len(st.Members) != 3 {
			t.Fatalf("%s sees %+v; want primary a of 3 members", id, st)
		}
		if out, err := g.members[id].Fjord("repo", "create", "nope"); err == nil || !strings.Contains(out, g.members["a"].SSHAddr) {
			t.Fatalf("an admin write on %s: err %v, %q; want a refusal naming the primary's address %s", id, err, out, g.members["a"].SSHAddr)
		}
	}
	if !strings.Contains(readyz(t, g.members["b"]), "role: replica") {
		t.Fatalf("b's /readyz: %q", readyz(t, g.members["b"]))
	}

	a := g.members["a"]
	if out, err := a.Fjord("repo", "create", "demo"); err != nil {
		t.Fatalf("repo create on the primary: %v %s", err, out)
	}
	dir := g.clone("a", "demo")
	commit(t, a, dir, "one")
	g.members["b"].Stop()
	g.members["c"].Stop()
	out, err := g.push(t.Context(), "a", dir, "demo")
	if err == nil || !strings.Contains(out, "not acknowledged") {
		t.Fatalf("push with both followers down: err %v\n%s\nwant a refusal saying it was not acknowledged", err, out)
	}
	st, err := g.status("a")
	if err != nil {
		t.Fatal(err)
	}
	if !st.ReadOnly || !strings.Contains(st.Reason, "read-only") {
		t.Fatalf("status with both followers down: %+v; want read-only and why", st)
	}
	if r := readyz(t, a); !strings.Contains(r, "read-only") {
		t.Fatalf("a's /readyz does not say it is read-only: %q", r)
	}
	if out, err := a.Fjord("replicas"); err != nil || !strings.Contains(out, "READ-ONLY") {
		t.Fatalf("fjord replicas: %v\n%s", err, out)
	}
}

// TestGroupFencing stops the primary's renewals with SIGSTOP: another
// member takes over, and the old primary, continued, accepts no push.
func TestGroupFencing(t *testing.T) {
	g := newFjordGroup(t, 0, "a", "b", "c")
	g.start("a")
	g.waitPrimary("a", "", leaseGrace)
	g.start("b")
	g.start("c")
	a := g.members["a"]
	if out, err := a.Fjord("repo", "create", "demo"); err != nil {
		t.Fatalf("repo create: %v %s", err, out)
	}
	dir := g.clone("a", "demo")
	commit(t, a, dir, "one")
	if out, err := g.push(t.Context(), "a", dir, "demo"); err != nil {
		t.Fatalf("push to the primary: %v\n%s", err, out)
	}

	if err := syscall.Kill(a.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	next := g.waitPrimary("b", "a", leaseGrace)
	if err := syscall.Kill(a.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	commit(t, a, dir, "two")
	out, err := g.push(t.Context(), "a", dir, "demo")
	if err == nil {
		t.Fatalf("the fenced primary accepted a push after %s took over:\n%s", next, out)
	}
	if !strings.Contains(out, "read-only") {
		t.Fatalf("the fenced primary's refusal does not say why: %s", out)
	}
	// It stepped down for good in this process: a replica of next.
	deadline := time.Now().Add(leaseGrace)
	for {
		st, err := g.status("a")
		if err == nil && st.Primary == next {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a does not see %s as primary: %+v %v", next, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
