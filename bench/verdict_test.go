package bench_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/bench"
)

// reportWith returns a report holding one workload with the given p99 and
// IOPS.
func reportWith(workload string, p99 time.Duration, iops float64) *bench.DiskReport {
	return &bench.DiskReport{Workloads: []bench.Result{{
		Name:    workload,
		IOPS:    iops,
		Latency: bench.Latency{Samples: 10_000, P50: p99 / 2, P99: p99},
	}}}
}

func TestVerdictBoundaries(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * 1e6) }
	tests := []struct {
		workload string
		check    string
		p99      time.Duration
		iops     float64
		want     bench.Status
	}{
		// etcd WAL fdatasync p99: < 10 ms pass, 10 to 50 ms warn, > 50 ms fail.
		{bench.WorkloadEtcdWAL, "etcd-wal-p99", ms(9.999), 0, bench.StatusPass},
		{bench.WorkloadEtcdWAL, "etcd-wal-p99", ms(10), 0, bench.StatusWarn},
		{bench.WorkloadEtcdWAL, "etcd-wal-p99", ms(50), 0, bench.StatusWarn},
		{bench.WorkloadEtcdWAL, "etcd-wal-p99", ms(50.001), 0, bench.StatusFail},
		// The same lines hold with a noisy neighbour.
		{bench.WorkloadNoisy, "etcd-wal-noisy-p99", ms(9.999), 0, bench.StatusPass},
		{bench.WorkloadNoisy, "etcd-wal-noisy-p99", ms(10), 0, bench.StatusWarn},
		{bench.WorkloadNoisy, "etcd-wal-noisy-p99", ms(50.001), 0, bench.StatusFail},
		// Sequential fdatasync IOPS: >= 500 pass, 50 to 500 warn, < 50 fail.
		{bench.WorkloadSeqSync, "seq-fdatasync-iops", ms(1), 500, bench.StatusPass},
		{bench.WorkloadSeqSync, "seq-fdatasync-iops", ms(1), 499.9, bench.StatusWarn},
		{bench.WorkloadSeqSync, "seq-fdatasync-iops", ms(1), 50, bench.StatusWarn},
		{bench.WorkloadSeqSync, "seq-fdatasync-iops", ms(1), 49.9, bench.StatusFail},
		// bbolt commit p99: < 25 ms pass, otherwise fail.
		{bench.WorkloadBolt, "bbolt-commit-p99", ms(24.999), 0, bench.StatusPass},
		{bench.WorkloadBolt, "bbolt-commit-p99", ms(25), 0, bench.StatusFail},
		// Repo-server random reads >= 8,000 IOPS, writes >= 2,000.
		{bench.WorkloadReadQD16, "randread-iops", ms(1), 8000, bench.StatusPass},
		{bench.WorkloadReadQD16, "randread-iops", ms(1), 7999.9, bench.StatusFail},
		{bench.WorkloadWriteQD16, "randwrite-iops", ms(1), 2000, bench.StatusPass},
		{bench.WorkloadWriteQD16, "randwrite-iops", ms(1), 1999.9, bench.StatusFail},
	}
	for _, tt := range tests {
		vs := bench.Judge(reportWith(tt.workload, tt.p99, tt.iops))
		if len(vs) != 1 {
			t.Fatalf("%s: %d verdicts, want 1", tt.workload, len(vs))
		}
		v := vs[0]
		if v.Check != tt.check || v.Status != tt.want {
			t.Errorf("%s at p99 %v, %v IOPS: %s %s, want %s %s (%s)", tt.workload, tt.p99, tt.iops, v.Check, v.Status, tt.check, tt.want, v.Summary)
		}
		if v.Source == "" || !strings.HasPrefix(v.SourceURL, "https://") {
			t.Errorf("%s: verdict without a source: %+v", v.Check, v)
		}
	}
}

