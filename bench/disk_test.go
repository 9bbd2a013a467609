//go:build linux

package bench_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fjordhq/fjord/bench"
)

// TestMain lets the test binary act as the child of TestRunDiskCleansUpOnSIGINT.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(sigintChild(dir))
	}
	os.Exit(m.Run())
}

// tinyOptions returns options that run a workload in a fraction of a second:
// a 10 ms warmup, 100 ms measured, 256 KiB WAL segments so they are cut
// during the run, and a 2 MiB random-I/O file.
func tinyOptions(dir string) bench.DiskOptions {
	return bench.DiskOptions{
		Dir:          dir,
		Duration:     100 * time.Millisecond,
		Warmup:       10 * time.Millisecond,
		SegmentSize:  256 << 10,
		ReadFileSize: 2 << 20,
	}
}

// measureDir returns a fresh directory holding one file the benchmark did
// not create, and a check that the directory holds exactly that file,
// unchanged, and nothing else.
func measureDir(t *testing.T) (string, func()) {
	t.Helper()
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep.me")
	if err := os.WriteFile(keep, []byte("the operator's file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, func() {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"keep.me"}) {
			t.Errorf("%s holds %v after the run, want only keep.me", dir, names)
		}
		if b, err := os.ReadFile(keep); err != nil || string(b) != "the operator's file\n" {
			t.Errorf("keep.me changed: %q, %v", b, err)
		}
	}
}

