// Package fjordtest runs the real fjord binary for tests that treat it as
// a black box (crash trials, load, the security sweep): it builds
// cmd/fjord once, starts `fjord serve` on a fresh data dir with random
// ports, and drives it with the fjord CLI and the git CLI over real SSH.
package fjordtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Build builds cmd/fjord into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("fjordtest: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "fjord")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fjord")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("fjordtest: build fjord: %w\n%s", err, out)
	}
	return bin, nil
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Binary builds the fjord binary once per test process (into a temp dir
// left for the OS to clean) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fjordtest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin, buildErr = Build(context.Background(), dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// Server is one `fjord serve` on its own data dir, with an admin user
// whose key is Key.
type Server struct {
	Bin  string
	Dir  string // everything of this server lives under Dir
	Data string
	Home string
	// Key is the admin's private key file; Key+".pub" the public key.
	Key string
	// SSHAddr and HTTPAddr are fixed at the first Start and kept across
	// restarts, so clients' known_hosts and URLs stay valid.
	SSHAddr, HTTPAddr string

	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// New prepares a server in a temp dir of t; it does not start it.
func New(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{Bin: Binary(t), Dir: dir, Data: filepath.Join(dir, "data"), Home: filepath.Join(dir, "home")}
	if err := os.MkdirAll(s.Home, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := WriteKey(filepath.Join(s.Home, "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	s.Key = key
	s.SSHAddr, s.HTTPAddr = FreeAddr(t), FreeAddr(t)
	t.Cleanup(func() { s.Stop() })
	return s
}

// WriteKey writes a new ed25519 key pair to path and path+".pub" and
// returns path.
func WriteKey(path string) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := gossh.MarshalPrivateKey(priv, "fjordtest")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path+".pub", gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs `fjord serve` with the admin key and extra flags, waits for
// /readyz and writes the host key to HOME/known_hosts.
func (s *Server) Start(extra ...string) error {
	log, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	args := append([]string{"serve", "--data", s.Data, "--ssh-addr", s.SSHAddr, "--http-addr", s.HTTPAddr,
		"--admin-key", s.Key + ".pub"}, extra...)
	s.cmd = exec.Command(s.Bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.Env = s.env()
	if err := s.cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("fjordtest: start fjord serve: %w", err)
	}
	s.log = log
	s.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(s.cmd, s.done)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.cmd = nil
			s.log.Close()
			return fmt.Errorf("fjordtest: fjord serve exited at start (%v):\n%s", err, tail(s.Log(), 3000))
		default:
		}
		if resp, err := http.Get("http://" + s.HTTPAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				out, err := s.Fjord("hostkey")
				if err != nil {
					return fmt.Errorf("fjordtest: hostkey: %w: %s", err, out)
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				return os.WriteFile(filepath.Join(s.Home, "known_hosts"), []byte(lines[len(lines)-1]+"\n"), 0o600)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("fjordtest: fjord serve not ready after 60s:\n%s", tail(s.Log(), 3000))
}

// Pid is the server's process id, 0 when it is not running.
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
	s.log.Close()
}

// Stop sends SIGTERM and waits up to 30 s (then SIGKILL). It returns the
// exit error of a server that did not stop cleanly.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
		err = errors.New("fjordtest: fjord serve did not stop within 30s of SIGTERM")
	}
	s.cmd = nil
	s.log.Close()
	return err
}

// LogPath is the file the server's output goes to, across restarts.
func (s *Server) LogPath() string { return filepath.Join(s.Dir, "serve.log") }

// Log returns everything the server logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath())
	return string(b)
}

func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "FJORD_") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+s.Home, "GIT_CONFIG_NOSYSTEM=1")
}

// Fjord runs the fjord CLI against this server and returns its combined
// output.
func (s *Server) Fjord(args ...string) (string, error) {
	return s.FjordContext(context.Background(), args...)
}

// FjordContext is Fjord with a context that kills the CLI when done.
func (s *Server) FjordContext(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.Bin, append([]string{"--data", s.Data}, args...)...)
	cmd.Env = s.env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// URL is the SSH URL of a repo on this server.
func (s *Server) URL(repo string) string { return "ssh://" + s.SSHAddr + "/" + repo + ".git" }

// Git runs git in dir (may be empty) as the admin over SSH.
func (s *Server) Git(ctx context.Context, dir string, args ...string) (string, error) {
	return s.GitAs(ctx, s.Key, dir, args...)
}

// GitAs runs git in dir authenticating with the private key file key.
func (s *Server) GitAs(ctx context.Context, key, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(s.env(),
		"GIT_SSH_COMMAND=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o UserKnownHostsFile="+filepath.Join(s.Home, "known_hosts")+" -i "+key,
		"GIT_AUTHOR_NAME=CI", "GIT_AUTHOR_EMAIL=ci@example.com", "GIT_COMMITTER_NAME=CI", "GIT_COMMITTER_EMAIL=ci@example.com")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// RepoPath is a repo's bare directory in the data dir.
func (s *Server) RepoPath(repo string) string {
	return filepath.Join(s.Data, "repos", filepath.FromSlash(repo)+".git")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
