package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fioJobSize is the --size of the IBM/etcd fio recipe: 22 MiB of 2,300-byte
// writes, 10,029 fdatasyncs.
const fioJobSize = 22 << 20

// fioAgreement is how close fjord's p50 and p99 must be to fio's on the same
// job for the two to agree.
const fioAgreement = 0.10

// fioRounds is how many times the comparison runs each side. The rounds
// alternate (fjord then fio, then fio then fjord, ...) and each figure is the
// median of its rounds, so a burst of load from a neighbour during one run
// cannot make the two disagree on its own.
const fioRounds = 3

// FioComparison puts fio and fjord side by side on the same etcd job, run in
// alternating rounds on the same filesystem. Fio, Fjord and the IOPS are the
// medians of the rounds, figure by figure; samples are summed.
type FioComparison struct {
	// Command is the fio command line run in each round.
	Command string `json:"command"`
	Version string `json:"fio_version"`
	// Fio is fio's fdatasync latency (jobs[0].sync.lat_ns.percentile);
	// it has no histogram bins.
	Fio       Latency `json:"fio"`
	FioIOPS   float64 `json:"fio_iops"`
	Fjord     Latency `json:"fjord"`
	FjordIOPS float64 `json:"fjord_iops"`
	// P50Diff and P99Diff are fjord's figure relative to fio's:
	// (fjord - fio) / fio.
	P50Diff float64 `json:"p50_diff"`
	P99Diff float64 `json:"p99_diff"`
	// Agree is true when both differences are within ±10%.
	Agree bool `json:"within_10_percent"`
	// Rounds holds each round's figures, without histogram bins.
	Rounds []FioRound `json:"rounds"`
}

// FioRound is one round of the comparison.
type FioRound struct {
	Fio       Latency `json:"fio"`
	FioIOPS   float64 `json:"fio_iops"`
	Fjord     Latency `json:"fjord"`
	FjordIOPS float64 `json:"fjord_iops"`
}

// fioArgs returns the arguments of the IBM/etcd fio recipe writing size
// bytes to path.
func fioArgs(path string, size int64) []string {
	sz := strconv.FormatInt(size, 10)
	if size == fioJobSize {
		sz = "22m" // as the recipe writes it
	}
	return []string{
		"--name=etcd", "--filename=" + path,
		"--rw=write", "--ioengine=sync", "--fdatasync=1",
		"--bs=" + strconv.Itoa(walRecordSize), "--size=" + sz,
		"--output-format=json",
	}
}

// compareFio runs fjord's version of the fio job and fio itself in
// alternating rounds and puts the two side by side.
func compareFio(ctx context.Context, r *diskRun) (*FioComparison, error) {
	bin, err := exec.LookPath(r.opts.Fio)
	if err != nil {
		return nil, fmt.Errorf("%s not found: install fio (apt-get install fio, dnf install fio) or drop --compare-fio: %w", r.opts.Fio, err)
	}
	c := &FioComparison{}
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		c.Version = strings.TrimSpace(string(out))
	}
	path := r.scratch.path("fio-etcd.dat")
	args := fioArgs(path, r.opts.fioSize)
	c.Command = "fio " + strings.Join(args, " ")

	fjordSide := func(round *FioRound) error {
		h, elapsed, err := fjordFioJob(ctx, r, len(c.Rounds))
		if err != nil {
			return err
		}
		round.Fjord = h.Summary()
		round.Fjord.Bins = nil
		round.FjordIOPS = float64(h.Count()) / elapsed.Seconds()
		return nil
	}
	fioSide := func(round *FioRound) error {
		r.scratch.track(path) // fio creates it
		out, err := runFio(ctx, r, bin, args)
		if err != nil {
			return err
		}
		if err := r.scratch.remove(path); err != nil {
			return err
		}
		round.Fio, round.FioIOPS, err = parseFio(out)
		return err
	}
	for i := range fioRounds {
		var round FioRound
		first, second := fjordSide, fioSide
		if i%2 == 1 {
			first, second = fioSide, fjordSide
		}
		if err := first(&round); err != nil {
			return nil, err
		}
		if err := second(&round); err != nil {
			return nil, err
		}
		c.Rounds = append(c.Rounds, round)
	}

	c.Fio, c.FioIOPS = medianRound(c.Rounds, func(r FioRound) (Latency, float64) { return r.Fio, r.FioIOPS })
	c.Fjord, c.FjordIOPS = medianRound(c.Rounds, func(r FioRound) (Latency, float64) { return r.Fjord, r.FjordIOPS })
	c.P50Diff = relDiff(c.Fjord.P50, c.Fio.P50)
	c.P99Diff = relDiff(c.Fjord.P99, c.Fio.P99)
	c.Agree = math.Abs(c.P50Diff) <= fioAgreement && math.Abs(c.P99Diff) <= fioAgreement
	return c, nil
}

