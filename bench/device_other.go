//go:build !linux

package bench

// probeDevice knows nothing outside Linux.
func probeDevice(dir string) Device {
	return Device{Notes: []string{"device facts come from /proc and /sys, which only Linux has"}}
}
