package replication_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"
)

// BenchmarkPushAcked measures a small push over SSH with the git CLI,
// from the start of `git push` to the moment it is safe to acknowledge:
// with 0 replicas when git push returns, with 1 when the follower also
// acked the push's change (what --sync-replicas 1 waits for). The
// difference is the cost of durability. It also reports the follower's
// lag: from git push returning to the follower holding the change, when
// nothing waits for it.
//
//	go test -run '^$' -bench PushAcked -benchtime 100x ./replication/
func BenchmarkPushAcked(b *testing.B) {
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			g := newGroup(b)
			p := g.start(b, "p", b.TempDir(), "", "", nil)
			p.seed(b, "app")
			f := g.start(b, "f", b.TempDir(), "", p.addr, nil)
			work := clone(b, g, p)
			p.push(b, work, "warmup")
			p.waitAcked(b, 1)
			ctx := context.Background()
			var acked, lag []time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				g.mustGit(b, work, "commit", "-q", "--allow-empty", "-m", fmt.Sprint(i))
				b.StartTimer()
				start := time.Now()
				g.mustGit(b, work, "push", "-q", "origin", "HEAD:refs/heads/main")
				pushed := time.Now()
				pos := p.store.Position()
				if replicas > 0 {
					if err := p.primary.WaitAcked(ctx, pos, replicas); err != nil {
						b.Fatal(err)
					}
				}
				acked = append(acked, time.Since(start))
				b.StopTimer()
				for f.store.Position() < pos {
					if err := f.store.WaitChange(ctx, f.store.Position()); err != nil {
						b.Fatal(err)
					}
				}
				if replicas == 0 {
					lag = append(lag, time.Since(pushed))
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(pct(acked, .5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(pct(acked, .99).Microseconds())/1000, "p99-ms")
			if len(lag) > 0 {
				b.ReportMetric(float64(pct(lag, .5).Microseconds())/1000, "lag-p50-ms")
				b.ReportMetric(float64(pct(lag, .99).Microseconds())/1000, "lag-p99-ms")
			}
		})
	}
}

// BenchmarkChangeAcked measures what a synchronous follower adds to a
// push, without the git client around it: a small push is received into
// the primary's repo (git push over file://, not timed), then the clock
// runs from the primary recording its change (RefreshRefs, as the push
// path does after receive-pack) to the follower's ack of it. With 0
// followers that is the primary's own commit; with 1 it adds the stream,
// the follower installing the pack, writing the ref and its position,
// durably, and the ack.
//
//	go test -run '^$' -bench ChangeAcked -benchtime 300x ./replication/
func BenchmarkChangeAcked(b *testing.B) {
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			g := newGroup(b)
			p := g.start(b, "p", b.TempDir(), "", "", nil)
			p.seed(b, "app")
			if replicas > 0 {
				g.start(b, "f", b.TempDir(), "", p.addr, nil)
				p.waitAcked(b, 1)
			}
			work := b.TempDir()
			g.mustGit(b, "", "clone", "-q", "file://"+p.store.RepoPath("app"), work)
			ctx := context.Background()
			var took []time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				g.mustGit(b, work, "commit", "-q", "--allow-empty", "-m", fmt.Sprint(i))
				g.mustGit(b, work, "push", "-q", "--receive-pack=git -c receive.unpackLimit=1 receive-pack", "origin", "HEAD:refs/heads/main")
				b.StartTimer()
				start := time.Now()
				if _, err := p.store.RefreshRefs(ctx, "app"); err != nil {
					b.Fatal(err)
				}
				if err := p.primary.WaitAcked(ctx, p.store.Position(), replicas); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(float64(pct(took, .5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(pct(took, .99).Microseconds())/1000, "p99-ms")
		})
	}
}

func pct(d []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
