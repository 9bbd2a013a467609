//go:build !linux

package gitserver

import "os"

// deprioritize is a no-op where fjord does not set process priorities.
func deprioritize(*os.Process) {}
