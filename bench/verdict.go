package bench

import "fmt"

// Status is the outcome of one check.
type Status string

// The outcomes of a check.
const (
	StatusPass Status = "pass"
	StatusWarn Status = "warn" // between the pass and the fail lines
	StatusFail Status = "fail"
)

// Verdict judges one measured figure against a published threshold and says
// how far it is from it.
type Verdict struct {
	// Check is a stable identifier, such as "etcd-wal-p99".
	Check    string `json:"check"`
	Title    string `json:"title"`
	Workload string `json:"workload"`
	// Metric is "p99" (Value in milliseconds), "iops" (Value in
	// operations per second) or "errors" (Value the failed operations).
	Metric string  `json:"metric"`
	Unit   string  `json:"unit"`
	Value  float64 `json:"value"`
	Status Status  `json:"status"`
	// Pass is the line a figure must beat to pass, Fail the line beyond
	// which it fails; between them it warns. They are equal when the
	// check has no warning band.
	Pass           float64 `json:"pass"`
	Fail           float64 `json:"fail"`
	HigherIsBetter bool    `json:"higher_is_better"`
	// Margin is how many times better than the pass line the figure is:
	// 2 means twice as good (half the latency, double the IOPS), 0.5
	// means it needs to double to pass.
	Margin float64 `json:"margin"`
	// Summary says in one line where the figure stands.
	Summary string `json:"summary"`
	Source  string `json:"source"`
	// SourceURL links to the source; empty when the check is fjord's own.
	SourceURL string `json:"source_url"`
}

// threshold is one published line a workload's figure is held to.
type threshold struct {
	check, title, workload, metric string
	pass, fail                     float64
	higherIsBetter                 bool
	source, url                    string
}

// thresholds lists the checks, each with the guidance it comes from.
func thresholds() []threshold {
	const (
		ibm     = "https://www.ibm.com/cloud/blog/using-fio-to-tell-whether-your-storage-is-fast-enough-for-etcd"
		etcdHW  = "https://etcd.io/docs/v3.5/op-guide/hardware/"
		ocpEtcd = "https://docs.redhat.com/en/documentation/openshift_container_platform/4.20/html/etcd/etcd-practices"
		gitaly  = "https://docs.gitlab.com/administration/gitaly/"
	)
	walSource := "etcd docs via IBM Cloud's fio guide: WAL fdatasync (wal_fsync_duration_seconds) p99 under 10 ms; fjord fails it beyond 50 ms"
	return []threshold{
		{"etcd-wal-p99", "etcd WAL fdatasync p99", WorkloadEtcdWAL, "p99", 10, 50, false, walSource, ibm},
		{"seq-fdatasync-iops", "sequential fdatasync IOPS", WorkloadSeqSync, "iops", 500, 50, true,
			"etcd hardware guide and OpenShift: at least 50 sequential IOPS, 500 for heavily loaded clusters", etcdHW},
		{"bbolt-commit-p99", "bbolt commit p99", WorkloadBolt, "p99", 25, 25, false,
			"etcd operations guidance (OpenShift): backend_commit_duration_seconds p99 under 25 ms", ocpEtcd},
		{"randread-iops", "random read IOPS (repo-server)", WorkloadReadQD16, "iops", 8000, 8000, true,
			"GitLab Gitaly guidance: at least 8,000 read IOPS", gitaly},
		{"randwrite-iops", "random write IOPS (repo-server)", WorkloadWriteQD16, "iops", 2000, 2000, true,
			"GitLab Gitaly guidance: at least 2,000 write IOPS", gitaly},
		{"etcd-wal-noisy-p99", "etcd WAL fdatasync p99 with a busy neighbour", WorkloadNoisy, "p99", 10, 50, false, walSource, ibm},
	}
}

// Judge returns a verdict for every check whose workload is in rep. It is a
// pure function of the results.
func Judge(rep *DiskReport) []Verdict {
	var out []Verdict
	for _, t := range thresholds() {
		w := rep.Workload(t.workload)
		if w == nil {
			continue
		}
		out = append(out, t.judge(w.Latency, w.IOPS))
	}
	return out
}

// gitThresholds lists the Git checks. The fail line is where the GitOps
// controllers give up: Flux's default GitRepository timeout, 60 s (Argo
// CD's repo-server allows 90 s). The pass lines are fjord's own goals: a
// poll or a fetch after a push inside the half second fjord's push-to-live
// path is built for, and a clone within a tenth of the controllers'
// timeout, which leaves room for a ten times larger repository or a slower
// link.
func gitThresholds() []threshold {
	const (
		flux    = "https://fluxcd.io/flux/components/source/gitrepositories/#timeout"
		timeout = "Flux's GitRepository timeout (default 60 s; Argo CD's repo-server allows 90 s) is the fail line"
	)
	return []threshold{
		{"git-ls-remote-p99", "ref advertisement p99 (git ls-remote)", GitLsRemote, "p99", 500, 60_000, false,
			"fjord's goal: a push noticed within half a second (README, Benchmarks); " + timeout, flux},
		{"git-fetch-p99", "fetch of one new commit p99", GitFetch, "p99", 500, 60_000, false,
			"fjord's goal: a push fetched within half a second (README, Benchmarks); " + timeout, flux},
		{"git-clone-p99", "full clone p99", GitClone, "p99", 6_000, 60_000, false,
			"fjord's goal: a clone within a tenth of the controllers' timeout; " + timeout, flux},
		{"git-shallow-clone-p99", "shallow clone p99 (what Flux does on every sync)", GitShallow, "p99", 6_000, 60_000, false,
			"fjord's goal: a clone within a tenth of the controllers' timeout; " + timeout, flux},
	}
}

