package gitserver_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// The fast-path benchmark runs each server it measures in a child process
// of its own: the test binary re-run as TestBenchServerProcess, as the
// standard library's os/exec tests do. getrusage(RUSAGE_SELF) and the
// allocation counters in that process then count that server's work only.
// Run in-process, they would also count the benchmark's SSH client (its
// encryption, its goroutines), which costs about as much as the server and
// could only be subtracted by guesswork; and one process for all three
// would share one heap, so one server's garbage would be collected in the
// others' time.
//
// Three servers, for the same client key:
//
//   - fjord, as `fjord serve` runs it, on a 1,000-commit repo;
//   - the gliderlabs floor: gliderlabs/ssh with fjord's settings (version,
//     host key, idle timeout, public-key auth) and its default session
//     handler, answering each exec with fixed bytes;
//   - the x/crypto floor: golang.org/x/crypto/ssh alone, answering each
//     exec with the same bytes.
//
// Each floor accepts GIT_PROTOCOL, answers the exec with exactly the bytes
// fjord sent for the same question (the v0 advertisement, or the v2
// capabilities and ls-refs answer), reads as many bytes as the client's
// request has (a v0 client's flush, a v2 client's ls-refs request and
// final flush), sends exit-status 0 and closes the channel: the same
// messages both ways as fjord's answer, with no git in it, so the cost of
// the SSH exchange alone, below which no git server on this stack can go.
// (Closing before the request is read is not an option for any server: the
// client's write of its request then fails with EOF.)

// The environment of a server process: the client's private key, which
// server to run, and the directory where fjord's child leaves its answers
// for the floors' children.
const (
	benchServerKeyEnv     = "FJORD_BENCH_SERVER_KEY"
	benchServerRoleEnv    = "FJORD_BENCH_SERVER_ROLE"
	benchServerAnswersEnv = "FJORD_BENCH_SERVER_ANSWERS"
)

// benchServerProfileEnv, when set, makes each server process write a CPU
// profile to $FJORD_BENCH_SERVER_PROFILE-ROLE.cpu and an allocation
// profile (sampled at the runtime's default rate) to ...-ROLE.mem, ROLE
// being fjord, gliderlabs or xcrypto, for go tool pprof: a server's share
// alone, without the client's.
const benchServerProfileEnv = "FJORD_BENCH_SERVER_PROFILE"

// benchServerProcsEnv, when set, is the GOMAXPROCS of the server
// processes (the benchmark's own is set with -cpu or GOMAXPROCS).
const benchServerProcsEnv = "FJORD_BENCH_SERVER_GOMAXPROCS"

// benchServerLine prefixes a child's answers on stdout, so they stand out
// from anything the testing package prints.
const benchServerLine = "fjord-bench-server "

// benchServerInfo is what a child tells the benchmark once it serves.
type benchServerInfo struct {
	Addr     string // listen address
	HostKey  string // authorized_keys line
	RepoPath string // fjord's repo on disk, for sshd
	V0, V2   int    // bytes of each answer
	Procs    int    // GOMAXPROCS
}

// benchServerStats is a child's own resource use so far.
type benchServerStats struct {
	CPU     time.Duration // user + system
	Mallocs uint64
}

// TestBenchServerProcess is one of the benchmark's server processes, not a
// test: it returns at once unless benchServerKeyEnv is set.
func TestBenchServerProcess(t *testing.T) {
	keyPath := os.Getenv(benchServerKeyEnv)
	if keyPath == "" {
		return
	}
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	answers := os.Getenv(benchServerAnswersEnv)
	var info benchServerInfo
	switch role := os.Getenv(benchServerRoleEnv); role {
	case srvFjord:
		info = serveFjordForBench(t, signer, answers)
	case srvGliderlabs, srvXCrypto:
		v0, err := os.ReadFile(filepath.Join(answers, "v0"))
		if err != nil {
			t.Fatal(err)
		}
		v2, err := os.ReadFile(filepath.Join(answers, "v2"))
		if err != nil {
			t.Fatal(err)
		}
		answer := func(v2Asked bool) floorAnswer {
			if v2Asked {
				return floorAnswer{v2, len(lsRefsRequest)}
			}
			return floorAnswer{v0, len("0000")} // the flush of a client that wants nothing
		}
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		hk, _ := gossh.NewSignerFromKey(priv)
		info = benchServerInfo{HostKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(hk.PublicKey()))), V0: len(v0), V2: len(v2)}
		if role == srvGliderlabs {
			info.Addr = serveGliderlabsFloor(t, hk, signer.PublicKey(), answer)
		} else {
			info.Addr = serveXCryptoFloor(t, hk, signer.PublicKey(), answer)
		}
	default:
		t.Fatalf("%s=%q: want %s, %s or %s", benchServerRoleEnv, role, srvFjord, srvGliderlabs, srvXCrypto)
	}
	info.Procs = runtime.GOMAXPROCS(0)

	if path := os.Getenv(benchServerProfileEnv); path != "" {
		stop := profileServer(t, path+"-"+strings.ReplaceAll(os.Getenv(benchServerRoleEnv), "/", ""))
		defer stop()
	}

	out := json.NewEncoder(os.Stdout)
	fmt.Print(benchServerLine)
	out.Encode(info)
	// One line in, one line of stats out, until the benchmark closes stdin.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Print(benchServerLine)
		out.Encode(benchServerStats{
			CPU:     time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
			Mallocs: ms.Mallocs,
		})
	}
}

