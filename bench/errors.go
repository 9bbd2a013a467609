package bench

import "errors"

// Errors a disk run returns before or instead of measuring. Callers branch on
// them with errors.Is; the wrapped message names the directory and the fix.
var (
	// ErrLowSpace means the filesystem has less than twice the space the
	// run would write. The run refuses before creating any file.
	ErrLowSpace = errors.New("bench: not enough free space")

	// ErrNoDirectIO means the filesystem refuses O_DIRECT (tmpfs, older
	// ZFS), so random reads would be served from the page cache.
	ErrNoDirectIO = errors.New("bench: filesystem does not support O_DIRECT")

	// ErrUnsupportedOS means the disk benchmarks need Linux syscalls
	// (fdatasync, O_DIRECT, fallocate) this platform lacks.
	ErrUnsupportedOS = errors.New("bench: disk benchmarks need Linux")
)
