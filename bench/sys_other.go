//go:build !linux

package bench

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

// The disk benchmarks measure Linux syscalls; elsewhere every entry point
// returns ErrUnsupportedOS before touching the disk.

func fdatasync(f *os.File) error { return ErrUnsupportedOS }
func fsync(f *os.File) error     { return ErrUnsupportedOS }
func timedFdatasync(fd int) (time.Duration, error) {
	return 0, ErrUnsupportedOS
}
func preallocate(f *os.File, size int64) error { return ErrUnsupportedOS }
func openDirect(path string, flag int) (*os.File, error) {
	return nil, ErrUnsupportedOS
}

const directIOAlign = 4096

func alignedBuffer(n int) ([]byte, func(), error) { return nil, nil, ErrUnsupportedOS }
func diskSpace(dir string) (free, total uint64, err error) {
	return 0, 0, ErrUnsupportedOS
}
func syncDir(path string) error { return ErrUnsupportedOS }

func supported() error {
	return fmt.Errorf("%w, not %s", ErrUnsupportedOS, runtime.GOOS)
}