// serveFjordForBench serves fjord on the benchmark's repo for the holder
// of signer, and leaves its answers in the directory answers.
func serveFjordForBench(t *testing.T, signer gossh.Signer, answers string) benchServerInfo {
	key, err := storage.ParseKey(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	if err != nil {
		t.Fatal(err)
	}
	// The server logs to a file, one write per line as to a journal,
	// not into the memory buffer tests read (which grows, and copies
	// itself, for as long as the benchmark runs).
	logFile, err := os.Create(filepath.Join(t.TempDir(), "fjord.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	e := newEnv(t, envOptions{logTo: logFile})
	e.benchRepo(key)

	// The floors answer with the very bytes fjord answers with.
	c := e.dial(clientKey{signer: signer})
	v0, err := anythingNewV0(c, "app.git")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := anythingNewV2(c, "app.git")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for name, b := range map[string][]byte{"v0": v0, "v2": v2} {
		if err := os.WriteFile(filepath.Join(answers, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return benchServerInfo{
		Addr:     e.addr,
		HostKey:  strings.TrimSpace(string(gossh.MarshalAuthorizedKey(e.hostKey))),
		RepoPath: e.store.RepoPath("app"),
		V0:       len(v0),
		V2:       len(v2),
	}
}

// benchRepo sets up what the fast-path benchmarks ask about: the repo
// "app" with 1,000 commits and 41 branches, read by the user "reconciler"
// holding key, a reader as a reconciler or Argo CD is (not an admin, one
// grant).
func (e *env) benchRepo(key storage.Key) {
	e.t.Helper()
	if _, err := e.store.CreateUser(storage.User{Name: "reconciler", Keys: []storage.Key{key}}); err != nil {
		e.t.Fatal(err)
	}
	e.repo("app", false)
	if err := e.store.SetGrant("reconciler", "app", storage.AccessRead); err != nil {
		e.t.Fatal(err)
	}
	generateRepo(e.t, e.store.RepoPath("app"), 1000)
	addReleaseBranches(e.t, e.store.RepoPath("app"), 40)
	if _, err := e.store.RefreshRefs(context.Background(), "app"); err != nil {
		e.t.Fatal(err)
	}
}

// addReleaseBranches adds n branches at older commits, as a GitOps repo
// with release branches has: about 3 KB of advertisement in all, the size
// issue 15 measured with.
func addReleaseBranches(t testing.TB, bare string, n int) {
	out, err := exec.Command("git", "--git-dir", bare, "rev-list", "--max-count", fmt.Sprint(n), "main").Output()
	if err != nil {
		t.Fatalf("rev-list: %v", err)
	}
	var batch strings.Builder
	for i, c := range strings.Fields(string(out)) {
		fmt.Fprintf(&batch, "create refs/heads/release/1.%d %s\n", i, c)
	}
	cmd := exec.Command("git", "--git-dir", bare, "update-ref", "--stdin")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("update-ref: %v: %s", err, out)
	}
}

// profileServer starts the CPU and allocation profiles of the server
// process; the returned func writes them.
func profileServer(t *testing.T, path string) func() {
	cpu, err := os.Create(path + ".cpu")
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		cpu.Close()
		mem, err := os.Create(path + ".mem")
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		if err := pprof.Lookup("allocs").WriteTo(mem, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// floorAnswer is what a floor answers and how much it reads.
type floorAnswer struct {
	out     []byte // written as soon as the exec is accepted
	request int    // bytes then read from the client
}

// wantsV2 reports whether an env request payload asks for protocol v2.
func wantsV2(payload []byte) bool {
	var kv struct{ Name, Value string }
	return gossh.Unmarshal(payload, &kv) == nil && kv.Name == "GIT_PROTOCOL" && strings.Contains(kv.Value, "version=2")
}

// serveGliderlabsFloor serves gliderlabs/ssh as fjord configures it, with
// its default session handler writing the answer.
func serveGliderlabsFloor(t *testing.T, hk gossh.Signer, client gossh.PublicKey, answer func(v2 bool) floorAnswer) string {
	srv := &ssh.Server{
		Version:     "fjord",
		HostSigners: []ssh.Signer{hk},
		IdleTimeout: 5 * time.Minute, // fjord's default: a deadline update on every read and write
		PublicKeyHandler: func(_ ssh.Context, key ssh.PublicKey) bool {
			return ssh.KeysEqual(key, client)
		},
		Handler: func(s ssh.Session) {
			v2 := false
			for _, kv := range s.Environ() {
				v2 = v2 || (strings.HasPrefix(kv, "GIT_PROTOCOL=") && strings.Contains(kv, "version=2"))
			}
			a := answer(v2)
			s.Write(a.out)
			io.ReadFull(s, make([]byte, a.request))
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// serveXCryptoFloor serves golang.org/x/crypto/ssh with nothing on top.
func serveXCryptoFloor(t *testing.T, hk gossh.Signer, client gossh.PublicKey, answer func(v2 bool) floorAnswer) string {
	cfg := &gossh.ServerConfig{
		ServerVersion: "SSH-2.0-fjord",
		PublicKeyCallback: func(_ gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
			if string(key.Marshal()) != string(client.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return &gossh.Permissions{}, nil
		},
	}
	cfg.AddHostKey(hk)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := gossh.NewServerConn(nc, cfg)
				if err != nil {
					nc.Close()
					return
				}
				go gossh.DiscardRequests(reqs)
				for nch := range chans {
					go xcryptoSession(nch, answer)
				}
			}()
		}
	}()
	return l.Addr().String()
}

func xcryptoSession(nch gossh.NewChannel, answer func(v2 bool) floorAnswer) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	v2 := false
	for req := range reqs {
		switch req.Type {
		case "env":
			v2 = v2 || wantsV2(req.Payload)
			req.Reply(true, nil)
		case "exec":
			req.Reply(true, nil)
			go func() {
				a := answer(v2)
				ch.Write(a.out)
				io.ReadFull(ch, make([]byte, a.request))
				ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{0}))
				ch.Close()
			}()
		default:
			req.Reply(false, nil)
		}
	}
}

// benchServer is one running server process.
type benchServer struct {
	name  string
	info  benchServerInfo
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startBenchServer starts the server process of role for key; answers is
// the directory fjord's process leaves its answers in for the floors, so
// fjord's must start first.
func startBenchServer(b *testing.B, role string, key clientKey, answers string) *benchServer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServerProcess$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), benchServerKeyEnv+"="+key.path, benchServerRoleEnv+"="+role, benchServerAnswersEnv+"="+answers)
	if n := os.Getenv(benchServerProcsEnv); n != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+n)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the benchmark's %s server process: %v", role, err)
	}
	s := &benchServer{name: role, stdin: stdin, out: bufio.NewReader(stdout)}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, s.out); cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if err := s.read(&s.info); err != nil {
		b.Fatalf("%s server process: %v\n%s", role, err, stderr.String())
	}
	return s
}

// read decodes the child's next answer line into v.
func (s *benchServer) read(v any) error {
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read from the server process: %w (its output ended: %q)", err, line)
		}
		if rest, ok := strings.CutPrefix(line, benchServerLine); ok {
			return json.Unmarshal([]byte(rest), v)
		}
	}
}

// stats returns the child's resource use so far.
func (s *benchServer) stats(b *testing.B) benchServerStats {
	b.Helper()
	var st benchServerStats
	if _, err := io.WriteString(s.stdin, "stats\n"); err != nil {
		b.Fatal(err)
	}
	if err := s.read(&st); err != nil {
		b.Fatal(err)
	}
	return st
}

// dial opens a connection to the server.
func (s *benchServer) dial(b *testing.B, key clientKey) *gossh.Client {
	b.Helper()
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(s.info.HostKey))
	if err != nil {
		b.Fatal(err)
	}
	c, err := gossh.Dial("tcp", s.info.Addr, &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(key.signer)},
		HostKeyCallback: gossh.FixedHostKey(pk),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		b.Fatalf("dial %s at %s: %v", s.name, s.info.Addr, err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