// medianRound returns, figure by figure, the median over the rounds of one
// side, with the sample counts summed.
func medianRound(rounds []FioRound, side func(FioRound) (Latency, float64)) (Latency, float64) {
	var l Latency
	var iops []float64
	fields := func(l *Latency) []*time.Duration {
		return []*time.Duration{&l.Min, &l.Mean, &l.P50, &l.P90, &l.P99, &l.P999, &l.Max}
	}
	vals := make([][]time.Duration, len(fields(&l)))
	for _, r := range rounds {
		rl, ri := side(r)
		l.Samples += rl.Samples
		iops = append(iops, ri)
		for i, f := range fields(&rl) {
			vals[i] = append(vals[i], *f)
		}
	}
	for i, f := range fields(&l) {
		slices.Sort(vals[i])
		*f = vals[i][len(vals[i])/2]
	}
	slices.Sort(iops)
	return l, iops[len(iops)/2]
}

// fjordFioJob runs exactly fio's job with fjord's WAL writer: a file
// preallocated to 22 MiB (fio's default fallocate), filled with 2,300-byte
// writes each followed by fdatasync, no warmup, timing the fdatasync system
// call alone between two clock reads, as fio times its sync latency (see
// timedFdatasync).
func fjordFioJob(ctx context.Context, r *diskRun, round int) (*Histogram, time.Duration, error) {
	size := r.opts.fioSize
	l, err := newAppendLog(r.scratch, fmt.Sprintf("fjord-etcd-%d", round), size, walRecordSize, false)
	if err != nil {
		return nil, 0, err
	}
	defer l.discard()
	n := int(size / walRecordSize)
	h := NewHistogram()
	start := time.Now()
	last := start
	for i := range n {
		if ctx.Err() != nil {
			return nil, 0, ctxErr(ctx)
		}
		_, sync, err := l.append()
		if err != nil {
			return nil, 0, err
		}
		h.Record(sync)
		if time.Since(last) >= progressInterval {
			last = time.Now()
			r.say("fio comparison", fmt.Sprintf("fjord: %s of %s fdatasyncs", formatCount(float64(i)), formatCount(float64(n))))
		}
	}
	return h, time.Since(start), l.discard()
}

// runFio runs fio and returns its standard output, reporting progress while
// it runs.
func runFio(ctx context.Context, r *diskRun, bin string, args []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.say("fio comparison", fmt.Sprintf("fio: running for %.0fs", time.Since(start).Seconds()))
			}
		}
	})
	err := cmd.Run()
	close(done)
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctxErr(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// fioOutput is the part of fio's JSON output (--output-format=json) the
// comparison reads.
type fioOutput struct {
	Jobs []struct {
		Error int `json:"error"`
		Write struct {
			IOPS float64 `json:"iops"`
		} `json:"write"`
		Sync struct {
			Lat struct {
				Min        int64            `json:"min"`
				Max        int64            `json:"max"`
				Mean       float64          `json:"mean"`
				N          int64            `json:"N"`
				Percentile map[string]int64 `json:"percentile"`
			} `json:"lat_ns"`
		} `json:"sync"`
	} `json:"jobs"`
}

// parseFio reads the fdatasync latency and the write IOPS of the first job
// from fio's JSON output.
func parseFio(out []byte) (Latency, float64, error) {
	// fio may print warnings before the JSON document.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var o fioOutput
	if err := json.Unmarshal(out, &o); err != nil {
		return Latency{}, 0, fmt.Errorf("parse fio output: %w", err)
	}
	if len(o.Jobs) == 0 {
		return Latency{}, 0, errors.New("parse fio output: no jobs")
	}
	j := o.Jobs[0]
	if j.Error != 0 {
		return Latency{}, 0, fmt.Errorf("fio job failed with error %d", j.Error)
	}
	lat := j.Sync.Lat
	if len(lat.Percentile) == 0 {
		return Latency{}, 0, errors.New("parse fio output: no sync latency percentiles (fio 3.5 or later reports them)")
	}
	pct := func(p string) time.Duration { return time.Duration(lat.Percentile[p]) }
	return Latency{
		Samples: lat.N,
		Min:     time.Duration(lat.Min),
		Mean:    time.Duration(math.Round(lat.Mean)),
		P50:     pct("50.000000"),
		P90:     pct("90.000000"),
		P99:     pct("99.000000"),
		P999:    pct("99.900000"),
		Max:     time.Duration(lat.Max),
	}, j.Write.IOPS, nil
}

// relDiff returns (a - b) / b, or 0 when b is 0.
func relDiff(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a-b) / float64(b)
}
