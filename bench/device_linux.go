package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// probeDevice gathers what /proc and /sys say about the storage under dir.
// It never fails: whatever it cannot learn is left empty and noted.
func probeDevice(dir string) Device {
	var d Device
	note := func(format string, args ...any) { d.Notes = append(d.Notes, fmt.Sprintf(format, args...)) }

	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		d.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	if free, total, err := diskSpace(dir); err == nil {
		d.FreeBytes, d.TotalBytes = free, total
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		note("stat %s: %v", abs, err)
		return d
	}
	devID := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))

	mounts, err := readMountInfo("/proc/self/mountinfo")
	if err != nil {
		note("read mount table: %v", err)
		return d
	}
	if m, ok := mountFor(mounts, devID, abs); ok {
		d.Filesystem, d.MountPoint, d.Source = m.fstype, m.point, m.source
		d.MountOptions, d.SuperOptions = m.options, m.superOptions
	}

	switch d.Filesystem {
	case "tmpfs", "ramfs":
		note("%s is %s, which lives in memory: these figures say nothing about a disk", d.MountPoint, d.Filesystem)
	case "overlay":
		note("%s is an overlay (a container's root?): mount a volume from the disk you mean to measure", d.MountPoint)
	case "nfs", "nfs4", "cifs", "smb3", "fuse.sshfs":
		note("%s is a network filesystem (%s): its latency is the network's and the server's", d.MountPoint, d.Filesystem)
	}
	sys := blockDir(devID, d.Source)
	if sys == "" {
		note("no block device under %s (%s): device facts and cgroup limits do not apply", d.MountPoint, d.Filesystem)
		return d
	}
	if fileExists(filepath.Join(sys, "partition")) {
		d.Partition = filepath.Base(sys)
		sys = filepath.Dir(sys)
	}
	d.BlockDevice = filepath.Base(sys)
	if name := readSys(sys, "dm/name"); name != "" {
		d.BlockDevice += " (" + name + ")"
	}
	if entries, err := os.ReadDir(filepath.Join(sys, "slaves")); err == nil {
		for _, e := range entries {
			d.Underlying = append(d.Underlying, e.Name())
		}
	}
	d.Model = strings.Join(strings.Fields(readSys(sys, "device/vendor")+" "+readSys(sys, "device/model")), " ")
	if strings.HasPrefix(d.Model, "0x") { // virtio reports a PCI vendor id, not a name
		d.Model = ""
	}
	switch readSys(sys, "queue/rotational") {
	case "0":
		d.Rotational = new(false)
	case "1":
		d.Rotational = new(true)
	}
	d.WriteCache = readSys(sys, "queue/write_cache")
	d.Scheduler = activeScheduler(readSys(sys, "queue/scheduler"))
	d.LogicalBlockSize, _ = strconv.Atoi(readSys(sys, "queue/logical_block_size"))

	if d.Model == "" {
		note("%s reports no model (a virtual or device-mapper disk): the figures depend on the storage behind it", d.BlockDevice)
	}
	if virtual := strings.HasPrefix(d.BlockDevice, "vd") || strings.HasPrefix(d.BlockDevice, "xvd"); virtual && d.Rotational != nil && *d.Rotational {
		note("%s is a virtual disk, which guest kernels mark rotational by default: the flag says nothing about the host's storage", d.BlockDevice)
	}
	switch d.WriteCache {
	case "write back":
		note("the write cache is volatile (write back): every fdatasync must flush it, as it must in production")
	case "write through":
		note("the device reports no volatile write cache (write through): flushes are cheap, as on SSDs with power-loss protection")
	}

	if dev, err := os.ReadFile(filepath.Join(sys, "dev")); err == nil {
		d.IOLimits = cgroupIOLimits(mounts, strings.TrimSpace(string(dev)))
	}
	return d
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	devID, root, point, options  string
	fstype, source, superOptions string
}

