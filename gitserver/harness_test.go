package gitserver_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// env is one running fjord SSH server on a temp data dir, with real key
// files and a known_hosts file holding its host key.
type env struct {
	t          testing.TB
	logs       *syncBuffer
	store      *storage.Store
	srv        *gitserver.Server
	addr       string
	port       string
	home       string // HOME for git and ssh, so no user config leaks in
	knownHosts string
	hostKey    gossh.PublicKey
	hostSigner gossh.Signer
}

type envOptions struct {
	limits gitserver.Limits
	guard  gitserver.PushGuard
	// logTo, if set, receives the server's log at Info, as `fjord serve`
	// logs by default, instead of the in-memory Debug log tests read.
	logTo io.Writer
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logs := &syncBuffer{}
	var logw io.Writer = logs
	if testing.Verbose() {
		logw = io.MultiWriter(logs, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.logTo != nil {
		log = slog.New(slog.NewTextHandler(o.logTo, nil))
	}
	store, err := storage.Open(ctx, filepath.Join(dir, "data"), &storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hk, err := gitserver.LoadOrCreateHostKey(filepath.Join(dir, "data", "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gitserver.New(ctx, gitserver.Config{Store: store, HostKey: hk, Logger: log, Limits: o.limits, PushGuard: o.guard})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		store.Close()
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	e := &env{t: t, logs: logs, store: store, srv: srv, addr: l.Addr().String(), port: port, home: filepath.Join(dir, "home"), hostKey: hk.PublicKey(), hostSigner: hk}
	os.MkdirAll(e.home, 0o700)
	e.knownHosts = filepath.Join(dir, "known_hosts")
	line := gitserver.KnownHostsLine("127.0.0.1", mustAtoi(port), hk.PublicKey())
	if err := os.WriteFile(e.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// syncBuffer is a log sink tests can read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// with returns a copy of e that reports failures to t (for subtests).
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

func mustAtoi(s string) int {
	var n int
	fmt.Sscanf(s, "%d", &n)
	return n
}

// clientKey is a key pair on disk, as a CI job or a person has it.
type clientKey struct {
	path   string // private key file; path+".pub" is the public key
	signer gossh.Signer
	pub    storage.Key
}

func (e *env) newKey(name string, passphrase string) clientKey {
	e.t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = gossh.MarshalPrivateKey(priv, name)
	} else {
		block, err = gossh.MarshalPrivateKeyWithPassphrase(priv, name, []byte(passphrase))
	}
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.home, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		e.t.Fatal(err)
	}
	signer, _ := gossh.NewSignerFromKey(priv)
	auth := gossh.MarshalAuthorizedKey(signer.PublicKey())
	os.WriteFile(path+".pub", auth, 0o644)
	k, err := storage.ParseKey(string(auth))
	if err != nil {
		e.t.Fatal(err)
	}
	return clientKey{path: path, signer: signer, pub: k}
}

// user creates a user with a fresh key and returns the key.
func (e *env) user(name string, admin bool) clientKey {
	e.t.Helper()
	k := e.newKey(name, "")
	if _, err := e.store.CreateUser(storage.User{Name: name, Admin: admin, Keys: []storage.Key{k.pub}}); err != nil {
		e.t.Fatal(err)
	}
	return k
}

func (e *env) repo(name string, anon bool) {
	e.t.Helper()
	if _, err := e.store.CreateRepo(context.Background(), storage.Repo{Name: name, AnonRead: anon}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) url(repo string) string { return "ssh://127.0.0.1:" + e.port + "/" + repo }

// sshCommand is GIT_SSH_COMMAND for a key: strict host key checking
// against the known_hosts file, no agent, no user config.
func (e *env) sshCommand(keys ...string) string {
	cmd := "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + e.knownHosts
	for _, k := range keys {
		cmd += " -i " + k
	}
	return cmd
}

// gitResult is what a git command printed.
type gitResult struct {
	out string
	err error
}

// runGit runs the git CLI in dir as the holder of key.
func (e *env) runGit(dir string, key clientKey, args ...string) gitResult {
	return e.runGitSSH(dir, e.sshCommand(key.path), args...)
}

func (e *env) runGitSSH(dir, sshCmd string, args ...string) gitResult {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+e.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_SSH_COMMAND="+sshCmd, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=CI", "GIT_AUTHOR_EMAIL=ci@example.com", "GIT_COMMITTER_NAME=CI", "GIT_COMMITTER_EMAIL=ci@example.com",
	)
	out, err := cmd.CombinedOutput()
	return gitResult{out: string(out), err: err}
}

// mustGit runs git and fails the test on error.
func (e *env) mustGit(dir string, key clientKey, args ...string) string {
	e.t.Helper()
	r := e.runGit(dir, key, args...)
	if r.err != nil {
		e.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), r.err, r.out)
	}
	return strings.TrimSpace(r.out)
}

// seed clones repo, adds commits and pushes them, returning the work tree.
func (e *env) seed(key clientKey, repo string, commits int) string {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "work")
	e.mustGit("", key, "clone", "-q", e.url(repo), dir)
	for i := 0; i < commits; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%d.txt", i)), []byte(fmt.Sprintf("content %d\n%s\n", i, strings.Repeat("x", 100*i))), 0o644)
		e.mustGit(dir, key, "add", ".")
		e.mustGit(dir, key, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
	}
	e.mustGit(dir, key, "push", "-q", "origin", "HEAD:refs/heads/main")
	return dir
}

// repoState is a repo's refs and object files on disk, to prove a refused
// request changed nothing.
func (e *env) repoState(repo string) string {
	e.t.Helper()
	var b bytes.Buffer
	root := e.store.RepoPath(repo)
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasPrefix(rel, "logs") || rel == "FETCH_HEAD" {
			return nil
		}
		fmt.Fprintf(&b, "%s %d\n", rel, fi.Size())
		return nil
	})
	cmd := exec.Command("git", "-C", root, "for-each-ref")
	out, _ := cmd.Output()
	b.Write(out)
	return b.String()
}

// dial opens an SSH connection with x/crypto, for what the git CLI cannot
// express (raw protocol bytes, forwarding requests).
func (e *env) dial(key clientKey) *gossh.Client {
	e.t.Helper()
	c, err := gossh.Dial("tcp", e.addr, &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(key.signer)},
		HostKeyCallback: gossh.FixedHostKey(e.hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		e.t.Fatalf("ssh dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// execRaw runs one command on a new session and returns stdout, stderr
// and the exit status.
func execRaw(t testing.TB, c *gossh.Client, cmd string, stdin []byte, env map[string]string) (string, string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	for k, v := range env {
		if err := s.Setenv(k, v); err != nil {
			t.Fatalf("setenv %s: %v", k, err)
		}
	}
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	s.Stdin = bytes.NewReader(stdin)
	err = s.Run(cmd)
	return stdout.String(), stderr.String(), err
}
