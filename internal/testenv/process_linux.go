package testenv

import "syscall"

// sysProcAttr makes the kernel SIGKILL the child when the test binary dies,
// so a test that crashes, times out or is killed never leaves a
// kube-apiserver and etcd behind to hold ports and memory.
//
// Pdeathsig fires when the thread that started the child exits, not only
// the process. Go keeps its threads for the life of the process unless a
// goroutine exits while locked to its thread with runtime.LockOSThread, so
// Start must not be called from such a goroutine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
