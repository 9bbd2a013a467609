package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/testenv"
)

// failoverTrials is the number of failover trials: FJORD_FAILOVER_TRIALS,
// else the trials of the other kinds capped at 20 (each trial waits out
// a lease).
func failoverTrials(t *testing.T, n int) int {
	if v := os.Getenv("FJORD_FAILOVER_TRIALS"); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil || m < 1 {
			t.Fatalf("FJORD_FAILOVER_TRIALS=%q: want a positive number", v)
		}
		return m
	}
	return min(n, 20)
}

// electedWithin bounds the wait for a new primary after a kill: generous,
// so that only a group that elects no one fails, not a slow machine.
const electedWithin = time.Minute

// failoverFigure is the failover times of r for the table: median and
// max, and how many exceeded the goal of the lease duration + 5 s.
func (r result) failoverFigure() string {
	if len(r.failovers) == 0 {
		return "-"
	}
	fs := slices.Sorted(slices.Values(r.failovers))
	goal := fjordtest.GroupLease + 5*time.Second
	over := len(fs) - sort.Search(len(fs), func(i int) bool { return fs[i] > goal })
	return fmt.Sprintf("median %s max %s, %d over %s (lease %s)", fs[len(fs)/2].Round(time.Millisecond), fs[len(fs)-1].Round(time.Millisecond), over, goal, fjordtest.GroupLease)
}

// runFailover is the failover kind: a group of three `fjord serve --ha`
// with --sync-replicas 1 on the test API server; a CI pushes to the
// primary, which is killed with SIGKILL at a random moment. Then: a new
// primary is elected (within a minute: how long it took is a figure of
// the table, not a pass/fail on a loaded machine), every acknowledged
// push on it,
// fsck clean, a push to it succeeds, and the old primary, restarted,
// rejoins as a replica and serves the same main.
func runFailover(t *testing.T, n int, rng *rand.Rand) result {
	ctx := t.Context()
	env := testenv.Shared(t)
	ids := []string{"r0", "r1", "r2"}
	g := fjordtest.NewGroup(t, env.Kubeconfig(), env.Namespace(t), 1, ids...)
	r := result{kind: "failover"}
	for _, id := range ids {
		if err := g.Start(id); err != nil {
			t.Fatal(err)
		}
		if id == ids[0] {
			if _, err := g.WaitPrimary(id, "", time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	primary := ids[0]
	if _, err := g.WaitWritable(primary, time.Minute); err != nil {
		t.Fatal(err)
	}
	mustFjord(t, g.Members[primary], "repo", "create", "ci")
	work := filepath.Join(t.TempDir(), "work")
	mustGit(t, g.Members[primary], "", "clone", "-q", g.Members[primary].URL("ci"), work)

	var (
		mu    sync.Mutex
		acked = map[int]string{}
		next  int
	)
	pushTo := func(ctx context.Context, s *fjordtest.Server) error {
		mu.Lock()
		i := next
		next++
		mu.Unlock()
		os.WriteFile(filepath.Join(work, "build.txt"), []byte(fmt.Sprintf("build %d\n", i)), 0o644)
		if _, err := git(ctx, s, work, "add", "."); err != nil {
			return err
		}
		if out, err := git(ctx, s, work, "commit", "-q", "-m", fmt.Sprintf("build %d", i)); err != nil {
			return fmt.Errorf("commit: %v: %s", err, out)
		}
		hash, err := git(ctx, s, work, "rev-parse", "HEAD")
		if err != nil {
			return err
		}
		if out, err := git(ctx, s, work, "push", "-q", s.URL("ci"), "HEAD:refs/heads/main", fmt.Sprintf("HEAD:refs/heads/build-%d", i)); err != nil {
			return fmt.Errorf("push: %v: %s", err, out)
		}
		mu.Lock()
		acked[i] = hash
		mu.Unlock()
		return nil
	}
	for trial := 1; trial <= n; trial++ {
		violate := func(format string, args ...any) {
			r.violations = append(r.violations, fmt.Sprintf("failover trial %d: ", trial)+fmt.Sprintf(format, args...))
		}
		old := g.Members[primary]
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			for wctx.Err() == nil && pushTo(wctx, old) == nil {
			}
		})
		time.Sleep(time.Duration(rng.Int64N(int64(1500*time.Millisecond))) + 50*time.Millisecond)
		old.Kill()
		killed := time.Now()
		stop()
		wg.Wait()
		r.trials++

		asked := ids[(slices.Index(ids, primary)+1)%len(ids)]
		np, err := g.WaitPrimary(asked, primary, electedWithin)
		if err != nil {
			violate("no new primary elected: %v", err)
			break
		}
		r.failovers = append(r.failovers, time.Since(killed))
		s := g.Members[np]
		mu.Lock()
		for i, hash := range acked {
			if got := g.Head(ctx, np, "ci", fmt.Sprintf("refs/heads/build-%d", i)); got != hash {
				violate("acknowledged push %d (%s) lost on the new primary %s: branch build-%d is %q", i, hash, np, i, got)
			}
		}
		mu.Unlock()
		if err := s.Fsck(ctx, "ci"); err != nil {
			violate("new primary %s: %v", np, err)
		}
		if _, err := g.WaitWritable(np, time.Minute); err != nil {
			violate("%v", err)
		} else if err := pushTo(ctx, s); err != nil {
			violate("push to the new primary %s: %v", np, err)
		}

		// The old primary rejoins as a replica and converges.
		if err := g.Start(primary); err != nil {
			violate("restart %s: %v", primary, err)
			break
		}
		want := g.Head(ctx, np, "ci", "refs/heads/main")
		deadline := time.Now().Add(time.Minute)
		for {
			st, err := g.Status(primary)
			got := g.Head(ctx, primary, "ci", "refs/heads/main")
			if err == nil && st.Primary == np && got == want {
				break
			}
			if time.Now().After(deadline) {
				violate("restarted %s did not converge as a replica of %s: %+v %v, main %q want %q", primary, np, st, err, got, want)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := old.Fsck(ctx, "ci"); err != nil {
			violate("restarted %s: %v", primary, err)
		}
		primary = np
		if len(r.violations) > 20 {
			break
		}
	}
	mu.Lock()
	r.acked = len(acked)
	mu.Unlock()
	if f := r.failoverFigure(); f != "-" {
		t.Logf("failover (kill -9 to a new primary seen): %s over %d trials", f, len(r.failovers))
	}
	if len(r.violations) > 0 {
		for _, id := range ids {
			t.Logf("%s log (tail):\n%s", id, tailLog(g.Members[id].Log(), 3000))
		}
	}
	return r
}
