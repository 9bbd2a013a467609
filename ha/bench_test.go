package ha_test

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/testenv"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// benchGroup is a primary and one follower, up, with repo demo cloned.
type benchGroup struct {
	g       *fjordtest.Group
	p, f    *fjordtest.Server
	work    string
	samples []time.Duration
	lags    []time.Duration
}

func newBenchGroup(b *testing.B, syncReplicas int) *benchGroup {
	env := testenv.Shared(b)
	g := fjordtest.NewGroup(b, env.Kubeconfig(), env.Namespace(b), syncReplicas, "p", "f")
	for _, id := range g.IDs {
		if err := g.Start(id); err != nil {
			b.Fatal(err)
		}
		if _, err := g.WaitPrimary(id, "", time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	bg := &benchGroup{g: g, p: g.Members["p"], f: g.Members["f"]}
	if _, err := g.WaitWritable("p", time.Minute); err != nil {
		b.Fatal(err)
	}
	if out, err := bg.p.Fjord("repo", "create", "demo"); err != nil {
		b.Fatalf("repo create: %v %s", err, out)
	}
	bg.work = filepath.Join(b.TempDir(), "work")
	if out, err := bg.p.Git(b.Context(), "", "clone", "-q", bg.p.URL("demo"), bg.work); err != nil {
		b.Fatalf("clone: %v %s", err, out)
	}
	return bg
}

// push commits a small change and times only the push, then how long the
// follower took to hold it after the push returned.
func (bg *benchGroup) push(b *testing.B, i int) {
	ctx := b.Context()
	os.WriteFile(filepath.Join(bg.work, "f"), []byte(fmt.Sprintf("change %d\n", i)), 0o644)
	if out, err := bg.p.Git(ctx, bg.work, "commit", "-qam", fmt.Sprintf("change %d", i)); err != nil {
		if out, err = bg.p.Git(ctx, bg.work, "add", "f"); err == nil {
			out, err = bg.p.Git(ctx, bg.work, "commit", "-qm", fmt.Sprintf("change %d", i))
		}
		if err != nil {
			b.Fatalf("commit: %v %s", err, out)
		}
	}
	want, _ := bg.p.Git(ctx, bg.work, "rev-parse", "HEAD")
	start := time.Now()
	if out, err := bg.p.Git(ctx, bg.work, "push", "-q", bg.p.URL("demo"), "HEAD:refs/heads/main"); err != nil {
		b.Fatalf("push %d: %v %s", i, err, out)
	}
	done := time.Now()
	bg.samples = append(bg.samples, done.Sub(start))
	// The follower's ref on disk: a loose ref, as its ref transaction
	// writes it (nothing packs refs on a follower).
	ref := filepath.Join(bg.f.RepoPath("demo"), "refs", "heads", "main")
	for {
		if got, err := os.ReadFile(ref); err == nil && strings.TrimSpace(string(got)) == want {
			bg.lags = append(bg.lags, time.Since(done))
			return
		}
		if time.Since(done) > 30*time.Second {
			b.Fatalf("the follower does not hold push %d after 30 s", i)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkGroupPush measures the cost of durability: a small push to a
// primary with --sync-replicas 1 against one with --sync-replicas 0 (a
// follower too, streaming asynchronously), pushes interleaved so both see
// the same machine; and how long after a push returns the follower holds
// it. Run with -benchtime 1x: each op is 200 pushes to each group.
//
// The difference of two p99s of end-to-end pushes is mostly the noise of
// a shared machine; what the synchronous replica adds is, exactly, the
// time the primary holds a push's report waiting for its ack, which the
// primary measures itself (fjord_ha_sync_wait_seconds). Its p99 is
// reported as the upper bound of the histogram bucket that holds it.
func BenchmarkGroupPush(b *testing.B) {
	async := newBenchGroup(b, 0)
	syncd := newBenchGroup(b, 1)
	const n = 200
	var held histogram
	for range b.N {
		for i := range 10 { // warm up: ssh, git, page cache
			async.push(b, -1-i)
			syncd.push(b, -1-i)
		}
		async.samples, syncd.samples, async.lags, syncd.lags = nil, nil, nil, nil
		before := syncWait(b, syncd.p)
		for i := range n {
			async.push(b, i)
			syncd.push(b, i)
		}
		held = syncWait(b, syncd.p).minus(before)
	}
	a50, a99 := pct(async.samples, .5), pct(async.samples, .99)
	s50, s99 := pct(syncd.samples, .5), pct(syncd.samples, .99)
	b.ReportMetric(ms(a50), "sync0-p50-ms")
	b.ReportMetric(ms(a99), "sync0-p99-ms")
	b.ReportMetric(ms(s50), "sync1-p50-ms")
	b.ReportMetric(ms(s99), "sync1-p99-ms")
	b.ReportMetric(ms(s99-a99), "sync1-added-p99-ms")
	b.ReportMetric(float64(s99)/float64(a99), "sync1/sync0-p99")
	h50, h99 := held.quantile(.5), held.quantile(.99)
	b.ReportMetric(h50*1000, "sync1-held-p50-le-ms")
	b.ReportMetric(h99*1000, "sync1-held-p99-le-ms")
	b.Logf("the primary held a push for its synchronous replica's ack: p50 ≤ %.1f ms, p99 ≤ %.1f ms over %d pushes (fjord_ha_sync_wait_seconds)", h50*1000, h99*1000, int(held.count))
	b.ReportMetric(ms(pct(async.lags, .5)), "async-lag-p50-ms")
	b.ReportMetric(ms(pct(async.lags, .99)), "async-lag-p99-ms")
	b.ReportMetric(ms(pct(syncd.lags, .99)), "sync-lag-p99-ms")
	b.Logf("push → acknowledged over %d small pushes each: --sync-replicas 0 p50 %.1f ms p99 %.1f ms; --sync-replicas 1 p50 %.1f ms p99 %.1f ms (p99 +%.1f ms, ×%.2f); follower holds it after the push returned: async p50 %.2f ms p99 %.2f ms, sync p99 %.2f ms",
		n, ms(a50), ms(a99), ms(s50), ms(s99), ms(s99-a99), float64(s99)/float64(a99),
		ms(pct(async.lags, .5)), ms(pct(async.lags, .99)), ms(pct(syncd.lags, .99)))
}

// BenchmarkFailover kills the primary of a group of three
// (--sync-replicas 1, a 2 s lease) and measures the time until a new
// primary takes pushes again, as a ratio of the lease duration (the floor:
// the Lease must expire first).
func BenchmarkFailover(b *testing.B) {
	env := testenv.Shared(b)
	ids := []string{"r0", "r1", "r2"}
	g := fjordtest.NewGroup(b, env.Kubeconfig(), env.Namespace(b), 1, ids...)
	for _, id := range ids {
		if err := g.Start(id); err != nil {
			b.Fatal(err)
		}
	}
	primary, err := g.WaitWritable(ids[0], time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	for range b.N {
		for range 3 {
			asked := ids[(slices.Index(ids, primary)+1)%len(ids)]
			g.Members[primary].Kill()
			killed := time.Now()
			var np string
			for {
				st, err := g.Status(asked)
				if err == nil && st.Primary != "" && st.Primary != primary && !st.ReadOnly {
					np = st.Primary
					break
				}
				if time.Since(killed) > time.Minute {
					b.Fatalf("no writable primary a minute after killing %s: %+v %v", primary, st, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			times = append(times, time.Since(killed))
			if err := g.Start(primary); err != nil {
				b.Fatal(err)
			}
			if _, err := g.WaitWritable(np, time.Minute); err != nil {
				b.Fatal(err)
			}
			primary = np
		}
	}
	med := pct(times, .5)
	b.ReportMetric(med.Seconds(), "failover-p50-s")
	b.ReportMetric(pct(times, 1).Seconds(), "failover-max-s")
	b.ReportMetric(float64(med)/float64(fjordtest.GroupLease), "failover/lease")
	b.Logf("kill -9 of the primary → a new primary taking pushes: median %s, max %s over %d failovers with a %s lease",
		med.Round(time.Millisecond), pct(times, 1).Round(time.Millisecond), len(times), fjordtest.GroupLease)
}

// histogram is a scrape of one Prometheus histogram: cumulative counts by
// upper bound.
type histogram struct {
	count  float64
	bounds []float64
	counts []float64
}

// syncWait scrapes fjord_ha_sync_wait_seconds from a member's /metrics.
func syncWait(b *testing.B, s *fjordtest.Server) histogram {
	b.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("parse /metrics: %v", err)
	}
	mf := families["fjord_ha_sync_wait_seconds"]
	if mf == nil || len(mf.GetMetric()) != 1 {
		b.Fatal("no fjord_ha_sync_wait_seconds in /metrics")
	}
	ph := mf.GetMetric()[0].GetHistogram()
	h := histogram{count: float64(ph.GetSampleCount())}
	for _, bk := range ph.GetBucket() {
		h.bounds = append(h.bounds, bk.GetUpperBound())
		h.counts = append(h.counts, float64(bk.GetCumulativeCount()))
	}
	return h
}

// minus returns the observations h has that earlier had not.
func (h histogram) minus(earlier histogram) histogram {
	out := histogram{count: h.count - earlier.count, bounds: h.bounds}
	for i := range h.counts {
		out.counts = append(out.counts, h.counts[i]-earlier.counts[i])
	}
	return out
}

// quantile returns the upper bound of the bucket holding quantile q
// (+Inf past the last bucket).
func (h histogram) quantile(q float64) float64 {
	for i, c := range h.counts {
		if c >= q*h.count {
			return h.bounds[i]
		}
	}
	return math.Inf(1)
}
