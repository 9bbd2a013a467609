package bench_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/bench"
)

// smallShape is a repository that clones in milliseconds but still has
// a history for the incremental fetch.
func smallShape() bench.RepoShape {
	return bench.RepoShape{Files: 40, Commits: 6, FileSize: 2 << 10, Changes: 2}
}

// hermetic keeps the user's and the system's git and ssh configuration out
// of the test.
func hermetic(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
}

// sourceRepo generates a bare repository and returns its path.
func sourceRepo(t *testing.T, shape bench.RepoShape) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	hermetic(t)
	dir := filepath.Join(t.TempDir(), "src.git")
	if err := bench.GenerateRepo(context.Background(), "", dir, shape); err != nil {
		t.Fatal(err)
	}
	return dir
}

// git runs git in dir and returns its trimmed output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// tinyGit returns options for a quick run against url.
func tinyGit(t *testing.T, url string) bench.GitOptions {
	return bench.GitOptions{
		URL:         url,
		Concurrency: 2,
		Duration:    200 * time.Millisecond,
		Warmup:      -1,
		WorkDir:     t.TempDir(),
	}
}

// checkGitReport checks that every workload in want ran without error.
func checkGitReport(t *testing.T, rep *bench.GitReport, want []string) map[string]bench.GitResult {
	t.Helper()
	got := map[string]bench.GitResult{}
	for _, w := range rep.Workloads {
		got[w.Name] = w
		if w.Ops == 0 || w.Errors != 0 || w.Latency.Samples != w.Ops || w.OpsPerSec <= 0 || w.Latency.P50 <= 0 {
			t.Errorf("%s: %+v", w.Name, w)
		}
		if !strings.HasPrefix(w.Command, "git ") {
			t.Errorf("%s: command %q", w.Name, w.Command)
		}
	}
	for _, name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("workload %s missing from %+v (notes %q)", name, rep.Workloads, rep.Notes)
		}
	}
	return got
}

func TestGenerateRepo(t *testing.T) {
	src := sourceRepo(t, smallShape())
	if n := git(t, src, "rev-list", "--count", "main"); n != "6" {
		t.Errorf("%s commits, want 6", n)
	}
	files := strings.Split(git(t, src, "ls-tree", "-r", "--name-only", "main"), "\n")
	if len(files) != 40 {
		t.Errorf("%d files, want 40", len(files))
	}
	if head := git(t, src, "symbolic-ref", "HEAD"); head != "refs/heads/main" {
		t.Errorf("HEAD is %s", head)
	}
	// Deterministic: the same shape gives the same history.
	if a, b := git(t, src, "rev-parse", "main"), git(t, sourceRepo(t, smallShape()), "rev-parse", "main"); a != b {
		t.Errorf("two generations differ: %s, %s", a, b)
	}
}

func TestRunGitFileURL(t *testing.T) {
	src := sourceRepo(t, smallShape())
	refsBefore := git(t, src, "for-each-ref")
	o := tinyGit(t, "file://"+src)
	rep, err := bench.RunGit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got := checkGitReport(t, rep, bench.GitWorkloadNames())
	if rep.Branch != "main" || rep.Head != git(t, src, "rev-parse", "main") || rep.Concurrency != 2 {
		t.Errorf("report header: %+v", rep)
	}
	// The repository's size, as git itself counts it.
	objects := len(strings.Fields(git(t, src, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")))
	if z := rep.Repo; z.Commits != 6 || z.Refs != 1 || z.Objects != int64(objects) || z.Bytes <= 0 {
		t.Errorf("repository size %+v, want 6 commits, 1 ref, %d objects", z, objects)
	}
	if rep.ClientStart <= 0 || rep.ClientStart > got[bench.GitLsRemote].Latency.P50 {
		t.Errorf("client start %v against ls-remote p50 %v: starting git alone must be part of every figure", rep.ClientStart, got[bench.GitLsRemote].Latency.P50)
	}
	if len(rep.Verdicts) != 4 {
		t.Errorf("%d verdicts for four workloads: %+v", len(rep.Verdicts), rep.Verdicts)
	}

	// The incremental fetch transfers one commit, a fraction of a clone;
	// a shallow clone is smaller than a full one.
	perOp := func(r bench.GitResult) int64 { return r.Bytes / r.Ops }
	clone, shallow, fetch := perOp(got[bench.GitClone]), perOp(got[bench.GitShallow]), perOp(got[bench.GitFetch])
	if fetch <= 0 || fetch*5 > clone {
		t.Errorf("fetch of one commit moved %d bytes, a full clone %d: not incremental", fetch, clone)
	}
	if shallow <= 0 || shallow >= clone {
		t.Errorf("shallow clone %d bytes, full clone %d", shallow, clone)
	}

	// Read-only against the server, and nothing left behind locally.
	if after := git(t, src, "for-each-ref"); after != refsBefore {
		t.Errorf("the run changed the server's refs:\n%s\nwas\n%s", after, refsBefore)
	}
	if entries, _ := os.ReadDir(o.WorkDir); len(entries) != 0 {
		t.Errorf("left in the work directory: %v", entries)
	}
}

func TestRunGitDaemon(t *testing.T) {
	src := sourceRepo(t, smallShape())
	base := filepath.Dir(src)
	// A free loopback port; git daemon takes it over right after.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	daemon := exec.CommandContext(ctx, "git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
		fmt.Sprintf("--port=%d", port), "--base-path="+base, base)
	daemon.WaitDelay = 5 * time.Second
	if err := daemon.Start(); err != nil {
		t.Skipf("git daemon: %v", err)
	}
	defer daemon.Wait()
	defer cancel()
	url := fmt.Sprintf("git://127.0.0.1:%d/src.git", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if exec.Command("git", "ls-remote", url).Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("git daemon did not come up")
		}
	}
	o := tinyGit(t, url)
	o.Workloads = []string{bench.GitLsRemote, bench.GitFetch}
	rep, err := bench.RunGit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkGitReport(t, rep, o.Workloads)
}

func TestRunGitSelf(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed")
	}
	hermetic(t)
	dir := t.TempDir()
	ctx := context.Background()
	self, err := bench.StartSelf(ctx, bench.SelfOptions{Dir: dir, Shape: smallShape()})
	if err != nil {
		t.Fatal(err)
	}
	o := tinyGit(t, self.URL)
	o.SSHKey, o.KnownHosts = self.KeyFile, self.KnownHosts
	o.Workloads = []string{bench.GitLsRemote, bench.GitFetch, bench.GitShallow}
	rep, err := bench.RunGit(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	got := checkGitReport(t, rep, o.Workloads)
	if !strings.HasPrefix(rep.URL, "ssh://git@127.0.0.1:") {
		t.Errorf("URL %s", rep.URL)
	}
	if m := got[bench.GitLsRemote].Measures; !strings.Contains(m, "starting git and ssh, a new SSH connection") {
		t.Errorf("ls-remote over ssh measures %q", m)
	}
	if rep.Repo.Commits != 6 || rep.Repo.Objects == 0 {
		t.Errorf("repository size %+v", rep.Repo)
	}
	if err := self.Close(); err != nil {
		t.Fatal(err)
	}
	if err := self.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the temporary fjord left %v", entries)
	}
}