// directIO reports whether dir's filesystem supports O_DIRECT, by running
// the smallest random-read workload on it.
func directIO(t *testing.T, dir string) bool {
	t.Helper()
	o := tinyOptions(dir)
	o.Duration = time.Millisecond
	o.Workloads = []string{bench.WorkloadReadQD1}
	_, err := bench.RunDisk(context.Background(), o)
	if errors.Is(err, bench.ErrNoDirectIO) {
		t.Logf("%s does not support O_DIRECT; random-I/O workloads are skipped: %v", dir, err)
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// workloadsFor returns every workload, without the random-I/O ones when the
// filesystem cannot run them.
func workloadsFor(t *testing.T, dir string) []string {
	all := bench.WorkloadNames()
	if directIO(t, dir) {
		return all
	}
	return slices.DeleteFunc(all, func(w string) bool {
		return strings.HasPrefix(w, "rand") || w == bench.WorkloadNoisy
	})
}

func TestRunDiskEndToEnd(t *testing.T) {
	dir, check := measureDir(t)
	o := tinyOptions(dir)
	o.Workloads = workloadsFor(t, dir)
	var mu sync.Mutex
	steps := map[string]bool{}
	o.Progress = func(p bench.Progress) {
		mu.Lock()
		defer mu.Unlock()
		steps[p.Step] = true
		if p.Total != len(o.Workloads) || p.N < 1 || p.N > p.Total {
			t.Errorf("progress %+v out of range", p)
		}
	}
	rep, err := bench.RunDisk(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	check()

	var names []string
	for _, w := range rep.Workloads {
		names = append(names, w.Name)
		l := w.Latency
		if l.Samples == 0 || w.Ops != l.Samples || w.IOPS <= 0 || w.Bytes <= 0 || w.MBps <= 0 || w.Elapsed <= 0 {
			t.Errorf("%s: nothing measured: %+v", w.Name, w)
			continue
		}
		if !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
			t.Errorf("%s: percentiles out of order: %+v", w.Name, l)
		}
		var inBins int64
		for _, b := range l.Bins {
			inBins += b.Count
		}
		if inBins != l.Samples {
			t.Errorf("%s: histogram holds %d samples, want %d", w.Name, inBins, l.Samples)
		}
		if w.Title == "" || w.Measures == "" || w.BlockSize == 0 || w.QueueDepth == 0 {
			t.Errorf("%s: undescribed result %+v", w.Name, w)
		}
		if !steps[w.Name] {
			t.Errorf("%s: no progress reported", w.Name)
		}
	}
	if !slices.Equal(names, o.Workloads) {
		t.Errorf("workloads %v, want %v", names, o.Workloads)
	}
	if qd16 := rep.Workload(bench.WorkloadReadQD16); qd16 != nil && qd16.QueueDepth != 16 {
		t.Errorf("%s queue depth %d", qd16.Name, qd16.QueueDepth)
	}
	if n := rep.Workload(bench.WorkloadNoisy); n != nil {
		nb := n.Neighbour
		base := rep.Workload(bench.WorkloadEtcdWAL)
		if nb == nil || nb.ReadIOPS <= 0 || nb.WriteIOPS <= 0 || nb.BaselineP99 != base.Latency.P99 || nb.P99Rise <= 0 {
			t.Errorf("noisy neighbour not measured: %+v", nb)
		}
	}
	if len(rep.Verdicts) != len(bench.Judge(rep)) || len(rep.Verdicts) < 3 {
		t.Errorf("verdicts %+v", rep.Verdicts)
	}
	if rep.Schema != bench.DiskSchema || rep.Device.Filesystem == "" || rep.Device.MountPoint == "" || rep.Device.TotalBytes == 0 {
		t.Errorf("report header incomplete: schema %q device %+v", rep.Schema, rep.Device)
	}

	// Every key a real run emits is in the documented schema.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "disk-report.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	documented := keyPaths(t, golden)
	for _, k := range keyPaths(t, b) {
		if !slices.Contains(documented, k) {
			t.Errorf("a run emits %s, which testdata/disk-report.golden.json does not document", k)
		}
	}

	// The text report names every workload and verdict.
	var text strings.Builder
	if err := bench.WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	for _, w := range rep.Workloads {
		if !strings.Contains(text.String(), w.Name) {
			t.Errorf("text report lacks %s:\n%s", w.Name, text.String())
		}
	}
	for _, v := range rep.Verdicts {
		if !strings.Contains(text.String(), v.Summary) {
			t.Errorf("text report lacks verdict %q", v.Summary)
		}
	}
}

func TestRunDiskRefusesLowSpace(t *testing.T) {
	dir, check := measureDir(t)
	o := tinyOptions(dir)
	o.ReadFileSize = 1 << 50 // 1 PiB: more than any test machine has free
	_, err := bench.RunDisk(context.Background(), o)
	if !errors.Is(err, bench.ErrLowSpace) {
		t.Fatalf("err = %v, want ErrLowSpace", err)
	}
	for _, want := range []string{dir, "free", "1.00 PiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	check() // refused before creating anything
}

func TestRunDiskRejectsBadInput(t *testing.T) {
	dir, check := measureDir(t)
	defer check()
	tests := []struct {
		name string
		o    bench.DiskOptions
		want string
	}{
		{"no dir", bench.DiskOptions{}, "no directory"},
		{"missing dir", bench.DiskOptions{Dir: filepath.Join(dir, "nope", "etcd")}, "does not exist (its nearest existing parent is " + dir + "): create it on the disk you want to measure, or pass --mkdir"},
		{"file", bench.DiskOptions{Dir: filepath.Join(dir, "keep.me")}, "not a directory"},
		{"unknown workload", bench.DiskOptions{Dir: dir, Workloads: []string{"etcd"}}, "choose from etcd-wal, seq-8k-fdatasync"},
	}
	for _, tt := range tests {
		_, err := bench.RunDisk(context.Background(), tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

func TestRunDiskMakeDirCreatesUnderTheExistingParentAndRemovesIt(t *testing.T) {
	dir, check := measureDir(t)
	o := tinyOptions(filepath.Join(dir, "var", "lib", "etcd"))
	o.Workloads = []string{bench.WorkloadEtcdWAL}
	o.MakeDir = true
	rep, err := bench.RunDisk(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Dir != o.Dir || len(rep.Workloads) != 1 || rep.Workloads[0].Ops == 0 {
		t.Errorf("report %+v", rep)
	}
	want := fmt.Sprintf("--mkdir created %s, %s, %s under the existing %s", filepath.Join(dir, "var"), filepath.Join(dir, "var", "lib"), o.Dir, dir)
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, want) }) {
		t.Errorf("notes %q lack %q", rep.Notes, want)
	}
	check() // var/lib/etcd is gone again

	// A directory that appears in the created tree meanwhile is kept,
	// and the error says what to look at.
	o.Progress = func(bench.Progress) { _ = os.MkdirAll(filepath.Join(o.Dir, "..", "theirs"), 0o755) }
	_, err = bench.RunDisk(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "remove the directories --mkdir created") {
		t.Errorf("err = %v, want it to name the directories left", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, "var", "lib", "theirs")); serr != nil {
		t.Errorf("a directory someone else made was removed: %v", serr)
	}
}

func TestRunDiskCleansUpOnCancel(t *testing.T) {
	dir0 := t.TempDir()
	for _, w := range workloadsFor(t, dir0) {
		t.Run(w, func(t *testing.T) {
			dir, check := measureDir(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := tinyOptions(dir)
			o.Workloads = []string{w}
			o.Duration = time.Minute // only the cancellation ends it
			o.Progress = func(p bench.Progress) {
				if p.Step == w && p.Ops > 0 {
					cancel()
				}
			}
			rep, err := bench.RunDisk(ctx, o)
			if !errors.Is(err, context.Canceled) || rep != nil {
				t.Fatalf("RunDisk = %v, %v; want context.Canceled", rep, err)
			}
			check()
		})
	}
	if directIO(t, dir0) {
		t.Run("while writing the random-I/O file", func(t *testing.T) {
			dir, check := measureDir(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := tinyOptions(dir)
			o.Workloads = []string{bench.WorkloadReadQD1}
			o.ReadFileSize = 4 << 30 // takes seconds to write; cancelled long before
			o.Progress = func(p bench.Progress) {
				if p.Detail != "" {
					cancel()
				}
			}
			if _, err := bench.RunDisk(ctx, o); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			check()
		})
	}
}

// childDirEnv names the directory the SIGINT child measures.
const childDirEnv = "FJORD_BENCH_SIGINT_CHILD_DIR"

// sigintChild is the child process of TestRunDiskCleansUpOnSIGINT: it
// handles SIGINT the way cmd/fjord does, says when it is measuring, and
// exits 0 once the interrupted run has returned context.Canceled.
func sigintChild(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := tinyOptions(dir)
	o.Workloads = []string{bench.WorkloadLoose}
	o.Duration = time.Minute
	var once sync.Once
	o.Progress = func(p bench.Progress) {
		if p.Ops > 0 {
			once.Do(func() { fmt.Println("measuring") })
		}
	}
	_, err := bench.RunDisk(ctx, o)
	fmt.Println("returned:", err)
	if !errors.Is(err, context.Canceled) {
		return 1
	}
	return 0
}

func TestRunDiskCleansUpOnSIGINT(t *testing.T) {
	dir, check := measureDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "measuring" {
		t.Fatalf("child said %q before measuring", sc.Text())
	}
	// The child is writing loose objects: thousands of files.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; said %q", err, rest)
	}
	if len(rest) != 1 || !strings.Contains(rest[0], "context canceled") {
		t.Errorf("child said %q, want it to report the cancellation", rest)
	}
	check()
}

// keyPaths returns the paths of every object key in a JSON document, with
// array elements written as [], such as "workloads[].latency.p99_ns".
func keyPaths(t *testing.T, doc []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				out = append(out, p)
				walk(p, e)
			}
		case []any:
			for _, e := range v {
				walk(prefix+"[]", e)
			}
		}
	}
	walk("", v)
	slices.Sort(out)
	return slices.Compact(out)
}

func TestRunDiskComparesWithFio(t *testing.T) {
	if _, err := exec.LookPath("fio"); err != nil {
		t.Skip("fio not installed (make bench-compare installs it)")
	}
	dir, check := measureDir(t)
	o := tinyOptions(dir)
	o.Workloads = []string{bench.WorkloadEtcdWAL}
	o.CompareFio = true
	// 1 MiB instead of the recipe's 22: 455 fdatasyncs per side and round.
	bench.SetFioJobSize(&o, 1<<20)
	rep, err := bench.RunDisk(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	check()
	c := rep.Fio
	if c == nil {
		t.Fatal("no fio comparison in the report")
	}
	// Both sides ran the whole job in every round: 1 MiB of 2,300-byte
	// writes is 455 fdatasyncs.
	if len(c.Rounds) != 3 || c.Fio.Samples != 3*455 || c.Fjord.Samples != 3*455 {
		t.Errorf("rounds %d, samples fio %d fjord %d; want 3 rounds of 455 each", len(c.Rounds), c.Fio.Samples, c.Fjord.Samples)
	}
	// Medians are taken figure by figure, and fio reports a percentile
	// as its bucket's value, so p99.9 may pass max: not compared.
	for _, l := range []bench.Latency{c.Fio, c.Fjord} {
		if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.Max > 0) {
			t.Errorf("percentiles out of order: %+v", l)
		}
	}
	if c.FioIOPS <= 0 || c.FjordIOPS <= 0 || !strings.Contains(c.Command, "--rw=write --ioengine=sync --fdatasync=1 --bs=2300 --size=1048576") || !strings.HasPrefix(c.Version, "fio-") {
		t.Errorf("comparison %+v", c)
	}
	// Agreement within ±10% is a property of the disk and the machine's
	// load, not of the code; it is reported, not asserted (see make
	// bench-compare).
	t.Logf("fio p50 %v p99 %v, fjord p50 %v p99 %v (%+.1f%%, %+.1f%%)", c.Fio.P50, c.Fio.P99, c.Fjord.P50, c.Fjord.P99, 100*c.P50Diff, 100*c.P99Diff)
}
