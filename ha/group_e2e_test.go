package ha_test

import (
	"context"

	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/testenv"
)

func newFjordGroup(t *testing.T, syncReplicas int, ids ...string) *fjordtest.Group {
	env := testenv.Shared(t)
	return fjordtest.NewGroup(t, env.Kubeconfig(), env.Namespace(t), syncReplicas, ids...)
}

// leaseGrace bounds a failover: the lease duration plus 5 s.
const leaseGrace = fjordtest.GroupLease + 5*time.Second

func start(t *testing.T, g *fjordtest.Group, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := g.Start(id); err != nil {
			t.Fatal(err)
		}
	}
}

func waitPrimary(t *testing.T, g *fjordtest.Group, asked, not string) string {
	t.Helper()
	p, err := g.WaitPrimary(asked, not, leaseGrace)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func status(t *testing.T, g *fjordtest.Group, id string) fjordtest.GroupStatus {
	t.Helper()
	st, err := g.Status(id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// clone makes a work tree of repo from s.
func clone(t *testing.T, s *fjordtest.Server, repo string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	if out, err := s.Git(t.Context(), "", "clone", s.URL(repo), dir); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	return dir
}

func commit(t *testing.T, s *fjordtest.Server, dir, msg string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte(msg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "f"}, {"commit", "-qm", msg}} {
		if out, err := s.Git(t.Context(), dir, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	out, err := s.Git(t.Context(), dir, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// push pushes HEAD of dir to main on s.
func push(ctx context.Context, s *fjordtest.Server, dir, repo string) (string, error) {
	return s.Git(ctx, dir, "push", s.URL(repo), "HEAD:refs/heads/main")
}

// servedMain is main as s serves it over SSH.
func servedMain(t *testing.T, s *fjordtest.Server, repo string) string {
	t.Helper()
	out, err := s.Git(t.Context(), "", "ls-remote", s.URL(repo), "refs/heads/main")
	if err != nil {
		t.Fatalf("ls-remote %s: %v\n%s", s.SSHAddr, err, out)
	}
	hash, _, _ := strings.Cut(out, "\t")
	return hash
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
	start(t, g, "a")
	if p := waitPrimary(t, g, "a", ""); p != "a" {
		t.Fatalf("the first member up is not primary: %s", p)
	}
	start(t, g, "b", "c")
	a := g.Members["a"]
	for _, id := range []string{"b", "c"} {
		if st := status(t, g, id); st.Primary != "a" || len(st.Members) != 3 {
			t.Fatalf("%s sees %+v; want primary a of 3 members", id, st)
		}
		if out, err := g.Members[id].Fjord("repo", "create", "nope"); err == nil || !strings.Contains(out, a.SSHAddr) {
			t.Fatalf("an admin write on %s: err %v, %q; want a refusal naming the primary's address %s", id, err, out, a.SSHAddr)
		}
	}
	// Only the primary runs mirror syncs: a replica takes no webhook.
	resp, err := http.Post("http://"+g.Members["b"].HTTPAddr+"/hooks/generic/upstream", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), a.SSHAddr) {
		t.Fatalf("a webhook sent to replica b: %s %q; want 503 naming the primary's address %s", resp.Status, body, a.SSHAddr)
	}
	if r := readyz(t, g.Members["b"]); !strings.Contains(r, "role: replica") {
		t.Fatalf("b's /readyz: %q", r)
	}

	if _, err := g.WaitWritable("a", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	followerRefusesLocalWrites(t, g, "a", "b")
	if out, err := a.Fjord("repo", "create", "demo"); err != nil {
		t.Fatalf("repo create on the primary: %v %s", err, out)
	}
	dir := clone(t, a, "demo")
	commit(t, a, dir, "one")
	g.Members["b"].Stop()
	g.Members["c"].Stop()
	// An admin write is held for the synchronous replica as a push is.
	if out, err := a.Fjord("repo", "create", "other"); err == nil || !strings.Contains(out, "not acknowledged") {
		t.Fatalf("repo create with both followers down: err %v, %q; want a refusal saying it was not acknowledged", err, out)
	}
	out, err := push(t.Context(), a, dir, "demo")
	if err == nil || !strings.Contains(out, "not acknowledged") {
		t.Fatalf("push with both followers down: err %v\n%s\nwant a refusal saying it was not acknowledged", err, out)
	}
	if st := status(t, g, "a"); !st.ReadOnly || !strings.Contains(st.Reason, "read-only") {
		t.Fatalf("status with both followers down: %+v; want read-only and why", st)
	}
	if r := readyz(t, a); !strings.Contains(r, "read-only") {
		t.Fatalf("a's /readyz does not say it is read-only: %q", r)
	}
	if out, err := a.Fjord("replicas"); err != nil || !strings.Contains(out, "READ-ONLY") {
		t.Fatalf("fjord replicas: %v\n%s", err, out)
	}
}

// TestGroupSyncPush: a push to the primary is served by the synchronous
// follower the moment the push returns, and by the other soon after; a
// push to a follower is refused naming the primary; a follower killed and
// restarted catches up; a new, empty member gets a full copy.
func TestGroupSyncPush(t *testing.T) {
	g := newFjordGroup(t, 1, "a", "b", "c", "d")
	start(t, g, "a")
	waitPrimary(t, g, "a", "")
	start(t, g, "b", "c")
	a := g.Members["a"]
	if _, err := g.WaitWritable("a", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	followerRefusesLocalWrites(t, g, "a", "b")
	if out, err := a.Fjord("repo", "create", "demo"); err != nil {
		t.Fatalf("repo create: %v %s", err, out)
	}
	dir := clone(t, a, "demo")
	for i := range 3 {
		want := commit(t, a, dir, fmt.Sprintf("change %d", i))
		if out, err := push(t.Context(), a, dir, "demo"); err != nil {
			t.Fatalf("push %d to the primary: %v\n%s", i, err, out)
		}
		st := status(t, g, "a")
		if len(st.SyncFollowers) != 1 {
			t.Fatalf("sync followers after an acknowledged push: %v", st.SyncFollowers)
		}
		sf := g.Members[st.SyncFollowers[0]]
		if got := servedMain(t, sf, "demo"); got != want {
			t.Fatalf("push %d returned, but the sync follower %s serves main at %q, want %s", i, st.SyncFollowers[0], got, want)
		}
	}
	want := commit(t, a, dir, "last")
	if out, err := push(t.Context(), a, dir, "demo"); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	for _, id := range []string{"b", "c"} {
		eventually(t, id+" serves the last push", func() error {
			if got := servedMain(t, g.Members[id], "demo"); got != want {
				return fmt.Errorf("main at %q, want %s", got, want)
			}
			return nil
		})
	}

	// A push to a follower is refused with the primary's address.
	commit(t, a, dir, "to a follower")
	out, err := push(t.Context(), g.Members["b"], dir, "demo")
	if err == nil || !strings.Contains(out, a.SSHAddr) {
		t.Fatalf("push to follower b: err %v\n%s\nwant a refusal naming the primary at %s", err, out, a.SSHAddr)
	}

	// A follower killed while pushes go on catches up after its restart.
	c := g.Members["c"]
	c.Kill()
	if _, err := g.WaitWritable("a", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	want = commit(t, a, dir, "while c is down")
	if out, err := push(t.Context(), a, dir, "demo"); err != nil {
		t.Fatalf("push with c down: %v\n%s", err, out)
	}
	start(t, g, "c")
	eventually(t, "c catches up", func() error {
		if got := servedMain(t, c, "demo"); got != want {
			return fmt.Errorf("main at %q, want %s", got, want)
		}
		return nil
	})
	if err := c.Fsck(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	// The stream shows on /metrics: the primary's view of each follower,
	// the follower's own apply times.
	eventually(t, "replication metrics on the primary and on c", func() error {
		if m := scrape(t, a); !strings.Contains(m, `fjord_replication_follower_acked_position{replica="c"}`) {
			return fmt.Errorf("primary a's /metrics has no acked position of c")
		}
		if m := scrape(t, c); !strings.Contains(m, "fjord_replication_apply_seconds_count") || strings.Contains(m, "fjord_replication_apply_seconds_count 0\n") {
			return fmt.Errorf("c's /metrics has no applied change")
		}
		return nil
	})

	// The primary killed and restarted at once may find its Lease still
	// its own: whoever is primary next keeps the synchronous replicas and
	// the acknowledged position of the Lease.
	before := status(t, g, "a")
	a.Kill()
	start(t, g, "a")
	// a is ready: primary again (its Lease written) or a caught-up replica.
	after := status(t, g, "b")
	if after.AckedPosition < before.AckedPosition {
		t.Fatalf("after a's restart (primary %s) the acknowledged position went back from %d to %d", after.Primary, before.AckedPosition, after.AckedPosition)
	}

	// A new, empty member joins and gets a full copy: repos, refs and the
	// users (the admin key authenticates on it).
	start(t, g, "d")
	d := g.Members["d"]
	eventually(t, "d gets a full copy", func() error {
		if got := servedMain(t, d, "demo"); got != want {
			return fmt.Errorf("main at %q, want %s", got, want)
		}
		return nil
	})
	if err := d.Fsck(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
}

// TestGroupFencing stops the primary's renewals with SIGSTOP: another
// member takes over, and the old primary, continued, accepts no push. It
// follows the new primary, stands again, and when that one dies it is
// elected again in the same process: it takes pushes and its primary
// services (the reconciler, mirror syncs) run again.
func TestGroupFencing(t *testing.T) {
	env := testenv.Shared(t)
	appNS := env.Namespace(t)
	g := newFjordGroup(t, 0, "a", "b", "c")
	start(t, g, "a")
	waitPrimary(t, g, "a", "")
	start(t, g, "b", "c")
	a := g.Members["a"]
	if out, err := a.Fjord("repo", "create", "demo"); err != nil {
		t.Fatalf("repo create: %v %s", err, out)
	}
	dir := clone(t, a, "demo")
	configMap(t, a, dir, "one")
	commit(t, a, dir, "one")
	if out, err := push(t.Context(), a, dir, "demo"); err != nil {
		t.Fatalf("push to the primary: %v\n%s", err, out)
	}
	app := filepath.Join(t.TempDir(), "app.yaml")
	os.WriteFile(app, []byte(fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: demo
spec:
  project: default
  source: {repoURL: demo, targetRevision: HEAD, path: app}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
`, appNS)), 0o644)
	if out, err := a.Fjord("app", "apply", "-f", app); err != nil {
		t.Fatalf("app apply: %v %s", err, out)
	}
	pid := a.Pid()

	if err := syscall.Kill(a.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	next := waitPrimary(t, g, "b", "a")
	if err := syscall.Kill(a.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	commit(t, a, dir, "two")
	out, err := push(t.Context(), a, dir, "demo")
	if err == nil {
		t.Fatalf("the fenced primary accepted a push after %s took over:\n%s", next, out)
	}
	if !strings.Contains(out, "read-only") {
		t.Fatalf("the fenced primary's refusal does not say why: %s", out)
	}
	// It stepped down: a replica of next, which takes the push.
	eventually(t, "a follows "+next, func() error {
		if st, err := g.Status("a"); err != nil || st.Primary != next {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})
	if out, err := push(t.Context(), g.Members[next], dir, "demo"); err != nil {
		t.Fatalf("push to the new primary %s: %v\n%s", next, err, out)
	}

	// a stands again: with next dead and the third member stopped, only
	// a can take over.
	waitSamePosition(t, g, next, "a")
	other := "c"
	if next == "c" {
		other = "b"
	}
	if err := g.Members[other].Stop(); err != nil {
		t.Fatal(err)
	}
	g.Members[next].Kill()
	if p := waitPrimary(t, g, "a", next); p != "a" {
		t.Fatalf("%s took over, want a", p)
	}
	if a.Pid() != pid {
		t.Fatalf("a was restarted (pid %d, was %d): it must stand again in the same process", a.Pid(), pid)
	}
	if _, err := g.WaitWritable("a", leaseGrace); err != nil {
		t.Fatal(err)
	}
	configMap(t, a, dir, "three")
	head := commit(t, a, dir, "three")
	if out, err := push(t.Context(), a, dir, "demo"); err != nil {
		t.Fatalf("push to a, primary again: %v\n%s", err, out)
	}
	// Its reconciler runs again: the push is synced to the cluster.
	eventually(t, "a's reconciler syncs the push of its second term", func() error {
		out, err := a.Fjord("app", "get", "demo", "-o", "json")
		if err != nil || !strings.Contains(out, head) {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	// Its mirror manager runs again: a sync request is served.
	up := filepath.Join(t.TempDir(), "up.git")
	if out, err := a.Git(t.Context(), "", "clone", "-q", "--bare", dir, up); err != nil {
		t.Fatalf("bare clone: %v %s", err, out)
	}
	if out, err := a.Fjord("mirror", "add", "copy", "--upstream", "file://"+up); err != nil {
		t.Fatalf("mirror add: %v %s", err, out)
	}
	if out, err := a.Fjord("mirror", "sync", "copy"); err != nil {
		t.Fatalf("mirror sync on a, primary again: %v %s", err, out)
	}
	if got := g.Head(t.Context(), "a", "copy", "refs/heads/main"); got != head {
		t.Fatalf("mirror copy serves main at %q, want %s", got, head)
	}
}

// configMap stages app/cm.yaml in dir: a ConfigMap holding msg.
func configMap(t *testing.T, s *fjordtest.Server, dir, msg string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  msg: " + msg + "\n"
	if err := os.WriteFile(filepath.Join(dir, "app", "cm.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Git(t.Context(), dir, "add", "app"); err != nil {
		t.Fatalf("git add: %v\n%s", err, out)
	}
}

// followerRefusesLocalWrites: a write the follower's own store would make
// (redeeming a web UI login link opened on it) is refused naming the
// primary, writes nothing there, and the follower's change log stays its
// primary's: it reaches the primary's position with no full copy.
func followerRefusesLocalWrites(t *testing.T, g *fjordtest.Group, primary, follower string) {
	t.Helper()
	p, f := g.Members[primary], g.Members[follower]
	out, err := p.Fjord("ui", "login")
	if err != nil {
		t.Fatalf("ui login on the primary: %v %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	link := lines[len(lines)-1]
	onFollower := strings.Replace(link, "http://"+p.HTTPAddr+"/", "http://"+f.HTTPAddr+"/", 1)
	if onFollower == link {
		t.Fatalf("ui login link %q is not on the primary's HTTP listener %s", link, p.HTTPAddr)
	}
	waitSamePosition(t, g, primary, follower)
	copies := fullCopies(t, p, follower)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(onFollower)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("follows %s at %s", primary, p.SSHAddr)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), want) {
		t.Fatalf("opening a login link on follower %s: %s, cookies %v; want a refusal saying %q in:\n%s", follower, resp.Status, resp.Cookies(), want, body)
	}
	// The token was not used up on the follower: the primary redeems it,
	// a change the follower then gets from the stream.
	resp, err = noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("opening the link on the primary after the follower refused it: %s", resp.Status)
	}
	waitSamePosition(t, g, primary, follower)
	if n := fullCopies(t, p, follower); n != copies {
		t.Fatalf("follower %s has full copies %s after a refused local write (was %s): its change log diverged", follower, n, copies)
	}
}

// waitSamePosition waits until follower reports the primary's position.
func waitSamePosition(t *testing.T, g *fjordtest.Group, primary, follower string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var st fjordtest.GroupStatus
	for time.Now().Before(deadline) {
		st = status(t, g, primary)
		pos := map[string]uint64{}
		for _, m := range st.Members {
			pos[m.ID] = m.Position
		}
		if pos[primary] > 0 && pos[primary] == pos[follower] {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never reached %s's position: %+v", follower, primary, st)
}

// fullCopies is how many full copies primary sent to follower, from its
// /metrics.
func fullCopies(t *testing.T, primary *fjordtest.Server, follower string) string {
	t.Helper()
	resp, err := http.Get("http://" + primary.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prefix := `fjord_replication_follower_full_copies_total{replica="` + follower + `"} `
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	t.Fatalf("primary %s's /metrics has no %s line: the comparison of full copies would prove nothing", primary.HTTPAddr, strings.TrimSpace(prefix))
	return ""
}

// scrape returns member m's /metrics page.
func scrape(t *testing.T, m *fjordtest.Server) string {
	t.Helper()
	resp, err := http.Get("http://" + m.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return string(b)
}
