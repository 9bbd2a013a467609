package bench

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data and the metadata needed to read it back to
// stable storage, as etcd's WAL and bbolt do on Linux. os.File.Sync is fsync,
// which also flushes timestamps and measures a different, slower thing.
func fdatasync(f *os.File) error {
	return ignoringEINTR(func() error { return unix.Fdatasync(int(f.Fd())) })
}

// timedFdatasync is fdatasync on fd, timed the way fio times its sync
// latency: a clock read, the system call, a clock read. It enters the kernel
// with RawSyscall, so the Go runtime's bookkeeping around a blocking call
// stays outside the figure: entersyscall and exitsyscall, and, when sysmon
// hands the goroutine's P to another thread during a flush longer than its
// 20 µs tick (always so with GOMAXPROCS=1), winning a P back before the
// second clock read. That overhead is a few microseconds on a 200 µs flush,
// the same direction in every round, and fio has nothing like it. The cost
// is that the goroutine keeps its P for the length of the flush: use it only
// where no other goroutine must run meanwhile.
func timedFdatasync(fd int) (time.Duration, error) {
	for {
		t0 := time.Now()
		_, _, errno := unix.RawSyscall(unix.SYS_FDATASYNC, uintptr(fd), 0, 0)
		d := time.Since(t0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return d, errno
		}
		return d, nil
	}
}

// fsync flushes f's data and all of its metadata, as git does for loose
// objects and directories.
func fsync(f *os.File) error {
	return ignoringEINTR(func() error { return unix.Fsync(int(f.Fd())) })
}

// preallocate reserves size bytes for f and extends it, as etcd does for a
// new WAL segment. Filesystems without fallocate get a sparse extension, the
// same fallback etcd uses.
func preallocate(f *os.File, size int64) error {
	err := ignoringEINTR(func() error { return unix.Fallocate(int(f.Fd()), 0, 0, size) })
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return f.Truncate(size)
	}
	return err
}

// openDirect opens path with O_DIRECT, bypassing the page cache, so reads
// reach the device as they do on a cold cache. Every buffer and offset used
// with the file must be aligned to directIOAlign.
func openDirect(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_DIRECT, 0o600)
	if errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("%w (open %s)", ErrNoDirectIO, path)
	}
	return f, err
}

// directIOAlign is the alignment O_DIRECT needs for buffers, offsets and
// sizes: 4 KiB satisfies both 512-byte and 4 KiB logical sectors.
const directIOAlign = 4096

// alignedBuffer returns n bytes of page-aligned memory for O_DIRECT I/O and a
// function that releases it.
func alignedBuffer(n int) ([]byte, func(), error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: allocate %d-byte aligned buffer: %w", n, err)
	}
	return b, func() { _ = unix.Munmap(b) }, nil
}

// diskSpace returns the bytes an unprivileged user may still write to the
// filesystem holding dir, and its size.
func diskSpace(dir string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("bench: statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// syncDir fsyncs a directory so the entries created or renamed in it are
// durable, as git and etcd do after creating files.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := fsync(d); err != nil {
		d.Close()
		return fmt.Errorf("fsync directory %s: %w", path, err)
	}
	return d.Close()
}

// ignoringEINTR retries fn while a signal interrupts it.
func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// supported reports whether this platform can run the disk benchmarks.
func supported() error { return nil }
