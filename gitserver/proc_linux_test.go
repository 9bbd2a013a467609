package gitserver

import (
	"os/exec"
	"syscall"
	"testing"
)

// TestDeprioritize checks that a started process runs packNice nicer than
// the test itself.
func TestDeprioritize(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deprioritize(cmd.Process)
	self, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	child, err := syscall.Getpriority(syscall.PRIO_PROCESS, cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// getpriority(2) returns 20 - nice.
	if want := min(19, 20-self+packNice); 20-child != want {
		t.Fatalf("child nice %d, want %d (own nice %d)", 20-child, want, 20-self)
	}
}