// JudgeGit returns a verdict for every Git check whose workload is in rep,
// and one per workload that had failed operations: a failed read is a
// failed CI job or sync. It is a pure function of the results.
func JudgeGit(rep *GitReport) []Verdict {
	var out []Verdict
	for _, t := range gitThresholds() {
		for _, w := range rep.Workloads {
			if w.Name != t.workload {
				continue
			}
			out = append(out, t.judge(w.Latency, w.OpsPerSec))
			if w.Errors > 0 {
				out = append(out, Verdict{
					Check: t.workload + "-errors", Title: t.workload + " errors", Workload: t.workload,
					Metric: "errors", Unit: "operations", Value: float64(w.Errors), Status: StatusFail,
					Summary: fmt.Sprintf("%s of %s operations failed; the first: %s",
						formatCount(float64(w.Errors)), formatCount(float64(w.Errors+w.Ops)), w.FirstError),
					Source: "a Git server must answer every read: each failed one is a failed CI job or sync",
				})
			}
		}
	}
	return out
}

// judge holds one result's latency and rate to the threshold.
func (t threshold) judge(lat Latency, iops float64) Verdict {
	v := Verdict{
		Check: t.check, Title: t.title, Workload: t.workload, Metric: t.metric,
		Pass: t.pass, Fail: t.fail, HigherIsBetter: t.higherIsBetter,
		Source: t.source, SourceURL: t.url,
	}
	var label string
	switch t.metric {
	case "p99":
		v.Unit = "ms"
		v.Value = float64(lat.P99) / 1e6
		label = "p99 " + formatMillis(v.Value)
	case "iops":
		v.Unit = "IOPS"
		v.Value = iops
		label = formatCount(v.Value) + " IOPS"
	}
	if lat.Samples == 0 {
		v.Status = StatusFail
		v.Summary = "no operation completed in the measured window"
		return v
	}

	// good is how many times better than line the value is.
	good := func(line float64) float64 {
		if t.higherIsBetter {
			return v.Value / line
		}
		return line / v.Value // Samples > 0 makes p99 at least 1 ns
	}
	v.Margin = good(t.pass)
	unit := func(x float64) string {
		if t.metric == "p99" {
			return formatCount(x) + " ms"
		}
		return formatCount(x)
	}
	better, worse := "under", "over"
	if t.higherIsBetter {
		better, worse = "above", "below"
	}
	switch {
	case t.higherIsBetter && v.Value >= t.pass, !t.higherIsBetter && v.Value < t.pass:
		v.Status = StatusPass
		v.Summary = fmt.Sprintf("%s is %s %s the %s pass line", label, distance(v.Value, t.pass), better, unit(t.pass))
	case t.pass != t.fail && (t.higherIsBetter && v.Value >= t.fail || !t.higherIsBetter && v.Value <= t.fail):
		v.Status = StatusWarn
		v.Summary = fmt.Sprintf("%s is %s %s the %s pass line, %s %s the %s fail line",
			label, distance(v.Value, t.pass), worse, unit(t.pass), distance(v.Value, t.fail), better, unit(t.fail))
	default:
		v.Status = StatusFail
		v.Summary = fmt.Sprintf("%s is %s %s the %s pass line", label, distance(v.Value, t.pass), worse, unit(t.pass))
		if t.pass != t.fail {
			v.Summary += fmt.Sprintf(" and %s %s the %s fail line", distance(v.Value, t.fail), worse, unit(t.fail))
		}
	}
	return v
}

// distance says how far value is from line: as a percentage of the line
// when they are close ("4%"), as a ratio further off ("4.2×", "12×").
func distance(value, line float64) string {
	lo, hi := min(value, line), max(value, line)
	if lo <= 0 || hi/lo >= 1.5 {
		return formatFactor(hi / max(lo, 1e-12))
	}
	return fmt.Sprintf("%.0f%%", 100*(hi-lo)/line)
}

// formatFactor formats a ratio as "4.2×", or "12×" once the decimal stops
// mattering.
func formatFactor(f float64) string {
	if f >= 10 {
		return fmt.Sprintf("%.0f×", f)
	}
	return fmt.Sprintf("%.1f×", f)
}
