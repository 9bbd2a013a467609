package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Names of the disk workloads, in the order a run performs them. They are
// stable: reports, verdicts and --workload use them.
const (
	WorkloadEtcdWAL   = "etcd-wal"
	WorkloadSeqSync   = "seq-8k-fdatasync"
	WorkloadBolt      = "bbolt-commit"
	WorkloadLoose     = "git-loose-objects"
	WorkloadReadQD1   = "randread-4k-qd1"
	WorkloadReadQD16  = "randread-4k-qd16"
	WorkloadWriteQD16 = "randwrite-4k-qd16"
	WorkloadNoisy     = "etcd-wal-noisy-neighbour"
)

// DiskOptions configures a disk run. Only Dir is required; every other zero
// value picks the default its comment names.
type DiskOptions struct {
	// Dir is a directory on the filesystem to measure. The run works in a
	// fresh subdirectory and removes everything it created.
	Dir string

	// MakeDir creates Dir, and any missing parents, when it does not
	// exist, on the filesystem of its nearest existing parent, and removes
	// what it created when the run ends. False refuses a missing Dir.
	MakeDir bool

	// Duration is how long each workload is measured, after its warmup.
	// Zero means 10s.
	Duration time.Duration

	// Warmup is how long each workload runs before samples count. Zero
	// means a tenth of Duration, at most one second; negative means none.
	Warmup time.Duration

	// Workloads selects workloads by name. Nil means all of them.
	Workloads []string

	// SegmentSize is the size of a preallocated WAL segment. Zero means
	// 64 MiB, etcd's segment size.
	SegmentSize int64

	// ReadFileSize is the size of the file random I/O runs against. Zero
	// means 1 GiB; make it larger than the device's own cache for honest
	// cold-cache figures. It is rounded up to a multiple of 4 KiB.
	ReadFileSize int64

	// CompareFio runs the etcd fio job (see FioJob) alongside fjord's own
	// identical job and reports both.
	CompareFio bool

	// Fio is the fio binary. Empty means "fio" from PATH.
	Fio string

	// Progress, if set, receives progress reports. It is called from one
	// goroutine at a time.
	Progress func(Progress)

	// fioSize replaces the fio job's 22 MiB in tests; zero means 22 MiB.
	fioSize int64
}

// Defaults applied by DiskOptions.
const (
	defaultDuration     = 10 * time.Second
	maxDefaultWarmup    = time.Second
	defaultSegmentSize  = 64 << 20
	defaultReadFileSize = 1 << 30
)

// withDefaults returns o with zero values replaced and checks the rest.
func (o DiskOptions) withDefaults() (DiskOptions, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("bench: no directory given: name one on the disk to measure")
	}
	if o.Duration <= 0 {
		o.Duration = defaultDuration
	}
	switch {
	case o.Warmup == 0:
		o.Warmup = min(o.Duration/10, maxDefaultWarmup)
	case o.Warmup < 0:
		o.Warmup = 0
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = defaultSegmentSize
	}
	if o.ReadFileSize <= 0 {
		o.ReadFileSize = defaultReadFileSize
	}
	o.ReadFileSize = (o.ReadFileSize + directIOAlign - 1) / directIOAlign * directIOAlign
	if o.Fio == "" {
		o.Fio = "fio"
	}
	if o.fioSize <= 0 {
		o.fioSize = fioJobSize
	}
	all := WorkloadNames()
	for _, w := range o.Workloads {
		if !slices.Contains(all, w) {
			return o, fmt.Errorf("bench: unknown workload %q: choose from %s", w, strings.Join(all, ", "))
		}
	}
	if o.Workloads == nil {
		o.Workloads = all
	}
	return o, nil
}

// spaceNeeded returns the most bytes the run holds on disk at once.
func (o DiskOptions) spaceNeeded() int64 {
	var n int64
	for _, w := range o.Workloads {
		switch w {
		case WorkloadEtcdWAL, WorkloadSeqSync:
			n += 2 * o.SegmentSize // the segment being written and the next one
		case WorkloadBolt:
			n += boltSpace
		case WorkloadLoose:
			n += looseSpace
		case WorkloadNoisy:
			n += 2 * o.SegmentSize
		}
	}
	if o.needsReadFile() {
		n += o.ReadFileSize
	}
	if o.CompareFio {
		n += 2 * o.fioSize
	}
	return n
}

// needsReadFile reports whether a selected workload does random I/O.
func (o DiskOptions) needsReadFile() bool {
	for _, w := range o.Workloads {
		switch w {
		case WorkloadReadQD1, WorkloadReadQD16, WorkloadWriteQD16, WorkloadNoisy:
			return true
		}
	}
	return false
}

