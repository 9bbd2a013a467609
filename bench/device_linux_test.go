package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadMountInfo(t *testing.T) {
	const info = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 259:2 / /var/lib/etcd rw,noatime shared:5 - xfs /dev/nvme0n1p2 rw,attr2,inode64
41 27 259:2 /sub /mnt/with\040space rw - xfs /dev/nvme0n1p2 rw
50 27 0:45 / /data rw - btrfs /dev/sdb rw,ssd
51 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`
	path := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(path, []byte(info), 0o600)
	mounts, err := readMountInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 6 {
		t.Fatalf("%d mounts, want 6", len(mounts))
	}
	m := mounts[2]
	if m.devID != "259:2" || m.point != "/var/lib/etcd" || m.fstype != "xfs" || m.source != "/dev/nvme0n1p2" || m.options != "rw,noatime" || m.superOptions != "rw,attr2,inode64" {
		t.Errorf("optional fields mis-parsed: %+v", m)
	}
	if mounts[3].point != "/mnt/with space" || mounts[3].root != "/sub" {
		t.Errorf("escapes not undone: %+v", mounts[3])
	}

	tests := []struct {
		dev, path, want string
	}{
		{"259:2", "/var/lib/etcd/member", "/var/lib/etcd"}, // by device number
		{"259:2", "/mnt/with space/x", "/mnt/with space"},  // bind mount of the same device
		{"254:0", "/var/lib/etcdfoo", "/"},                 // a prefix that is not a path prefix
		{"0:99", "/data/subvol/x", "/data"},                // btrfs subvolume: anonymous device number
		{"254:0", "/home/me", "/"},
	}
	for _, tt := range tests {
		got, ok := mountFor(mounts, tt.dev, tt.path)
		if !ok || got.point != tt.want {
			t.Errorf("mountFor(%s, %s) = %q, want %q", tt.dev, tt.path, got.point, tt.want)
		}
	}
}

func TestLimitLines(t *testing.T) {
	dir := t.TempDir()
	v2 := filepath.Join(dir, "io.max")
	os.WriteFile(v2, []byte("254:0 rbps=max wbps=max riops=1000 wiops=max\n8:0 rbps=max wbps=max riops=max wiops=max\n254:16 riops=5\n"), 0o600)
	if got := limitLines(v2, "254:0"); len(got) != 1 || !strings.HasSuffix(got[0], "254:0 rbps=max wbps=max riops=1000 wiops=max") {
		t.Errorf("io.max for 254:0: %q", got)
	}
	if got := limitLines(v2, "8:0"); len(got) != 0 {
		t.Errorf("io.max for 8:0 limits nothing, got %q", got)
	}
	v1 := filepath.Join(dir, "blkio.throttle.write_iops_device")
	os.WriteFile(v1, []byte("254:0 300\n"), 0o600)
	if got := limitLines(v1, "254:0"); len(got) != 1 || !strings.Contains(got[0], "write_iops_device: 254:0 300") {
		t.Errorf("blkio for 254:0: %q", got)
	}
}

func TestProbeDeviceOnTheTestDirectory(t *testing.T) {
	d := probeDevice(t.TempDir())
	if d.Filesystem == "" || d.MountPoint == "" || d.TotalBytes == 0 || d.Kernel == "" {
		t.Errorf("probeDevice found too little: %+v", d)
	}
	// Either a block device with its queue facts, or a note saying why not.
	if d.BlockDevice == "" && len(d.Notes) == 0 {
		t.Errorf("no block device and no note: %+v", d)
	}
	if d.BlockDevice != "" && (d.LogicalBlockSize == 0 || d.Rotational == nil) {
		t.Errorf("block device %s without its queue facts: %+v", d.BlockDevice, d)
	}
	if slices.Contains(d.Notes, "") {
		t.Errorf("empty note in %q", d.Notes)
	}
}
