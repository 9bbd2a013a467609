package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// stopGrace is how long a process has to exit after SIGTERM before it is
// killed. kube-apiserver and etcd both exit in well under a second on
// SIGTERM when idle; the grace only matters when one is stuck.
const stopGrace = 5 * time.Second

// process is one running child: etcd or kube-apiserver.
type process struct {
	name     string // "etcd" or "kube-apiserver", for errors
	logPath  string // stdout and stderr of the child
	cmd      *exec.Cmd
	cancel   context.CancelFunc
	stopping atomic.Bool   // set by stop before it cancels, so an exit is known to be ours
	done     chan struct{} // closed once the child has exited and waitErr is set
	waitErr  error
}

// startProcess starts path with args in dir, its output going to logPath.
//
// The child's lifetime is tied to a context of its own, not to the caller's:
// the context given to Start bounds startup, while the processes must live
// until Stop. Cancelling that context (in stop) sends SIGTERM; WaitDelay
// then SIGKILLs a child that has not exited after stopGrace.
func startProcess(name, path string, args []string, dir, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testenv: open %s log: %w", name, err)
	}
	// The child gets its own copy of the descriptor: an *os.File as Stdout
	// needs no copying goroutine, so nothing in this process can block
	// on the child's output.
	defer logFile.Close()

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("testenv: start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the child has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an exit that stop did not ask for, with the end of
// the child's log: the log says why, the exit status rarely does.
func (p *process) exitError() error {
	status := "exit status 0"
	if p.waitErr != nil {
		status = p.waitErr.Error()
	}
	return fmt.Errorf("testenv: %s exited: %s\n%s", p.name, status, p.logTail())
}

// stop ends the child and waits for it. It returns an error only when the
// child had already exited by itself, which is a crash worth reporting.
func (p *process) stop() error {
	crashed := p.exited() && !p.stopping.Load()
	p.stopping.Store(true)
	p.cancel()
	<-p.done
	if crashed {
		return p.exitError()
	}
	return nil
}

// logTailLines is how many lines of a child's log go into an error.
const logTailLines = 30

// logTail returns the last lines of the child's log, indented, for an
// error message.
func (p *process) logTail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("    (no %s log: %v)", p.name, err)
	}
	defer f.Close()
	// The last 16 KiB hold far more than logTailLines lines of either log.
	const window = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(-window, io.SeekEnd); err != nil {
			return fmt.Sprintf("    (read %s log: %v)", p.name, err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("    (read %s log: %v)", p.name, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    last lines of %s:\n", p.logPath)
	for _, l := range lines {
		fmt.Fprintf(&b, "    | %s\n", l)
	}
	return strings.TrimRight(b.String(), "\n")
}
