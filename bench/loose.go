package bench

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Shape of the loose-object workload.
const (
	// looseObjectSize is a typical compressed loose object: a small
	// source file or tree after zlib.
	looseObjectSize = 2 << 10
	// looseKeep is how many objects the workload keeps on disk; beyond
	// it the oldest is deleted before each write, as gc would, so a
	// fast disk does not fill the directory with millions of files.
	looseKeep = 20_000
	// looseSpace bounds the bytes the kept objects occupy, with a block
	// and an inode's worth of overhead each.
	looseSpace = looseKeep * 8 << 10
)

// looseWriter writes objects the way git writes a loose object: into a
// temporary file in the object's fan-out directory, fsync, rename to the
// final name, fsync the directory.
type looseWriter struct {
	s       *scratch
	objects string
	buf     []byte
	seq     uint64
	kept    []string
}

// write stores one new object and returns the time it took.
func (w *looseWriter) write() (time.Duration, error) {
	if len(w.kept) >= looseKeep {
		if err := w.s.remove(w.kept[0]); err != nil {
			return 0, err
		}
		w.kept = w.kept[1:]
	}
	w.seq++
	binary.LittleEndian.PutUint64(w.buf, w.seq) // a new object each time
	sum := sha1.Sum(w.buf)
	name := hex.EncodeToString(sum[:])
	dir := filepath.Join(w.objects, name[:2])
	final := filepath.Join(dir, name[2:])

	t0 := time.Now()
	if err := w.s.mkdir(dir); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(dir, "tmp_obj_")
	if err != nil {
		return 0, fmt.Errorf("create object in %s: %w", dir, err)
	}
	tmp := f.Name()
	w.s.track(tmp)
	if _, err := f.Write(w.buf); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := fsync(f); err != nil {
		f.Close()
		return 0, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return 0, fmt.Errorf("rename %s: %w", tmp, err)
	}
	w.s.trackRename(tmp, final)
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	lat := time.Since(t0)
	w.kept = append(w.kept, final)
	return lat, nil
}

// runLooseObjects measures git's loose-object write path, which every push
// and every fetch below the unpack limit takes.
func runLooseObjects(ctx context.Context, r *diskRun) (Result, error) {
	w := &looseWriter{s: r.scratch, objects: r.scratch.path("objects"), buf: make([]byte, looseObjectSize)}
	fillRandom(w.buf, looseObjectSize)
	if err := r.scratch.mkdir(w.objects); err != nil {
		return Result{}, err
	}
	o := func(context.Context) (time.Duration, int64, error) {
		lat, err := w.write()
		return lat, looseObjectSize, err
	}
	m, err := r.phase(WorkloadLoose, o).run(ctx)
	if err != nil {
		return Result{}, err
	}
	return result(WorkloadLoose, "git loose objects: temp file, fsync, rename, fsync directory", "object write", looseObjectSize, 1, m), nil
}
