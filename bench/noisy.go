package bench

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The neighbour: a repo-server's mix of random pack reads and object writes,
// three reads to one write as in GitLab's fio test, each worker with one
// O_DIRECT request in flight.
const (
	neighbourReaders = 6
	neighbourWriters = 2
)

// runNoisy runs the etcd WAL workload again while random reads and writes
// hammer the same disk, and reports how far the WAL's p99 rises above the
// quiet etcd-wal figure of the same run. This is the case of etcd sharing a
// disk with a busy repo-server, which fio's single-job recipe never shows.
func runNoisy(ctx context.Context, r *diskRun) (Result, error) {
	path, err := r.readFile(ctx, WorkloadNoisy)
	if err != nil {
		return Result{}, err
	}
	f, err := openDirect(path, os.O_RDWR)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()

	// The neighbour starts first and runs until the WAL is done, so the
	// WAL's warmup doubles as the neighbour's ramp-up.
	bgCtx, stop := context.WithCancel(ctx)
	defer stop()
	var reads, writes atomic.Int64
	var bgErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i := range neighbourReaders + neighbourWriters {
		write := i >= neighbourReaders
		o, free, err := randomIO(f, r.opts.ReadFileSize, write, uint64(100+i))
		if err != nil {
			stop()
			wg.Wait()
			return Result{}, err
		}
		count := &reads
		if write {
			count = &writes
		}
		wg.Go(func() {
			defer free()
			for bgCtx.Err() == nil {
				if _, _, err := o(bgCtx); err != nil {
					errOnce.Do(func() { bgErr = err })
					return
				}
				count.Add(1)
			}
		})
	}

	l, err := newAppendLog(r.scratch, "noisy", r.opts.SegmentSize, walRecordSize, true)
	if err != nil {
		stop()
		wg.Wait()
		return Result{}, err
	}
	defer l.discard()
	m, err := r.phase(WorkloadNoisy, walOp(l)).run(ctx)
	stop()
	wg.Wait()
	bgTime := time.Since(start).Seconds()
	if err != nil {
		return Result{}, err
	}
	if bgErr != nil {
		return Result{}, bgErr
	}

	res := result(WorkloadNoisy, "etcd WAL while random reads and writes share the disk", "fdatasync", walRecordSize, 1, m)
	n := &Neighbour{
		Readers:   neighbourReaders,
		Writers:   neighbourWriters,
		ReadIOPS:  float64(reads.Load()) / bgTime,
		WriteIOPS: float64(writes.Load()) / bgTime,
	}
	if base := r.report.Workload(WorkloadEtcdWAL); base != nil && base.Latency.P99 > 0 {
		n.BaselineP99 = base.Latency.P99
		n.P99Rise = float64(res.Latency.P99) / float64(base.Latency.P99)
	}
	res.Neighbour = n
	return res, l.discard()
}