func TestVerdictHeadroom(t *testing.T) {
	// p99 2.5 ms against the 10 ms line: four times better.
	v := bench.Judge(reportWith(bench.WorkloadEtcdWAL, 2500*time.Microsecond, 0))[0]
	if math.Abs(v.Margin-4) > 1e-9 || v.Value != 2.5 || v.Unit != "ms" {
		t.Errorf("margin %v value %v %s, want 4 and 2.5 ms", v.Margin, v.Value, v.Unit)
	}
	if want := "p99 2.50 ms is 4.0× under the 10 ms pass line"; v.Summary != want {
		t.Errorf("summary %q, want %q", v.Summary, want)
	}

	// 20 ms: warn, twice over the pass line, 2.5 times under the fail line.
	v = bench.Judge(reportWith(bench.WorkloadEtcdWAL, 20*time.Millisecond, 0))[0]
	if want := "p99 20.0 ms is 2.0× over the 10 ms pass line, 2.5× under the 50 ms fail line"; v.Summary != want {
		t.Errorf("summary %q, want %q", v.Summary, want)
	}
	if math.Abs(v.Margin-0.5) > 1e-9 {
		t.Errorf("margin %v, want 0.5", v.Margin)
	}

	// 2,000 read IOPS against 8,000: a quarter of the line.
	v = bench.Judge(reportWith(bench.WorkloadReadQD16, time.Millisecond, 2000))[0]
	if want := "2,000 IOPS is 4.0× below the 8,000 pass line"; v.Summary != want {
		t.Errorf("summary %q, want %q", v.Summary, want)
	}
	if math.Abs(v.Margin-0.25) > 1e-9 {
		t.Errorf("margin %v, want 0.25", v.Margin)
	}

	// Close to a line, the distance reads as a percentage of it.
	v = bench.Judge(reportWith(bench.WorkloadEtcdWAL, 9500*time.Microsecond, 0))[0]
	if want := "p99 9.50 ms is 5% under the 10 ms pass line"; v.Summary != want {
		t.Errorf("summary %q, want %q", v.Summary, want)
	}
	v = bench.Judge(reportWith(bench.WorkloadReadQD16, time.Millisecond, 7200))[0]
	if want := "7,200 IOPS is 10% below the 8,000 pass line"; v.Summary != want {
		t.Errorf("summary %q, want %q", v.Summary, want)
	}

	// 25 sequential IOPS: fails both lines.
	v = bench.Judge(reportWith(bench.WorkloadSeqSync, time.Millisecond, 25))[0]
	if want := "25 IOPS is 20× below the 500 pass line and 2.0× below the 50 fail line"; v.Summary != want {
		t.Errorf("summary %q, want %q", v.Summary, want)
	}
}

func TestVerdictWithoutSamplesFails(t *testing.T) {
	rep := &bench.DiskReport{Workloads: []bench.Result{{Name: bench.WorkloadEtcdWAL}}}
	v := bench.Judge(rep)[0]
	if v.Status != bench.StatusFail {
		t.Errorf("a workload with no completed operation got %s, want fail", v.Status)
	}
}

func TestJudgeSkipsWorkloadsNotRun(t *testing.T) {
	rep := &bench.DiskReport{Workloads: []bench.Result{{Name: bench.WorkloadLoose, Latency: bench.Latency{Samples: 1, P99: 1}}}}
	if vs := bench.Judge(rep); len(vs) != 0 {
		t.Errorf("verdicts %+v for a workload without a published threshold", vs)
	}
}

func TestJudgeGitBoundaries(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * 1e6) }
	tests := []struct {
		workload, check string
		p99             time.Duration
		want            bench.Status
	}{
		// Poll and fetch: < 500 ms pass, up to Flux's 60 s timeout warn, beyond fail.
		{bench.GitLsRemote, "git-ls-remote-p99", ms(499.9), bench.StatusPass},
		{bench.GitLsRemote, "git-ls-remote-p99", ms(500), bench.StatusWarn},
		{bench.GitFetch, "git-fetch-p99", ms(60_000), bench.StatusWarn},
		{bench.GitFetch, "git-fetch-p99", ms(60_000.1), bench.StatusFail},
		// Clones: < 6 s pass.
		{bench.GitClone, "git-clone-p99", ms(5_999), bench.StatusPass},
		{bench.GitShallow, "git-shallow-clone-p99", ms(6_000), bench.StatusWarn},
		{bench.GitShallow, "git-shallow-clone-p99", ms(60_001), bench.StatusFail},
	}
	for _, tt := range tests {
		rep := &bench.GitReport{Workloads: []bench.GitResult{{Name: tt.workload, Ops: 10, Latency: bench.Latency{Samples: 10, P99: tt.p99}}}}
		vs := bench.JudgeGit(rep)
		if len(vs) != 1 || vs[0].Check != tt.check || vs[0].Status != tt.want {
			t.Errorf("%s at p99 %v: %+v, want one %s %s", tt.workload, tt.p99, vs, tt.check, tt.want)
		}
	}
	// Any failed operation fails a check of its own that says how many.
	rep := &bench.GitReport{Workloads: []bench.GitResult{{Name: bench.GitClone, Ops: 9, Errors: 1, FirstError: "exit status 128",
		Latency: bench.Latency{Samples: 9, P99: ms(10)}}}}
	vs := bench.JudgeGit(rep)
	if len(vs) != 2 || vs[1].Status != bench.StatusFail || !strings.Contains(vs[1].Summary, "1 of 10 operations failed; the first: exit status 128") {
		t.Errorf("verdicts with a failed clone: %+v", vs)
	}
}
