package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// Shape of the random-I/O workloads.
const (
	// randBlockSize is the size of one random read or write: a page, the
	// unit in which git reads a pack through mmap on a cold cache.
	randBlockSize = 4 << 10
	// layoutChunk is the write size used to fill the random-I/O file.
	layoutChunk = 1 << 20
	// readFileName names the random-I/O file in the scratch directory.
	readFileName = "randio.dat"
)

// readFile returns the path of the file random I/O runs against, writing it
// on first use. It is filled with random data, because reading a
// preallocated but unwritten extent returns zeros without touching the
// device, and compressing or deduplicating storage would shortcut zeros.
func (r *diskRun) readFile(ctx context.Context, step string) (string, error) {
	if r.readPath != "" {
		return r.readPath, nil
	}
	path := r.scratch.path(readFileName)
	r.scratch.track(path)
	f, err := openDirect(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf, free, err := alignedBuffer(layoutChunk)
	if err != nil {
		return "", err
	}
	defer free()

	size := r.opts.ReadFileSize
	var seed [32]byte
	rng := rand.NewChaCha8(seed)
	last := time.Now()
	for off := int64(0); off < size; off += layoutChunk {
		if ctx.Err() != nil {
			return "", ctxErr(ctx)
		}
		chunk := buf[:min(layoutChunk, size-off)]
		_, _ = rng.Read(chunk) // never fails
		if _, err := f.WriteAt(chunk, off); err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
		if time.Since(last) >= progressInterval {
			last = time.Now()
			r.say(step, fmt.Sprintf("writing the %s random-I/O file: %s", formatBytes(size), formatBytes(off)))
		}
	}
	if err := fdatasync(f); err != nil {
		return "", fmt.Errorf("fdatasync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", path, err)
	}
	r.readPath = path
	return path, nil
}

// randomIO returns an op that reads or writes one aligned 4 KiB block at a
// uniformly random offset of f, and a function releasing its buffer. Each
// worker gets its own op, buffer and random source.
func randomIO(f *os.File, size int64, write bool, seed uint64) (op, func(), error) {
	buf, free, err := alignedBuffer(randBlockSize)
	if err != nil {
		return nil, nil, err
	}
	fillRandom(buf, seed)
	rng := rand.New(rand.NewPCG(seed, uint64(size)))
	blocks := size / randBlockSize
	o := func(context.Context) (time.Duration, int64, error) {
		off := rng.Int64N(blocks) * randBlockSize
		t0 := time.Now()
		var err error
		if write {
			_, err = f.WriteAt(buf, off)
		} else {
			_, err = f.ReadAt(buf, off)
		}
		lat := time.Since(t0)
		if err != nil {
			return 0, 0, fmt.Errorf("%s at offset %d: %w", f.Name(), off, err)
		}
		return lat, randBlockSize, nil
	}
	return o, free, nil
}

// runRandom measures 4 KiB random reads or writes with O_DIRECT at queue
// depth qd, kept by qd workers each with one synchronous request in flight
// (fio: --ioengine=psync --direct=1 --numjobs=qd). Reads stand for pack
// reads on a cold cache; writes carry no fsync, like GitLab's fio test.
func runRandom(ctx context.Context, r *diskRun, name string, write bool, qd int) (Result, error) {
	path, err := r.readFile(ctx, name)
	if err != nil {
		return Result{}, err
	}
	f, err := openDirect(path, os.O_RDWR)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	ops := make([]op, qd)
	for i := range ops {
		o, free, err := randomIO(f, r.opts.ReadFileSize, write, uint64(i+1))
		if err != nil {
			return Result{}, err
		}
		defer free()
		ops[i] = o
	}
	m, err := r.phase(name, ops...).run(ctx)
	if err != nil {
		return Result{}, err
	}
	verb, measures := "reads", "pread"
	if write {
		verb, measures = "writes", "pwrite"
	}
	title := fmt.Sprintf("4 KiB random %s, O_DIRECT, queue depth %d", verb, qd)
	return result(name, title, measures, randBlockSize, qd, m), nil
}
