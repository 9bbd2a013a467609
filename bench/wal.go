package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// Record sizes of the append workloads.
const (
	// walRecordSize is the write size of the IBM/etcd fio recipe
	// (--bs=2300), the typical size of an etcd WAL entry.
	walRecordSize = 2300
	// seqRecordSize is the block size of OpenShift's sequential
	// fdatasync IOPS guidance.
	seqRecordSize = 8 << 10
)

// appendLog appends fixed-size records to preallocated segment files and
// fdatasyncs after each, as etcd's WAL does: segments are preallocated with
// fallocate, written sequentially, and cut when full. Only the newest
// segment is kept, so a long run holds two segments at most.
type appendLog struct {
	s       *scratch
	prefix  string
	segSize int64
	rec     []byte
	// shared is set when other goroutines must keep running during a
	// flush (the noisy neighbour's): the flush then goes through the
	// runtime's ordinary system call path, which lets go of the P, at
	// the price of a few microseconds of runtime bookkeeping in each
	// figure. Otherwise only the system call is timed, as fio times it.
	shared bool

	f   *os.File
	fd  int // f's descriptor, read once so the timed path holds only the flush
	off int64
	seq int
}

// newAppendLog opens the first segment of a log whose files start with
// prefix. shared says whether goroutines other than the one appending must
// run during its flushes.
func newAppendLog(s *scratch, prefix string, segSize int64, recSize int, shared bool) (*appendLog, error) {
	rec := make([]byte, recSize)
	fillRandom(rec, uint64(recSize))
	l := &appendLog{s: s, prefix: prefix, segSize: segSize, rec: rec, shared: shared}
	if err := l.cut(); err != nil {
		return nil, err
	}
	return l, nil
}

// cut starts a new preallocated segment and removes the previous one.
func (l *appendLog) cut() error {
	name := fmt.Sprintf("%s-%04d.wal", l.prefix, l.seq)
	f, err := l.s.create(name, os.O_WRONLY)
	if err != nil {
		return err
	}
	if err := preallocate(f, l.segSize); err != nil {
		f.Close()
		return fmt.Errorf("preallocate %s: %w", f.Name(), err)
	}
	// etcd makes the new segment's directory entry durable before use.
	if err := syncDir(l.s.dir); err != nil {
		f.Close()
		return err
	}
	if l.f != nil {
		old := l.f.Name()
		if err := l.f.Close(); err != nil {
			f.Close()
			return fmt.Errorf("close %s: %w", old, err)
		}
		if err := l.s.remove(old); err != nil {
			f.Close()
			return err
		}
	}
	l.f, l.fd, l.off = f, int(f.Fd()), 0
	l.seq++
	return nil
}

// append writes one record and fdatasyncs it, returning the time spent in
// write and in fdatasync. Cutting a full segment is not timed: etcd does it
// ahead of time in its file pipeline.
func (l *appendLog) append() (write, sync time.Duration, err error) {
	if l.off+int64(len(l.rec)) > l.segSize {
		if err := l.cut(); err != nil {
			return 0, 0, err
		}
	}
	t0 := time.Now()
	if _, err := l.f.Write(l.rec); err != nil {
		return 0, 0, fmt.Errorf("write %s: %w", l.f.Name(), err)
	}
	write = time.Since(t0)
	if l.shared {
		t1 := time.Now()
		err = fdatasync(l.f)
		sync = time.Since(t1)
	} else {
		sync, err = timedFdatasync(l.fd)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("fdatasync %s: %w", l.f.Name(), err)
	}
	l.off += int64(len(l.rec))
	return write, sync, nil
}

// discard closes and removes the current segment. It is safe to call
// twice.
func (l *appendLog) discard() error {
	if l.f == nil {
		return nil
	}
	name := l.f.Name()
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	return l.s.remove(name)
}

// walOp returns an op that appends one WAL record and reports the
// fdatasync time, which is what etcd's wal_fsync_duration_seconds measures
// and what fio reports as sync latency.
func walOp(l *appendLog) op {
	return func(context.Context) (time.Duration, int64, error) {
		_, sync, err := l.append()
		return sync, int64(len(l.rec)), err
	}
}

// runEtcdWAL measures etcd's WAL pattern on a quiet disk.
func runEtcdWAL(ctx context.Context, r *diskRun) (Result, error) {
	l, err := newAppendLog(r.scratch, "etcd", r.opts.SegmentSize, walRecordSize, false)
	if err != nil {
		return Result{}, err
	}
	defer l.discard()
	m, err := r.phase(WorkloadEtcdWAL, walOp(l)).run(ctx)
	if err != nil {
		return Result{}, err
	}
	return result(WorkloadEtcdWAL, "etcd WAL: 2,300-byte appends, fdatasync after each", "fdatasync", walRecordSize, 1, m), l.discard()
}

// runSeqSync measures sequential 8 KiB writes with an fdatasync after each,
// timing the pair, for the sequential fdatasync IOPS etcd's hardware guide
// asks for.
func runSeqSync(ctx context.Context, r *diskRun) (Result, error) {
	l, err := newAppendLog(r.scratch, "seq", r.opts.SegmentSize, seqRecordSize, false)
	if err != nil {
		return Result{}, err
	}
	defer l.discard()
	o := func(context.Context) (time.Duration, int64, error) {
		w, s, err := l.append()
		return w + s, int64(len(l.rec)), err
	}
	m, err := r.phase(WorkloadSeqSync, o).run(ctx)
	if err != nil {
		return Result{}, err
	}
	return result(WorkloadSeqSync, "sequential 8 KiB writes, fdatasync after each", "write+fdatasync", seqRecordSize, 1, m), l.discard()
}

// fillRandom fills b with pseudo-random bytes from seed, so that storage
// which compresses or deduplicates cannot shortcut the writes.
func fillRandom(b []byte, seed uint64) {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	_, _ = rand.NewChaCha8(s).Read(b) // never fails
}
