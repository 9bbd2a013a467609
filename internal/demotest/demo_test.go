// Package demotest runs deploy/demo/demo.sh, the script behind `make demo`,
// end to end: a real kube-apiserver and etcd (internal/testenv), fjord, git
// over SSH and kubectl, exactly as a person running `make demo` gets them.
// It holds only tests.
//
// Besides the happy path it checks what the script promises about cleanup:
// after a run, a Ctrl-C or a SIGTERM, no process the demo started is left
// and its temporary directory is gone. Like every test that needs the API
// server, these fail when its binaries are missing (`make testenv` builds
// them) unless FJORD_SKIP_KUBE=1.
package demotest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/testenv"
)

// runTimeout bounds one run of the demo. A run takes seconds; the margin is
// for a loaded two-core CI machine, where kube-apiserver alone may take a
// minute to start.
const runTimeout = 5 * time.Minute

// Markers in the demo's output.
const (
	markerFjordReady = "fjord ready in "
	markerAppStep    = "==> registering the Application"
	markerLive       = "new image live in "
	markerReverted   = "manual scale reverted in "
	markerOK         = "demo: OK"
	markerCleaned    = "demo: cleaned up"
)

// workDirRE finds the demo's temporary directory in its output.
var workDirRE = regexp.MustCompile(`working in (\S+) \(removed on exit\)`)

// TestDemo runs the whole demo and checks that it reports both latencies,
// succeeds and leaves nothing behind.
func TestDemo(t *testing.T) {
	d := startDemo(t)
	code, out := d.wait(t)
	if code != 0 {
		t.Fatalf("demo.sh exited with %d, want 0; output:\n%s", code, out)
	}
	for _, want := range []string{markerFjordReady, markerLive, markerReverted, markerOK, markerCleaned} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; output:\n%s", want, out)
		}
	}
	// The latencies, for the log: speed targets live in benchmarks, so
	// they are shown here, not judged.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " ms") && (strings.Contains(l, " live in ") || strings.Contains(l, markerReverted)) {
			t.Log(strings.TrimSpace(l))
		}
	}
	d.checkCleanedUp(t, out)
}

// TestDemoCtrlC presses Ctrl-C, which signals the whole foreground process
// group, once fjord is up, and checks that the demo stops everything.
func TestDemoCtrlC(t *testing.T) {
	d := startDemo(t)
	d.waitFor(t, markerFjordReady)
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatalf("send SIGINT to the demo's process group: %v", err)
	}
	code, out := d.wait(t)
	if code != 130 {
		t.Errorf("demo.sh exited with %d after Ctrl-C, want 130; output:\n%s", code, out)
	}
	for _, want := range []string{"demo: interrupted", markerCleaned} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; output:\n%s", want, out)
		}
	}
	d.checkCleanedUp(t, out)
}

// TestDemoSIGTERM signals only the script, as a CI runner cancelling a job
// may, while the kubectl watch, fjord and the API server all run: the
// script's own cleanup, not the signal, must stop them.
func TestDemoSIGTERM(t *testing.T) {
	d := startDemo(t)
	d.waitFor(t, markerAppStep)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("send SIGTERM to demo.sh: %v", err)
	}
	code, out := d.wait(t)
	if code != 143 {
		t.Errorf("demo.sh exited with %d after SIGTERM, want 143; output:\n%s", code, out)
	}
	for _, want := range []string{"demo: terminated", markerCleaned} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; output:\n%s", want, out)
		}
	}
	d.checkCleanedUp(t, out)
}

// demo is one running demo.sh.
type demo struct {
	cmd    *exec.Cmd
	tmpDir string // the demo's $TMPDIR: it makes its directory in here
	ctx    context.Context

	mu       sync.Mutex
	out      bytes.Buffer
	newLine  chan struct{} // receives (without blocking) when a line arrives
	readDone chan struct{} // closed when the output pipe reached EOF
}

// startDemo starts `bash deploy/demo/demo.sh` from the repo root, in a
// process group of its own (so that a Ctrl-C can be played to it and
// anything left can be killed at the end), with prebuilt binaries and its
// own TMPDIR.
func startDemo(t *testing.T) *demo {
	t.Helper()
	bins := demoBinaries(t)
	root := repoRoot(t)

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	t.Cleanup(cancel)
	d := &demo{tmpDir: t.TempDir(), ctx: ctx, newLine: make(chan struct{}, 1), readDone: make(chan struct{})}

	// One pipe for stdout and stderr keeps the lines in order. It is an
	// *os.File, so no copying goroutine of os/exec sits between: the read
	// side reaches EOF only when every process holding the write side has
	// exited, which is one more sign that nothing was left running.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	d.cmd = exec.Command("bash", filepath.Join("deploy", "demo", "demo.sh"))
	d.cmd.Dir = root
	d.cmd.Env = append(os.Environ(),
		"FJORD_BIN="+bins.fjord,
		"KUBEENV_BIN="+bins.kubeenv,
		"TMPDIR="+d.tmpDir,
	)
	d.cmd.Stdout, d.cmd.Stderr = w, w
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start demo.sh: %v", err)
	}
	w.Close()
	pgid := d.cmd.Process.Pid
	// The safety net for a failed test: whatever is left in the demo's
	// process group is killed, so one failure does not hold ports and
	// memory for the tests after it.
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })

	go func() {
		defer close(d.readDone)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			d.mu.Lock()
			d.out.Write(sc.Bytes())
			d.out.WriteByte('\n')
			d.mu.Unlock()
			select {
			case d.newLine <- struct{}{}:
			default:
			}
		}
	}()
	return d
}

