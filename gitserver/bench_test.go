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

	"github.com/fjordhq/fjord/gitserver"
	gossh "golang.org/x/crypto/ssh"
)

// The benchmarks measure fjord's "anything new?" fast path against the
// bare SSH stack beneath it (gliderlabs/ssh and x/crypto/ssh answering
// with fixed bytes), and fjord against OpenSSH sshd + git-upload-pack on
// the same repo, all in the same run; TestMain prints the tables.
//
//	go test -run '^$' -bench AnythingNew -benchtime 2000x ./gitserver/
//	go test -run '^$' -bench GitCLI -benchtime 200x ./gitserver/
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
	if len(fastRows) > 0 || len(benchRows) > 0 {
		printMachine(os.Stdout)
	}
	if len(fastRows) > 0 {
		printFastTable(os.Stdout)
	}
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

// printMachine says what the figures were measured on.
func printMachine(w io.Writer) {
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
	fmt.Fprintf(w, "\nfjord repo-server benchmark\n%s %s/%s, %d CPUs (%s), GOMAXPROCS %d, %s, %s\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu, runtime.GOMAXPROCS(0), strings.TrimSpace(string(gitVer)), strings.TrimSpace(string(sshVer)))
}

// printBenchTable prints fjord beside OpenSSH sshd.
func printBenchTable(w io.Writer) {
	fmt.Fprintf(w, "\nfjord against OpenSSH sshd + git-upload-pack, same repo, same run\n")
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
// commits does. It returns what the server answered.
func anythingNewV2(c *gossh.Client, path string) ([]byte, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.Setenv("GIT_PROTOCOL", "version=2"); err != nil {
		return nil, err
	}
	s.Stdin = strings.NewReader(lsRefsRequest)
	out, err := s.Output("git-upload-pack '" + path + "'")
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(out, []byte(" refs/heads/main")) {
		return nil, fmt.Errorf("no refs/heads/main in %q", out)
	}
	return out, nil
}

// lsRefsRequest is the v2 request of a client asking for its branches,
// as git fetch sends it, with the flush that ends the session.
var lsRefsRequest = string(appendPktForTest("command=ls-refs\n")) + string(appendPktForTest("agent=git/2.39.5\n")) + "0001" +
	string(appendPktForTest("peel\n")) + string(appendPktForTest("symrefs\n")) +
	string(appendPktForTest("ref-prefix HEAD\n")) + string(appendPktForTest("ref-prefix refs/heads/\n")) + "0000" + "0000"

// anythingNewV0 reads the v0 ref advertisement and hangs up with a flush.
func anythingNewV0(c *gossh.Client, path string) ([]byte, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.Stdin = strings.NewReader("0000")
	out, err := s.Output("git-upload-pack '" + path + "'")
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(out, []byte(" refs/heads/main")) {
		return nil, fmt.Errorf("no refs/heads/main in %q", out)
	}
	return out, nil
}

// fastRow is one row of the fast-path table: one question asked of fjord
// and of both floors in the same run.
type fastRow struct {
	name   string
	bytes  int
	lat    map[string][]time.Duration // by server
	cpu    map[string]time.Duration   // server CPU per question, by server
	allocs map[string]float64         // server allocations per question
}

// The servers of the fast-path table, in column order.
const (
	srvFjord      = "fjord"
	srvGliderlabs = "gliderlabs"
	srvXCrypto    = "x/crypto"
)

var (
	fastRows    []*fastRow
	serverProcs int // GOMAXPROCS of the server processes
)

func recordFast(r *fastRow) {
	benchMu.Lock()
	defer benchMu.Unlock()
	for i, old := range fastRows {
		if old.name == r.name {
			fastRows[i] = r
			return
		}
	}
	fastRows = append(fastRows, r)
}

// benchTarget is one server the fast-path benchmark asks.
type benchTarget struct {
	srv *benchServer
	c   *gossh.Client
}

// question is one kind of "anything new?".
type question struct {
	bench, row string
	ask        func(*gossh.Client, string) ([]byte, error)
}

var questions = []question{
	{"v2-ls-refs", "v2 ls-refs", anythingNewV2},
	{"v0-advertisement", "v0 advertisement", anythingNewV0},
}

// askInterleaved asks every target rounds times, rotating which goes
// first, so that whatever else the machine does at a moment weighs on all
// of them alike: their ratios then hold even when absolute times do not.
// It returns the row, with each server process's CPU and allocations per
// question over the same run.
func askInterleaved(b *testing.B, name string, rounds int, targets []benchTarget, q question) *fastRow {
	b.Helper()
	r := &fastRow{name: name, lat: map[string][]time.Duration{}, cpu: map[string]time.Duration{}, allocs: map[string]float64{}}
	before := map[string]benchServerStats{}
	for _, t := range targets {
		before[t.srv.name] = t.srv.stats(b)
	}
	for i := 0; i < rounds; i++ {
		for j := range targets {
			t := targets[(i+j)%len(targets)]
			t0 := time.Now()
			if _, err := q.ask(t.c, "app.git"); err != nil {
				b.Fatalf("%s %s: %v", t.srv.name, q.row, err)
			}
			r.lat[t.srv.name] = append(r.lat[t.srv.name], time.Since(t0))
		}
	}
	for _, t := range targets {
		after := t.srv.stats(b)
		r.cpu[t.srv.name] = (after.CPU - before[t.srv.name].CPU) / time.Duration(rounds)
		r.allocs[t.srv.name] = float64(after.Mallocs-before[t.srv.name].Mallocs) / float64(rounds)
	}
	return r
}

// cloneLoad keeps n git clones of the repo running against fjord, each
// starting again as soon as it ends, until the returned stop is called;
// stop returns how many clones completed.
func cloneLoad(b *testing.B, ce *env, key clientKey, n int) (stop func() int) {
	b.Helper()
	root := b.TempDir()
	quit := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		done  int
		first error
	)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				dir := filepath.Join(root, fmt.Sprintf("%d-%d", w, i))
				r := ce.runGit("", key, "clone", "-q", "--bare", ce.url("app.git"), dir)
				os.RemoveAll(dir)
				mu.Lock()
				if r.err != nil && first == nil {
					first = fmt.Errorf("clone: %v: %s", r.err, r.out)
				}
				done++
				mu.Unlock()
			}
		}()
	}
	// Let every clone get going before the first question.
	time.Sleep(300 * time.Millisecond)
	return func() int {
		close(quit)
		wg.Wait()
		if first != nil {
			b.Fatal(first)
		}
		return done
	}
}

