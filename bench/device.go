package bench

// Device describes where a disk run wrote: the filesystem and its mount, the
// block device beneath as far as /sys tells, and any cgroup I/O limit on it.
// Fields /sys does not provide stay empty and Notes says why.
type Device struct {
	Filesystem string `json:"filesystem"`
	MountPoint string `json:"mount_point"`
	// MountOptions are the per-mount options (rw, noatime, ...),
	// SuperOptions the filesystem's own (discard, data=ordered, ...).
	MountOptions string `json:"mount_options"`
	SuperOptions string `json:"super_options"`
	// Source is what is mounted, such as /dev/nvme0n1p2.
	Source string `json:"source"`
	// BlockDevice is the whole disk's kernel name (nvme0n1, sda, dm-0),
	// Partition the partition's when the filesystem sits on one.
	BlockDevice string `json:"block_device"`
	Partition   string `json:"partition"`
	// Underlying lists the devices beneath a device-mapper or md device.
	Underlying []string `json:"underlying_devices"`
	Model      string   `json:"model"`
	// Rotational is the kernel's rotational flag; nil when unknown.
	Rotational *bool `json:"rotational"`
	// WriteCache is "write back" (a volatile cache that fdatasync must
	// flush) or "write through" (none, or one protected against power
	// loss).
	WriteCache       string `json:"write_cache"`
	Scheduler        string `json:"scheduler"`
	LogicalBlockSize int    `json:"logical_block_size"`
	FreeBytes        uint64 `json:"free_bytes"`
	TotalBytes       uint64 `json:"total_bytes"`
	// IOLimits are the cgroup I/O limits (io.max, blkio.throttle.*) set
	// on this device for this process's cgroup and its ancestors.
	IOLimits []string `json:"io_limits"`
	Kernel   string   `json:"kernel"`
	Notes    []string `json:"notes"`
}
