package gitserver_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// The benchmarks compare fjord with OpenSSH sshd + git-upload-pack on the
// same repo in the same run, and TestMain prints one table of both.
//
//	go test -run '^$' -bench . -benchtime 3s ./gitserver/
//
// The OpenSSH column is left empty when sshd is not installed (`make
// bench` installs it).

// benchRow is one measured row of the table.
type benchRow struct {
	name    string
	fjord   []time.Duration
	openssh []time.Duration
}

var (
	benchMu   sync.Mutex
	benchRows []*benchRow
)

func recordBench(name, impl string, samples []time.Duration) {
	benchMu.Lock()
	defer benchMu.Unlock()
	var row *benchRow
	for _, r := range benchRows {
		if r.name == name {
			row = r
		}
	}
	if row == nil {
		row = &benchRow{name: name}
		benchRows = append(benchRows, row)
	}
	if impl == "fjord" {
		row.fjord = samples
	} else {
		row.openssh = samples
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(benchRows) > 0 {
		printBenchTable(os.Stdout)
	}
	os.Exit(code)
}

func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := int(p*float64(len(c))+0.5) - 1
	return c[max(0, min(i, len(c)-1))]
}

func printBenchTable(w io.Writer) {
	gitVer, _ := exec.Command("git", "--version").Output()
	sshVer, _ := exec.Command("ssh", "-V").CombinedOutput()
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	fmt.Fprintf(w, "\nfjord repo-server benchmark\n%s %s/%s, %d CPUs (%s), %s, %s\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu, strings.TrimSpace(string(gitVer)), strings.TrimSpace(string(sshVer)))
	fmt.Fprintf(w, "%-44s %10s %10s %6s   %10s %10s %6s   %s\n", "", "fjord p50", "p99", "n", "sshd p50", "p99", "n", "p99 ratio")
	for _, r := range benchRows {
		ratio := "-"
		if len(r.openssh) > 0 && len(r.fjord) > 0 {
			ratio = fmt.Sprintf("%.3fx", float64(percentile(r.fjord, .99))/float64(percentile(r.openssh, .99)))
		}
		osp50, osp99, osn := "-", "-", "-"
		if len(r.openssh) > 0 {
			osp50, osp99, osn = fmtDur(percentile(r.openssh, .5)), fmtDur(percentile(r.openssh, .99)), fmt.Sprint(len(r.openssh))
		}
		fmt.Fprintf(w, "%-44s %10s %10s %6d   %10s %10s %6s   %s\n", r.name,
			fmtDur(percentile(r.fjord, .5)), fmtDur(percentile(r.fjord, .99)), len(r.fjord), osp50, osp99, osn, ratio)
	}
	fmt.Fprintln(w, "p99 ratio = fjord p99 / sshd p99 (below 1 means fjord is faster)")
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// measure runs fn b.N times, records each duration and reports p50/p99.
func measure(b *testing.B, row, impl string, fn func() error) {
	b.Helper()
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := fn(); err != nil {
			b.Fatalf("%s/%s: %v", row, impl, err)
		}
		samples = append(samples, time.Since(t0))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(samples, .5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(samples, .99).Microseconds()), "p99-µs")
	recordBench(row, impl, samples)
}

// generateRepo writes a linear history of n commits into a bare repo with
// git fast-import.
func generateRepo(tb testing.TB, bare string, n int) {
	tb.Helper()
	var s bytes.Buffer
	for i := 1; i <= n; i++ {
		msg := fmt.Sprintf("commit %d\n", i)
		content := fmt.Sprintf("file %d revision %d\n%s\n", i%50, i, strings.Repeat(fmt.Sprintf("line %d ", i), 100))
		fmt.Fprintf(&s, "commit refs/heads/main\nmark :%d\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s", i, 1700000000+i, len(msg), msg)
		if i > 1 {
			fmt.Fprintf(&s, "from :%d\n", i-1)
		}
		fmt.Fprintf(&s, "M 100644 inline dir%d/file%d.txt\ndata %d\n%s\n", i%10, i%50, len(content), content)
	}
	cmd := exec.Command("git", "--git-dir", bare, "fast-import", "--quiet")
	cmd.Stdin = &s
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("fast-import: %v: %s", err, out)
	}
	if out, err := exec.Command("git", "--git-dir", bare, "gc", "--quiet").CombinedOutput(); err != nil {
		tb.Fatalf("gc: %v: %s", err, out)
	}
}

// openSSH is an OpenSSH sshd on loopback, serving git the classic way.
type openSSH struct {
	addr, port, user, knownHosts string
	hostKey                      gossh.PublicKey
}