// BenchmarkAnythingNew is the co-located reconciler's poll: one new session
// per question on an already-open connection, asked of fjord and of the
// bare SSH stack beneath it (see benchserver_test.go), interleaved, idle
// and while 20 clones run. Goals: p50 and p99 within 1.3x of the
// gliderlabs floor; p99 under 500µs idle and 2ms under load.
func BenchmarkAnythingNew(b *testing.B) {
	ce := &env{t: b, home: b.TempDir()}
	key := ce.newKey("reconciler", "")
	answers := b.TempDir()
	fj := startBenchServer(b, srvFjord, key, answers)
	_, port, _ := net.SplitHostPort(fj.info.Addr)
	ce.port = port
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey([]byte(fj.info.HostKey))
	if err != nil {
		b.Fatal(err)
	}
	ce.knownHosts = filepath.Join(ce.home, "known_hosts")
	if err := os.WriteFile(ce.knownHosts, []byte(gitserver.KnownHostsLine("127.0.0.1", mustAtoi(port), hostKey)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var targets []benchTarget
	for _, srv := range []*benchServer{fj, startBenchServer(b, srvGliderlabs, key, answers), startBenchServer(b, srvXCrypto, key, answers)} {
		targets = append(targets, benchTarget{srv, srv.dial(b, key)})
	}
	benchMu.Lock()
	serverProcs = fj.info.Procs
	benchMu.Unlock()
	size := map[string]int{"v0-advertisement": fj.info.V0, "v2-ls-refs": fj.info.V2}
	idle := map[string][]time.Duration{}
	for _, q := range questions {
		b.Run(q.bench, func(b *testing.B) {
			row := askInterleaved(b, q.row+", idle", b.N, targets, q)
			row.bytes = size[q.bench]
			reportFast(b, row)
			b.ReportMetric(float64(row.cpu[srvFjord].Nanoseconds())/1e3, "cpu-µs/op")
			b.ReportMetric(row.allocs[srvFjord], "server-allocs/op")
			recordFast(row)
			idle[q.row] = row.lat[srvFjord]
		})
	}
	b.Run("under-20-clones", func(b *testing.B) {
		stop := cloneLoad(b, ce, key, 20)
		var rows []*fastRow
		for _, q := range questions {
			// A fifth of the idle rounds: enough samples for a p99, in
			// minutes rather than a quarter of an hour.
			row := askInterleaved(b, q.row+", 20 clones running", max(1, b.N/5), targets, q)
			row.bytes = size[q.bench]
			row.cpu = nil // fjord's would count the clones' share too
			rows = append(rows, row)
		}
		clones := stop()
		for _, row := range rows {
			recordFast(row)
		}
		reportFast(b, rows[0])
		b.ReportMetric(float64(clones), "clones")
	})

	o := startOpenSSH(b, key)
	if o == nil {
		b.Log("sshd not installed: no OpenSSH column (make bench installs it)")
		return
	}
	oc := o.dial(b, key)
	for _, q := range questions {
		row := "anything new? " + q.row + ", open connection"
		recordBench(row, "fjord", idle[q.row])
		b.Run("openssh/"+q.bench, func(b *testing.B) {
			measure(b, row, "openssh", func() error { _, err := q.ask(oc, fj.info.RepoPath); return err })
		})
	}
}

// BenchmarkServePath is fjord's own share of an "anything new?": the
// server's path from the accepted exec to the exit status (identity,
// access, snapshot, the cached answer, the log line, metrics) on an
// in-memory channel, with no SSH beneath it. Its allocs/op are the
// allocations fjord adds to each question.
func BenchmarkServePath(b *testing.B) {
	e := newEnv(b, envOptions{})
	key := e.newKey("reconciler", "")
	e.benchRepo(key.pub)
	for _, q := range []struct {
		name, protocol, request string
	}{
		{"v2-ls-refs", "version=2", lsRefsRequest},
		{"v0-advertisement", "", "0000"},
	} {
		b.Run(q.name, func(b *testing.B) {
			ch := &memChannel{}
			b.ReportAllocs()
			for b.Loop() {
				ch.reset(q.request)
				if code := e.srv.ExecForBench(b.Context(), ch, key.pub.Fingerprint, "git-upload-pack 'app.git'", q.protocol); code != 0 {
					b.Fatalf("exit status %d: %s", code, ch.stderr.String())
				}
			}
			if ch.written < 1000 {
				b.Fatalf("answered %d bytes", ch.written)
			}
		})
	}
}

// memChannel is an SSH channel in memory: the client's request to read,
// and a count of what the server wrote.
type memChannel struct {
	in      strings.Reader
	written int
	stderr  bytes.Buffer
}

func (c *memChannel) reset(request string) { c.in.Reset(request); c.written = 0 }

func (c *memChannel) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *memChannel) Write(p []byte) (int, error) { c.written += len(p); return len(p), nil }
func (c *memChannel) Close() error                { return nil }
func (c *memChannel) CloseWrite() error           { return nil }
func (c *memChannel) Stderr() io.ReadWriter       { return &c.stderr }
func (c *memChannel) SendRequest(string, bool, []byte) (bool, error) {
	return true, nil
}

// reportFast reports a row's fjord percentiles and its ratios to the
// gliderlabs floor as benchmark metrics.
func reportFast(b *testing.B, r *fastRow) {
	f, g := r.lat[srvFjord], r.lat[srvGliderlabs]
	b.ReportMetric(float64(percentile(f, .5).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(percentile(f, .99).Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(ratio(percentile(f, .5), percentile(g, .5)), "p50/floor")
	b.ReportMetric(ratio(percentile(f, .99), percentile(g, .99)), "p99/floor")
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// printFastTable prints the fast path against its floors.
func printFastTable(w io.Writer) {
	fmt.Fprintf(w, "\nanything new? against the SSH stack's floor: same run, interleaved, one new session per question on an open connection\n")
	fmt.Fprintf(w, "%-38s %8s %8s   %8s %8s   %7s %7s   %8s %8s %6s\n", "", "fjord", "", "gliderlabs floor", "", "fjord/floor", "", "x/crypto floor", "", "")
	fmt.Fprintf(w, "%-38s %8s %8s   %8s %8s   %7s %7s   %8s %8s %6s\n", "", "p50", "p99", "p50", "p99", "p50", "p99", "p50", "p99", "n")
	for _, r := range fastRows {
		f, g, x := r.lat[srvFjord], r.lat[srvGliderlabs], r.lat[srvXCrypto]
		fmt.Fprintf(w, "%-38s %8s %8s   %8s %8s   %6.2fx %6.2fx   %8s %8s %6d\n", fmt.Sprintf("%s (%d B)", r.name, r.bytes),
			fmtDur(percentile(f, .5)), fmtDur(percentile(f, .99)),
			fmtDur(percentile(g, .5)), fmtDur(percentile(g, .99)),
			ratio(percentile(f, .5), percentile(g, .5)), ratio(percentile(f, .99), percentile(g, .99)),
			fmtDur(percentile(x, .5)), fmtDur(percentile(x, .99)), len(f))
	}
	fmt.Fprintf(w, "goal: fjord/floor <= 1.30x at p50 and p99; fjord p99 < 500µs idle, < 2ms with 20 clones running\n")
	fmt.Fprintf(w, "\nserver process per question, over the same run (getrusage and runtime.MemStats in each server's own process, GOMAXPROCS %d)\n", serverProcs)
	fmt.Fprintf(w, "%-38s %10s %10s %10s %12s   %8s %10s %8s\n", "", "CPU fjord", "gliderlabs", "x/crypto", "fjord-floor", "allocs", "gliderlabs", "x/crypto")
	for _, r := range fastRows {
		if r.cpu == nil {
			continue
		}
		fmt.Fprintf(w, "%-38s %8.1fµs %8.1fµs %8.1fµs %10.1fµs   %8.0f %10.0f %8.0f\n", r.name,
			us(r.cpu[srvFjord]), us(r.cpu[srvGliderlabs]), us(r.cpu[srvXCrypto]), us(r.cpu[srvFjord]-r.cpu[srvGliderlabs]),
			r.allocs[srvFjord], r.allocs[srvGliderlabs], r.allocs[srvXCrypto])
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

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
