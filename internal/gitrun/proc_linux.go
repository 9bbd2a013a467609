package gitrun

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill git if fjord dies, even by kill -9,
// so no orphaned git keeps writing into a repo fjord no longer watches.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