// WorkloadNames returns the names of the disk workloads in run order.
func WorkloadNames() []string {
	return []string{
		WorkloadEtcdWAL, WorkloadSeqSync, WorkloadBolt, WorkloadLoose,
		WorkloadReadQD1, WorkloadReadQD16, WorkloadWriteQD16, WorkloadNoisy,
	}
}

// DiskSchema names the version of the DiskReport JSON layout. It changes only
// when a field is removed or changes meaning; new fields may appear within a
// version.
const DiskSchema = "fjord.bench.disk/v1"

// DiskReport is the outcome of a disk run. Its JSON form is the stable
// schema DiskSchema: durations are integer nanoseconds ("_ns"), rates are
// per second, sizes are bytes.
type DiskReport struct {
	Schema   string        `json:"schema"`
	Started  time.Time     `json:"started"`
	Host     string        `json:"host"`
	Dir      string        `json:"dir"`
	Duration time.Duration `json:"duration_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
	// Device describes the filesystem and block device under Dir.
	Device Device `json:"device"`
	// Workloads holds one result per workload run, in run order.
	Workloads []Result `json:"workloads"`
	// Verdicts judges the results against published thresholds.
	Verdicts []Verdict `json:"verdicts"`
	// Fio compares fjord with fio on the same etcd job; nil unless asked.
	Fio *FioComparison `json:"fio,omitempty"`
	// Notes are caveats about this run for the operator.
	Notes []string `json:"notes"`
}

// Workload returns the result named name, or nil.
func (r *DiskReport) Workload(name string) *Result {
	for i := range r.Workloads {
		if r.Workloads[i].Name == name {
			return &r.Workloads[i]
		}
	}
	return nil
}

// Result is what one workload measured.
type Result struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Measures says what one latency sample spans, such as "fdatasync"
	// or "write+fdatasync".
	Measures   string `json:"measures"`
	BlockSize  int    `json:"block_size_bytes"`
	QueueDepth int    `json:"queue_depth"`
	// Elapsed is the measured window, after the warmup.
	Elapsed time.Duration `json:"elapsed_ns"`
	Ops     int64         `json:"ops"`
	Bytes   int64         `json:"bytes"`
	IOPS    float64       `json:"iops"`
	// MBps is throughput in megabytes (10^6 bytes) per second.
	MBps    float64 `json:"mb_per_s"`
	Latency Latency `json:"latency"`
	// Neighbour describes the background load of the noisy-neighbour
	// workload; nil for the others.
	Neighbour *Neighbour `json:"neighbour,omitempty"`
}

// Neighbour is the background load the noisy-neighbour workload runs on the
// same disk, and what it did to the WAL's tail latency.
type Neighbour struct {
	Readers   int     `json:"readers"`
	Writers   int     `json:"writers"`
	ReadIOPS  float64 `json:"read_iops"`
	WriteIOPS float64 `json:"write_iops"`
	// BaselineP99 is the etcd-wal workload's p99 in the same run, on a
	// quiet disk; zero when it was not run.
	BaselineP99 time.Duration `json:"baseline_p99_ns"`
	// P99Rise is the p99 under load divided by BaselineP99; zero when
	// there is no baseline.
	P99Rise float64 `json:"p99_rise"`
}

// result fills a Result from a phase's measurement.
func result(name, title, measures string, blockSize, qd int, m measured) Result {
	return Result{
		Name: name, Title: title, Measures: measures,
		BlockSize: blockSize, QueueDepth: qd,
		Elapsed: m.elapsed, Ops: m.ops, Bytes: m.bytes,
		IOPS: m.rate(m.ops), MBps: m.rate(m.bytes) / 1e6,
		Latency: m.hist.Summary(),
	}
}

// diskRun is the state of one RunDisk call.
type diskRun struct {
	opts     DiskOptions
	scratch  *scratch
	report   *DiskReport
	readPath string // the random-I/O file, once written
	n, total int    // current step, for progress
}

// phase returns a phase for the current step with the run's timing.
func (r *diskRun) phase(step string, ops ...op) phase {
	return phase{
		step:     Progress{Step: step, N: r.n, Total: r.total},
		warmup:   r.opts.Warmup,
		duration: r.opts.Duration,
		ops:      ops,
		progress: r.opts.Progress,
	}
}

// say reports progress that has no operation count.
func (r *diskRun) say(step, detail string) {
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Step: step, N: r.n, Total: r.total, Detail: detail})
	}
}

// RunDisk measures the filesystem under opts.Dir with etcd, bbolt, Git and
// random-I/O workloads and judges the results. It refuses with ErrLowSpace
// before writing anything when the filesystem has less than twice the space
// the run needs, and it removes every file it created before returning,
// whether it succeeds, fails or ctx is cancelled.
func RunDisk(ctx context.Context, opts DiskOptions) (rep *DiskReport, err error) {
	if err := supported(); err != nil {
		return nil, err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	made, err := ensureDir(o.Dir, o.MakeDir)
	if err != nil {
		return nil, err
	}
	// Registered before the scratch directory's cleanup, so it runs after
	// it, when the directories it removes are empty again.
	defer func() {
		if rerr := removeMade(made); rerr != nil {
			rep, err = nil, errors.Join(err, rerr)
		}
	}()
	free, _, err := diskSpace(o.Dir)
	if err != nil {
		return nil, err
	}
	if need := o.spaceNeeded(); free < 2*uint64(need) {
		return nil, fmt.Errorf("%w: %s has %s free; the run writes up to %s and wants twice that free so others keep room: free space there, measure another directory on the same disk, or shrink the random-I/O file",
			ErrLowSpace, o.Dir, formatBytes(int64(free)), formatBytes(need))
	}

	host, _ := os.Hostname()
	rep = &DiskReport{
		Schema:   DiskSchema,
		Started:  time.Now().UTC().Truncate(time.Second),
		Host:     host,
		Dir:      o.Dir,
		Duration: o.Duration,
		Warmup:   o.Warmup,
		Device:   probeDevice(o.Dir),
	}
	if len(made) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s did not exist: --mkdir created %s under the existing %s for this run and removed it afterwards",
			o.Dir, strings.Join(made, ", "), filepath.Dir(made[0])))
	}

	s, err := newScratch(o.Dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.cleanup(); cerr != nil {
			rep, err = nil, errors.Join(err, cerr)
		}
	}()

	r := &diskRun{opts: o, scratch: s, report: rep, total: len(o.Workloads)}
	if o.CompareFio {
		r.total++
	}
	for _, w := range diskWorkloads() {
		if !slices.Contains(o.Workloads, w.name) {
			continue
		}
		r.n++
		res, err := w.run(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", w.name, err)
		}
		rep.Workloads = append(rep.Workloads, res)
	}
	if o.CompareFio {
		r.n++
		cmp, err := compareFio(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("bench: fio comparison: %w", err)
		}
		rep.Fio = cmp
	}
	rep.Verdicts = Judge(rep)
	rep.Notes = append(rep.Notes, sampleNotes(rep)...)
	return rep, nil
}

// workload is one entry of the disk run.
type workload struct {
	name string
	run  func(ctx context.Context, r *diskRun) (Result, error)
}

// diskWorkloads lists the workloads in run order: the quiet measurements
// first, the random-I/O file written once before the workloads that need it,
// and the noisy neighbour last so its baseline exists.
func diskWorkloads() []workload {
	return []workload{
		{WorkloadEtcdWAL, runEtcdWAL},
		{WorkloadSeqSync, runSeqSync},
		{WorkloadBolt, runBoltCommit},
		{WorkloadLoose, runLooseObjects},
		{WorkloadReadQD1, func(ctx context.Context, r *diskRun) (Result, error) {
			return runRandom(ctx, r, WorkloadReadQD1, false, 1)
		}},
		{WorkloadReadQD16, func(ctx context.Context, r *diskRun) (Result, error) {
			return runRandom(ctx, r, WorkloadReadQD16, false, 16)
		}},
		{WorkloadWriteQD16, func(ctx context.Context, r *diskRun) (Result, error) {
			return runRandom(ctx, r, WorkloadWriteQD16, true, 16)
		}},
		{WorkloadNoisy, runNoisy},
	}
}

// tailSamples is the sample count below which p99.9 rests on fewer than ten
// samples above it and should be read as a rough figure.
const tailSamples = 10_000

// sampleNotes warns about workloads whose tail percentiles rest on few
// samples.
func sampleNotes(rep *DiskReport) []string {
	var notes []string
	for _, w := range rep.Workloads {
		if w.Latency.Samples < tailSamples {
			notes = append(notes, fmt.Sprintf("%s: p99.9 rests on %s samples (fewer than %s); run longer with --duration for a stable tail",
				w.Name, formatCount(float64(w.Latency.Samples)), formatCount(tailSamples)))
		}
	}
	return notes
}