// readMountInfo parses a mountinfo file (proc(5)).
func readMountInfo(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 6 || len(fields) < sep+4 {
			continue
		}
		out = append(out, mountEntry{
			devID:        fields[2],
			root:         unescapeMount(fields[3]),
			point:        unescapeMount(fields[4]),
			options:      fields[5],
			fstype:       fields[sep+1],
			source:       unescapeMount(fields[sep+2]),
			superOptions: fields[sep+3],
		})
	}
	return out, sc.Err()
}

// mountFor returns the mount holding path: among the mounts of its device,
// the one whose mount point is the longest prefix of path. A device number
// no mount carries (btrfs subvolumes) falls back to the longest prefix.
func mountFor(mounts []mountEntry, devID, path string) (mountEntry, bool) {
	var best mountEntry
	found := false
	for _, byDev := range []bool{true, false} {
		for _, m := range mounts {
			if byDev && m.devID != devID {
				continue
			}
			if !underMount(path, m.point) {
				continue
			}
			if !found || len(m.point) >= len(best.point) {
				best, found = m, true
			}
		}
		if found {
			return best, true
		}
	}
	return best, false
}

// underMount reports whether path is at or below mount point mp.
func underMount(path, mp string) bool {
	return mp == "/" || path == mp || strings.HasPrefix(path, mp+"/")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// blockDir returns the /sys directory of the block device with number
// devID, or of the device file source when devID is not a block device
// (btrfs and overlay report an anonymous device number).
func blockDir(devID, source string) string {
	if p, err := filepath.EvalSymlinks("/sys/dev/block/" + devID); err == nil {
		return p
	}
	if !strings.HasPrefix(source, "/dev/") {
		return ""
	}
	var st unix.Stat_t
	if unix.Stat(source, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return ""
	}
	p, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	if err != nil {
		return ""
	}
	return p
}

// cgroupIOLimits returns the I/O limits on device devID ("major:minor") in
// this process's cgroup and its ancestors, cgroup v2 (io.max) and v1
// (blkio.throttle.*). Lines that limit nothing are left out.
func cgroupIOLimits(mounts []mountEntry, devID string) []string {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mount, files := cgroupMount(mounts, parts[0], parts[1])
		if mount == nil {
			continue
		}
		// The cgroup path is relative to the hierarchy's root, which
		// the mount may show only part of (inside a container).
		rel, ok := strings.CutPrefix(parts[2], mount.root)
		if !ok {
			rel = ""
		}
		for dir := filepath.Join(mount.point, rel); ; dir = filepath.Dir(dir) {
			for _, name := range files {
				out = append(out, limitLines(filepath.Join(dir, name), devID)...)
			}
			if dir == mount.point || !strings.HasPrefix(dir, mount.point) {
				break
			}
		}
	}
	return out
}

// cgroupMount returns the mount of the cgroup hierarchy a /proc/self/cgroup
// line names, and the limit files it holds; nil if it holds none.
func cgroupMount(mounts []mountEntry, id, controllers string) (*mountEntry, []string) {
	for i := range mounts {
		m := &mounts[i]
		switch {
		case id == "0" && controllers == "" && m.fstype == "cgroup2":
			return m, []string{"io.max"}
		case slices.Contains(strings.Split(controllers, ","), "blkio") && m.fstype == "cgroup" &&
			slices.Contains(strings.Split(m.superOptions, ","), "blkio"):
			return m, []string{"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
				"blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"}
		}
	}
	return nil, nil
}

// limitLines returns the lines of a cgroup limit file for devID that set a
// limit, prefixed with the file they come from.
func limitLines(path, devID string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != devID {
			continue
		}
		limited := false
		for _, f := range fields[1:] {
			if !strings.HasSuffix(f, "=max") {
				limited = true
			}
		}
		if limited {
			out = append(out, path+": "+line)
		}
	}
	return out
}

// activeScheduler picks the bracketed entry of a queue/scheduler file.
func activeScheduler(s string) string {
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return s
}

// readSys returns the trimmed content of a /sys attribute, or "".
func readSys(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
