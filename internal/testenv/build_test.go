package testenv_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBuildScriptSaysWhenWaitingOnLock runs tools/build.sh while this test
// holds the kube-apiserver build lock, as another `make testenv` would: the
// script must say it is waiting and on which lock file, instead of sitting
// silent, and go on once the other build has put the binary in place.
func TestBuildScriptSaysWhenWaitingOnLock(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock (util-linux) is not installed; build.sh then builds without a lock")
	}
	cache := t.TempDir()
	script, err := filepath.Abs("tools/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	version := func(name string) string {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, name+"="); ok {
				return v
			}
		}
		t.Fatalf("no %s= in %s", name, script)
		return ""
	}
	// etcd is "already built"; kube-apiserver is being built by someone
	// else, who holds its lock.
	etcd := filepath.Join(cache, "etcd-"+version("ETCD_VERSION"), "etcd")
	apiserver := filepath.Join(cache, "k8s-"+version("K8S_VERSION"), "kube-apiserver")
	for _, p := range []string{etcd, apiserver} {
		os.MkdirAll(filepath.Dir(p), 0o755)
	}
	os.WriteFile(etcd, []byte("#!/bin/sh\n"), 0o755)
	lock, err := os.OpenFile(apiserver+".lock", os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("bash", script)
	// GO=false: should the script try to build, it fails at once instead
	// of compiling Kubernetes.
	cmd.Env = append(os.Environ(), "FJORD_TESTENV_CACHE="+cache, "GO=false")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	want := "testenv: waiting for another build of kube-apiserver (lock " + apiserver + ".lock)"
	var seen []string
	for waiting := false; !waiting; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("build.sh ended without saying it waits on the lock; it said:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			waiting = l == want
		case <-time.After(time.Minute):
			t.Fatalf("build.sh said no %q within a minute; it said:\n%s", want, strings.Join(seen, "\n"))
		}
	}
	// The other build finishes: binary in place, lock released.
	os.WriteFile(apiserver, []byte("#!/bin/sh\n"), 0o755)
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	for l := range lines {
		seen = append(seen, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("build.sh after the other build finished: %v\n%s", err, strings.Join(seen, "\n"))
	}
	if last := seen[len(seen)-1]; last != "testenv: kube-apiserver is cached at "+apiserver {
		t.Fatalf("after waiting, build.sh said %q, want that the binary is cached", last)
	}
}