// startOpenSSH starts sshd authorizing key, or returns nil when sshd is not
// installed.
func startOpenSSH(tb testing.TB, key clientKey) *openSSH {
	tb.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
			return nil
		}
		sshd = "/usr/sbin/sshd"
	}
	u, err := user.Current()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	os.MkdirAll("/run/sshd", 0o755) // privilege separation dir sshd insists on
	hk := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
		tb.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key.path + ".pub")
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PidFile none
AcceptEnv GIT_PROTOCOL
LogLevel ERROR
`, port, hk, filepath.Join(dir, "authorized_keys"))
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600)
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start sshd: %v", err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	hkPub, _ := os.ReadFile(hk + ".pub")
	pk, _, _, _, err := gossh.ParseAuthorizedKey(hkPub)
	if err != nil {
		tb.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%s %s", port, hkPub)), 0o600)
	return &openSSH{addr: addr, port: port, user: u.Username, knownHosts: kh, hostKey: pk}
}

func (o *openSSH) dial(tb testing.TB, key clientKey) *gossh.Client {
	c, err := gossh.Dial("tcp", o.addr, &gossh.ClientConfig{
		User: o.user, Auth: []gossh.AuthMethod{gossh.PublicKeys(key.signer)},
		HostKeyCallback: gossh.FixedHostKey(o.hostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		tb.Fatalf("dial sshd: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// anythingNewV2 asks over an open connection, on a new session channel,
// for the branch heads in protocol v2, as a reconciler polling for new
// commits does.
func anythingNewV2(c *gossh.Client, path string) error {
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Setenv("GIT_PROTOCOL", "version=2"); err != nil {
		return err
	}
	req := string(appendPktForTest("command=ls-refs\n")) + string(appendPktForTest("agent=git/2.39.5\n")) + "0001" + string(appendPktForTest("peel\n")) + string(appendPktForTest("symrefs\n")) +
		string(appendPktForTest("ref-prefix HEAD\n")) + string(appendPktForTest("ref-prefix refs/heads/\n")) + "0000" + "0000"
	s.Stdin = strings.NewReader(req)
	out, err := s.Output("git-upload-pack '" + path + "'")
	if err != nil {
		return err
	}
	if !bytes.Contains(out, []byte(" refs/heads/main")) {
		return fmt.Errorf("no refs/heads/main in %q", out)
	}
	return nil
}

// anythingNewV0 reads the v0 ref advertisement and hangs up with a flush.
func anythingNewV0(c *gossh.Client, path string) error {
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	s.Stdin = strings.NewReader("0000")
	out, err := s.Output("git-upload-pack '" + path + "'")
	if err != nil {
		return err
	}
	if !bytes.Contains(out, []byte(" refs/heads/main")) {
		return fmt.Errorf("no refs/heads/main in %q", out)
	}
	return nil
}

// BenchmarkAnythingNew is the co-located reconciler's poll: one new session
// per question on an already-open connection. Goal: fjord p99 under 1 ms.
func BenchmarkAnythingNew(b *testing.B) {
	e := newEnv(b, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	generateRepo(b, e.store.RepoPath("app"), 1000)
	if _, err := e.store.RefreshRefs(b.Context(), "app"); err != nil {
		b.Fatal(err)
	}
	c := e.dial(ci)
	b.Run("fjord/v2-ls-refs", func(b *testing.B) {
		measure(b, "anything new? v2 ls-refs, open connection", "fjord", func() error { return anythingNewV2(c, "app.git") })
	})
	b.Run("fjord/v0-advertisement", func(b *testing.B) {
		measure(b, "anything new? v0 advertisement, open conn.", "fjord", func() error { return anythingNewV0(c, "app.git") })
	})
	o := startOpenSSH(b, ci)
	if o == nil {
		b.Log("sshd not installed: no OpenSSH column (make bench installs it)")
		return
	}
	oc := o.dial(b, ci)
	path := e.store.RepoPath("app")
	b.Run("openssh/v2-ls-refs", func(b *testing.B) {
		measure(b, "anything new? v2 ls-refs, open connection", "openssh", func() error { return anythingNewV2(oc, path) })
	})
	b.Run("openssh/v0-advertisement", func(b *testing.B) {
		measure(b, "anything new? v0 advertisement, open conn.", "openssh", func() error { return anythingNewV0(oc, path) })
	})
}

// BenchmarkGitCLI runs the git CLI over SSH (a new connection each time, as
// CI does) against fjord and sshd on the same 1,000-commit repo. Goal:
// fjord no slower than OpenSSH on any row.
func BenchmarkGitCLI(b *testing.B) {
	e := newEnv(b, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	generateRepo(b, e.store.RepoPath("app"), 1000)
	if _, err := e.store.RefreshRefs(b.Context(), "app"); err != nil {
		b.Fatal(err)
	}
	o := startOpenSSH(b, ci)
	type target struct {
		impl, url, ssh string
	}
	targets := []target{{"fjord", e.url("app.git"), e.sshCommand(ci.path)}}
	if o != nil {
		targets = append(targets, target{"openssh", "ssh://" + o.user + "@127.0.0.1:" + o.port + e.store.RepoPath("app"),
			"ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + o.knownHosts + " -i " + ci.path})
	} else {
		b.Log("sshd not installed: no OpenSSH column (make bench installs it)")
	}
	for _, tg := range targets {
		b.Run(tg.impl+"/ls-remote", func(b *testing.B) {
			measure(b, "git ls-remote (new connection)", tg.impl, func() error {
				r := e.runGitSSH("", tg.ssh, "ls-remote", tg.url)
				if r.err != nil {
					return fmt.Errorf("%v: %s", r.err, r.out)
				}
				return nil
			})
		})
		b.Run(tg.impl+"/clone", func(b *testing.B) {
			root := b.TempDir()
			n := 0
			measure(b, "git clone, 1,000 commits", tg.impl, func() error {
				n++
				dir := filepath.Join(root, fmt.Sprint(n))
				r := e.runGitSSH("", tg.ssh, "clone", "-q", "--bare", tg.url, dir)
				os.RemoveAll(dir)
				if r.err != nil {
					return fmt.Errorf("%v: %s", r.err, r.out)
				}
				return nil
			})
		})
	}
}
