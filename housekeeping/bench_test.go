package housekeeping_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/fjordhq/fjord/housekeeping"
)

// BenchmarkAgedRepo pushes 2,000 single-commit pushes to one repo with
// housekeeping running as `fjord serve` runs it, then times a full clone
// and an incremental fetch (the last 20 commits) from it against the same
// repo freshly repacked (git repack -adf with bitmap and commit-graph).
// Goal: the aged repo within 1.2x of the fresh one. Run with -benchtime 1x.
func BenchmarkAgedRepo(b *testing.B) {
	const pushes = 2000
	for i := 0; i < b.N; i++ {
		r := newRepo(b, "aged")
		m, err := housekeeping.New(housekeeping.Config{Store: r.store})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { m.Run(ctx, housekeeping.Primary); close(done) }()
		start := time.Now()
		for p := 0; p < pushes; p++ {
			r.push(p)
		}
		pushTime := time.Since(start)
		// What housekeeping does after the last push.
		time.Sleep(housekeeping.DefaultDelay)
		cancel()
		<-done
		if _, err := m.Housekeep(context.Background(), "aged", housekeeping.Primary); err != nil {
			b.Fatal(err)
		}
		aged, err := housekeeping.Inspect(r.path())
		if err != nil {
			b.Fatal(err)
		}

		dir := b.TempDir()
		fresh := filepath.Join(dir, "fresh.git")
		r.git("", "clone", "-q", "--mirror", "--no-local", r.path(), fresh)
		r.git(fresh, "repack", "-adf", "-q", "--write-bitmap-index")
		r.git(fresh, "commit-graph", "write", "--reachable", "--changed-paths")
		freshSt, _ := housekeeping.Inspect(fresh)

		cloneAged := median(b, 5, func(dst string) { r.git("", "clone", "-q", "--bare", "--no-local", "file://"+r.path(), dst) })
		cloneFresh := median(b, 5, func(dst string) { r.git("", "clone", "-q", "--bare", "--no-local", "file://"+fresh, dst) })

		// A client 20 commits behind.
		behind := filepath.Join(dir, "behind.git")
		r.git("", "clone", "-q", "--bare", "--no-local", "file://"+fresh, behind)
		r.git(behind, "update-ref", "refs/heads/main", "refs/heads/main~20")
		r.git(behind, "reflog", "expire", "--expire=now", "--all")
		r.git(behind, "gc", "-q", "--prune=now")
		fetch := func(src string) func(string) {
			return func(dst string) {
				cp := exec.Command("cp", "-a", behind, dst)
				if out, err := cp.CombinedOutput(); err != nil {
					b.Fatalf("cp: %v %s", err, out)
				}
				// Only the fetch is timed by median; the copy is subtracted.
				r.git(dst, "fetch", "-q", "file://"+src, "+refs/heads/main:refs/heads/main")
			}
		}
		copyOnly := median(b, 5, func(dst string) { exec.Command("cp", "-a", behind, dst).Run() })
		fetchAged := median(b, 5, fetch(r.path())) - copyOnly
		fetchFresh := median(b, 5, fetch(fresh)) - copyOnly

		b.ReportMetric(float64(cloneAged.Microseconds())/1000, "clone-aged-ms")
		b.ReportMetric(float64(cloneFresh.Microseconds())/1000, "clone-fresh-ms")
		b.ReportMetric(ratio(cloneAged, cloneFresh), "clone-ratio")
		b.ReportMetric(float64(fetchAged.Microseconds())/1000, "fetch-aged-ms")
		b.ReportMetric(float64(fetchFresh.Microseconds())/1000, "fetch-fresh-ms")
		b.ReportMetric(ratio(fetchAged, fetchFresh), "fetch-ratio")
		b.ReportMetric(float64(aged.Packs), "packs")
		b.ReportMetric(float64(aged.LooseObjects), "loose-objects")
		fmt.Printf(`
aged repo: %d single-commit pushes in %s with housekeeping (goal: within 1.2x of fresh)
              aged       fresh      ratio
clone         %-10s %-10s %.2fx
fetch (20)    %-10s %-10s %.2fx
packs         %-10d %-10d
loose objects %-10d %-10d
bitmap        %-10v %-10v
commit-graph  %-10v %-10v
`, pushes, pushTime.Round(time.Second), cloneAged.Round(time.Millisecond), cloneFresh.Round(time.Millisecond), ratio(cloneAged, cloneFresh),
			fetchAged.Round(time.Millisecond), fetchFresh.Round(time.Millisecond), ratio(fetchAged, fetchFresh),
			aged.Packs, freshSt.Packs, aged.LooseObjects, freshSt.LooseObjects, aged.Bitmap, freshSt.Bitmap, aged.CommitGraph, freshSt.CommitGraph)
	}
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// median runs f n times, each with a new destination path, and returns the
// median duration.
func median(b *testing.B, n int, f func(dst string)) time.Duration {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		dst := filepath.Join(b.TempDir(), "dst.git")
		start := time.Now()
		f(dst)
		ds = append(ds, time.Since(start))
		os.RemoveAll(dst)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}
