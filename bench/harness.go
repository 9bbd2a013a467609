package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Progress reports how far a run has come. A run calls its progress function
// from one goroutine at a time, a few times a second.
type Progress struct {
	// Step is the workload running, or what is being prepared.
	Step string
	// N and Total place the step in the run: step N of Total, from 1.
	// Total is zero for work outside the numbered steps.
	N, Total int
	// Elapsed and Duration are the time spent in the step and the time it
	// will take; Duration is zero when unknown.
	Elapsed, Duration time.Duration
	// Warmup is true while samples are still being thrown away.
	Warmup bool
	// Ops counts the operations measured so far in the step.
	Ops int64
	// Detail says what is happening when there is no operation count.
	Detail string
}

// String formats p as one short status line.
func (p Progress) String() string {
	s := p.Step
	if p.Total > 0 {
		s = fmt.Sprintf("[%d/%d] %s", p.N, p.Total, p.Step)
	}
	if p.Duration > 0 {
		s += fmt.Sprintf(" %.1fs/%.0fs", p.Elapsed.Seconds(), p.Duration.Seconds())
	}
	switch {
	case p.Detail != "":
		s += " " + p.Detail
	case p.Warmup:
		s += " warming up"
	default:
		s += fmt.Sprintf(" %s ops", formatCount(float64(p.Ops)))
	}
	return s
}

// op performs one operation of a workload and returns the latency to record
// and the bytes it moved. Each worker owns its op and the state it closes
// over, so an op needs no locking.
type op func(ctx context.Context) (time.Duration, int64, error)

// phase is one measured workload: every op runs in its own goroutine, in a
// loop, for warmup plus duration. Operations that start during the warmup are
// performed but not recorded.
type phase struct {
	step             Progress // Step, N and Total for progress reports
	warmup, duration time.Duration
	ops              []op
	// tolerate makes an op error count against the workload instead of
	// stopping it, for Git operations against a remote server.
	tolerate bool
	progress func(Progress)
}

// measured is what a phase recorded.
type measured struct {
	hist         *Histogram
	ops, bytes   int64
	errors       int64
	firstErr     error
	elapsed      time.Duration // from the end of the warmup to the last recorded op
	warmup, wall time.Duration
}

// rate returns n per second of the measured window.
func (m measured) rate(n int64) float64 {
	if m.elapsed <= 0 {
		return 0
	}
	return float64(n) / m.elapsed.Seconds()
}

// worker is one goroutine's share of a phase.
type worker struct {
	hist       *Histogram
	ops, bytes int64
	errors     int64
	firstErr   error
	last       time.Time
}

// run runs the phase. It returns early with ctx's error when ctx is
// cancelled, and with the first op error unless p.tolerate is set.
func (p phase) run(parent context.Context) (measured, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	start := time.Now()
	warmEnd := start.Add(p.warmup)
	end := warmEnd.Add(p.duration)
	var live atomic.Int64

	workers := make([]worker, len(p.ops))
	var wg sync.WaitGroup
	for i, o := range p.ops {
		w := &workers[i]
		w.hist = NewHistogram()
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				// A worker whose every op so far fell in the warmup (one
				// fdatasync can outlast a short run on a busy disk) runs one
				// more, as fio completes at least one I/O per job.
				if !t0.Before(end) && w.ops+w.errors > 0 {
					return
				}
				lat, n, err := o(ctx)
				if ctx.Err() != nil {
					return // the op was cut short; its figures mean nothing
				}
				if err != nil && !p.tolerate {
					cancel(err)
					return
				}
				if t0.Before(warmEnd) {
					continue
				}
				w.last = time.Now()
				if err != nil {
					w.errors++
					if w.firstErr == nil {
						w.firstErr = err
					}
					continue
				}
				w.hist.Record(lat)
				w.ops++
				w.bytes += n
				live.Add(1)
			}
		})
	}

	done := make(chan struct{})
	var reporter sync.WaitGroup
	if p.progress != nil {
		s := p.step
		s.Duration = p.warmup + p.duration
		s.Warmup = p.warmup > 0
		p.progress(s) // at once, so a new step shows before the first tick
		reporter.Go(func() {
			t := time.NewTicker(progressInterval)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case now := <-t.C:
					s := p.step
					s.Elapsed = now.Sub(start)
					s.Duration = p.warmup + p.duration
					s.Warmup = now.Before(warmEnd)
					s.Ops = live.Load()
					p.progress(s)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	reporter.Wait()

	if parent.Err() != nil {
		return measured{}, ctxErr(parent)
	}
	if err := context.Cause(ctx); err != nil {
		return measured{}, err // the op error that stopped the phase
	}
	m := measured{hist: NewHistogram(), warmup: p.warmup, wall: time.Since(start)}
	var last time.Time
	for i := range workers {
		w := &workers[i]
		m.hist.Merge(w.hist)
		m.ops += w.ops
		m.bytes += w.bytes
		m.errors += w.errors
		if m.firstErr == nil {
			m.firstErr = w.firstErr
		}
		if w.last.After(last) {
			last = w.last
		}
	}
	if last.After(warmEnd) {
		m.elapsed = last.Sub(warmEnd)
	}
	return m, nil
}

// ctxErr returns ctx's error, with its cause when there is a more telling
// one ("context canceled: interrupt signal received"). errors.Is still
// matches context.Canceled and context.DeadlineExceeded.
func ctxErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause != nil && cause != err {
		return fmt.Errorf("%w: %v", err, cause)
	}
	return err
}

// progressInterval is how often a running phase reports progress.
const progressInterval = 250 * time.Millisecond