func TestRunGitSkipsFetchOnASingleCommit(t *testing.T) {
	src := sourceRepo(t, bench.RepoShape{Files: 3, Commits: 1})
	o := tinyGit(t, "file://"+src)
	o.Workloads = []string{bench.GitFetch}
	rep, err := bench.RunGit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Workloads) != 0 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "single commit") {
		t.Errorf("workloads %+v notes %q, want the fetch skipped with a note", rep.Workloads, rep.Notes)
	}
}

func TestRunGitErrorsNameTheProblemAndHideSecrets(t *testing.T) {
	hermetic(t)
	o := tinyGit(t, "https://bench:s3cret@127.0.0.1:1/team/app.git")
	_, err := bench.RunGit(context.Background(), o)
	if err == nil {
		t.Fatal("RunGit against a closed port succeeded")
	}
	t.Log(err)
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the password leaked into the error: %v", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error %q does not name the server", err)
	}

	src := sourceRepo(t, smallShape())
	o = tinyGit(t, "file://"+src)
	o.Workloads = []string{"push"}
	if _, err := bench.RunGit(context.Background(), o); err == nil || !strings.Contains(err.Error(), "choose from ls-remote") {
		t.Errorf("unknown workload: %v", err)
	}
	o = tinyGit(t, "file://"+src)
	o.SSHKey = filepath.Join(t.TempDir(), "missing")
	if _, err := bench.RunGit(context.Background(), o); err == nil || !strings.Contains(err.Error(), "ssh key") {
		t.Errorf("missing key: %v", err)
	}
}

func TestRunGitKnownHostsIsStrictAndNeverAdvisesTrustOnFirstUse(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed")
	}
	hermetic(t)
	ctx := context.Background()
	self, err := bench.StartSelf(ctx, bench.SelfOptions{Dir: t.TempDir(), Shape: smallShape()})
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()

	// A known_hosts file that lacks the server's key fails the run; the
	// hint names --known-hosts and never ssh-keyscan.
	other := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := tinyGit(t, self.URL)
	o.SSHKey, o.KnownHosts = self.KeyFile, other
	o.Workloads = []string{bench.GitLsRemote}
	_, err = bench.RunGit(ctx, o)
	if err == nil {
		t.Fatal("RunGit trusted a host key missing from --known-hosts")
	}
	for _, want := range []string{"Host key verification failed", "--known-hosts FILE", "fjord hostkey"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "keyscan") || strings.Contains(err.Error(), ">>") {
		t.Errorf("error advises trust on first use: %v", err)
	}
	if b, _ := os.ReadFile(other); len(b) != 0 {
		t.Errorf("ssh added the host key to --known-hosts: %q", b)
	}

	o.KnownHosts = filepath.Join(t.TempDir(), "missing")
	if _, err := bench.RunGit(ctx, o); err == nil || !strings.Contains(err.Error(), "known_hosts file") {
		t.Errorf("missing known_hosts file: %v", err)
	}

	// A GIT_SSH_COMMAND of the caller's own is kept, with the key and
	// the known_hosts file added to it.
	t.Setenv("GIT_SSH_COMMAND", "ssh -o ConnectTimeout=7")
	o.KnownHosts = self.KnownHosts
	rep, err := bench.RunGit(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	checkGitReport(t, rep, o.Workloads)
}