// output returns what the demo printed so far.
func (d *demo) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// waitFor returns once the output contains marker, and fails the test if
// the demo ends or the run times out first.
func (d *demo) waitFor(t *testing.T, marker string) {
	t.Helper()
	for !strings.Contains(d.output(), marker) {
		select {
		case <-d.newLine:
		case <-d.readDone:
			if !strings.Contains(d.output(), marker) {
				t.Fatalf("demo.sh ended before printing %q; output:\n%s", marker, d.output())
			}
		case <-d.ctx.Done():
			t.Fatalf("demo.sh did not print %q within %s; output:\n%s", marker, runTimeout, d.output())
		}
	}
}

// wait waits for the demo to exit and for its output to end, and returns
// its exit code (128+N when a signal N killed it) and its output.
func (d *demo) wait(t *testing.T) (int, string) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-d.ctx.Done():
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		t.Fatalf("demo.sh did not finish within %s; output:\n%s", runTimeout, d.output())
	}
	// A process the demo left running would still hold the pipe.
	select {
	case <-d.readDone:
	case <-time.After(10 * time.Second):
		t.Errorf("the demo's output stayed open 10s after demo.sh exited: a process it started still runs")
	}
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	default:
		t.Fatalf("wait for demo.sh: %v", err)
	}
	return code, d.output()
}

// checkCleanedUp checks that the demo's temporary directory is gone, that
// its TMPDIR holds nothing, and that no process it started is left: none in
// its process group (kube-apiserver and etcd are in it too, as children of
// kubeenv) and, on Linux, none whose command line names its directory.
func (d *demo) checkCleanedUp(t *testing.T, out string) {
	t.Helper()
	m := workDirRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output does not say where the demo worked (%q); output:\n%s", workDirRE, out)
	}
	dir := m[1]
	if !strings.HasPrefix(dir, d.tmpDir+string(filepath.Separator)) {
		t.Errorf("the demo worked in %s, not under its TMPDIR %s", dir, d.tmpDir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s is still there (stat: %v)", dir, err)
	}
	if left, err := os.ReadDir(d.tmpDir); err != nil {
		t.Errorf("read TMPDIR: %v", err)
	} else if len(left) > 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("the demo left %v in its TMPDIR %s", names, d.tmpDir)
	}

	// Processes take a moment to be reaped once reparented; wait a little.
	pgid := d.cmd.Process.Pid
	var alive []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		alive = processesOf(pgid, dir)
		if len(alive) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(alive) > 0 {
		t.Errorf("processes of the demo still run after it exited:\n%s", strings.Join(alive, "\n"))
	}
}

// processesOf lists the live processes in process group pgid or with dir in
// their command line, as "PID: COMMAND LINE". Zombies are not listed: they
// have exited and only wait for their parent. It reads /proc, so it finds
// nothing outside Linux, where the process group check is all there is.
func processesOf(pgid int, dir string) []string {
	var found []string
	if runtime.GOOS != "linux" {
		if err := syscall.Kill(-pgid, 0); err == nil {
			found = append(found, fmt.Sprintf("process group %d", pgid))
		}
		return found
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid := e.Name()
		if pid == "" || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// The fields after the command name, which is in parentheses and
		// may itself hold spaces: state, ppid, pgrp, ...
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		line := strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		if fields[2] == fmt.Sprint(pgid) || strings.Contains(line, dir) {
			found = append(found, pid+": "+line)
		}
	}
	return found
}

// binaries are the programs the demo runs, built once per test binary.
type binaries struct {
	fjord, kubeenv string
}

var built struct {
	once sync.Once
	dir  string
	bins binaries
	err  error
}

// demoBinaries checks what the demo needs and builds fjord and kubeenv
// from this work tree into a directory that TestMain removes. Tests that
// run the demo fail, rather than skip, when a tool or the API server's
// binaries are missing, unless FJORD_SKIP_KUBE=1.
func demoBinaries(t *testing.T) binaries {
	t.Helper()
	if os.Getenv(testenv.EnvSkip) == "1" {
		t.Skipf("%s=1: skipping the demo, which needs kube-apiserver", testenv.EnvSkip)
	}
	if _, err := testenv.FindBinaries(); err != nil {
		t.Fatalf("the demo runs the real kube-apiserver and etcd (or set %s=1 to skip): %v", testenv.EnvSkip, err)
	}
	for _, tool := range []string{"bash", "git", "ssh", "ssh-keygen", "kubectl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the demo needs %s (or set %s=1 to skip): %v", tool, testenv.EnvSkip, err)
		}
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "fjord-demotest-bin-")
		if built.err != nil {
			return
		}
		built.bins = binaries{
			fjord:   filepath.Join(built.dir, "fjord"),
			kubeenv: filepath.Join(built.dir, "kubeenv"),
		}
		root := repoRoot(t)
		for _, b := range []struct{ out, pkg string }{
			{built.bins.fjord, "./cmd/fjord"},
			{built.bins.kubeenv, "./internal/testenv/cmd/kubeenv"},
		} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bins
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// repoRoot is the absolute path of the repository, which holds
// deploy/demo/demo.sh.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "deploy", "demo", "demo.sh")); err != nil {
		t.Fatalf("repo root %s: %v", root, err)
	}
	return root
}
