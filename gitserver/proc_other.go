//go:build !linux

package gitserver

import (
	"os"
	"os/exec"
)

// dieWithParent is a no-op where the kernel has no parent-death signal.
func dieWithParent(*exec.Cmd) {}

// deprioritize is a no-op where fjord does not set process priorities.
func deprioritize(*os.Process) {}
