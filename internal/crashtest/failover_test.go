package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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

// runFailover is the failover kind: a group of three `fjord serve --ha`
// with --sync-replicas 1 on the test API server; a CI pushes to the
// primary, which is killed with SIGKILL at a random moment. Then: a new
// primary within the lease duration + 5 s, every acknowledged push on it,
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
	var failovers []time.Duration

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
		np, err := g.WaitPrimary(asked, primary, fjordtest.GroupLease+5*time.Second)
		if err != nil {
			violate("no new primary within the lease duration + 5 s: %v", err)
			break
		}
		failovers = append(failovers, time.Since(killed))
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
	slices.Sort(failovers)
	if len(failovers) > 0 {
		t.Logf("failover (kill -9 to a new primary seen): median %s, max %s over %d trials (lease %s)",
			failovers[len(failovers)/2].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond), len(failovers), fjordtest.GroupLease)
	}
	if len(r.violations) > 0 {
		for _, id := range ids {
			t.Logf("%s log (tail):\n%s", id, tailLog(g.Members[id].Log(), 3000))
		}
	}
	return r
}
