package main_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	gossh "golang.org/x/crypto/ssh"
)

// fjordBin is the fjord binary built once for these tests: the CLI is
// tested as a user runs it.
var fjordBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fjord-e2e-")
	if err != nil {
		panic(err)
	}
	fjordBin = filepath.Join(dir, "fjord")
	if out, err := exec.Command("go", "build", "-o", fjordBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fjord: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// session is a user's shell: a data dir, a HOME with a key, and the fjord
// binary.
type session struct {
	t     *testing.T
	dir   string
	data  string
	home  string
	key   string // private key path; key+".pub" the public key
	ssh   string
	http  string
	serve *exec.Cmd
	log   *os.File
}

func newSession(t *testing.T) *session {
	dir := t.TempDir()
	s := &session{t: t, dir: dir, data: filepath.Join(dir, "data"), home: filepath.Join(dir, "home")}
	os.MkdirAll(s.home, 0o700)
	s.key = writeKey(t, filepath.Join(s.home, "id_ed25519"))
	return s
}

func writeKey(t *testing.T, path string) string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := gossh.MarshalPrivateKey(priv, "e2e")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := gossh.NewSignerFromKey(priv)
	os.WriteFile(path+".pub", gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
	return path
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs `fjord serve` and waits for /readyz.
func (s *session) start(extra ...string) {
	s.t.Helper()
	if s.ssh == "" {
		s.ssh, s.http = freeAddr(s.t), freeAddr(s.t)
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	s.log = log
	args := append([]string{"serve", "--data", s.data, "--ssh-addr", s.ssh, "--http-addr", s.http}, extra...)
	s.serve = exec.Command(fjordBin, args...)
	s.serve.Stdout, s.serve.Stderr = log, log
	s.serve.Env = append(os.Environ(), "HOME="+s.home)
	if err := s.serve.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { s.stop() })
	for i := 0; i < 200; i++ {
		if resp, err := http.Get("http://" + s.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("fjord serve did not become ready:\n%s", s.serveLog())
}

func (s *session) serveLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "serve.log"))
	return string(b)
}

// stop sends SIGTERM, as systemd and Kubernetes do, and waits.
func (s *session) stop() {
	if s.serve == nil || s.serve.Process == nil {
		return
	}
	s.serve.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.serve.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("fjord serve exited with %v after SIGTERM:\n%s", err, s.serveLog())
		}
	case <-time.After(30 * time.Second):
		s.serve.Process.Kill()
		s.t.Errorf("fjord serve did not stop on SIGTERM")
	}
	s.serve = nil
	s.log.Close()
}

// fjord runs a CLI command and returns stdout+stderr.
func (s *session) fjord(args ...string) (string, error) {
	cmd := exec.Command(fjordBin, append([]string{"--data", s.data}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+s.home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *session) mustFjord(args ...string) string {
	s.t.Helper()
	out, err := s.fjord(args...)
	if err != nil {
		s.t.Fatalf("fjord %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *session) git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+s.home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_SSH_COMMAND=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+filepath.Join(s.home, "known_hosts")+" -i "+s.key,
		"GIT_AUTHOR_NAME=CI", "GIT_AUTHOR_EMAIL=ci@x", "GIT_COMMITTER_NAME=CI", "GIT_COMMITTER_EMAIL=ci@x")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *session) mustGit(dir string, args ...string) string {
	s.t.Helper()
	out, err := s.git(dir, args...)
	if err != nil {
		s.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// TestQuickstart is the README's quickstart as a user types it, then a
// restart: repos, users, grants and the host key survive, and SIGTERM
// shuts down cleanly.
func TestQuickstart(t *testing.T) {
	s := newSession(t)

	// No server yet: a clear error naming the fix.
	out, err := s.fjord("repo", "list")
	if err == nil || !strings.Contains(out, "no fjord server is running") || !strings.Contains(out, "fjord serve --data") {
		t.Fatalf("repo list without a server: err=%v out=%q", err, out)
	}

	s.start("--admin-key", s.key+".pub")
	if fi, err := os.Stat(filepath.Join(s.data, "fjord.sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(s.data, "ssh_host_ed25519_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v %v", fi, err)
	}
	if !strings.Contains(s.serveLog(), "fjord is ready") || !strings.Contains(s.serveLog(), "repo create demo") {
		t.Fatalf("serve does not tell the user what to do next:\n%s", s.serveLog())
	}

	// known_hosts from `fjord hostkey`, as the README says.
	kh := s.mustFjord("hostkey")
	line := lastLine(kh)
	_, port, _ := net.SplitHostPort(s.ssh)
	if !strings.HasPrefix(line, "[127.0.0.1]:"+port+" ssh-ed25519 ") {
		t.Fatalf("known_hosts line %q", line)
	}
	if !strings.Contains(kh, "SHA256:") {
		t.Fatalf("hostkey prints no fingerprint: %q", kh)
	}
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(line+"\n"), 0o600)

	s.mustFjord("repo", "create", "demo")
	out, err = s.fjord("repo", "create", "demo")
	if err == nil || !strings.Contains(out, "already exists") {
		t.Fatalf("duplicate create: %v %q", err, out)
	}
	out, err = s.fjord("repo", "create", "../escape")
	if err == nil || !strings.Contains(out, "invalid name") {
		t.Fatalf("hostile name: %v %q", err, out)
	}
	ciKey := writeKey(t, filepath.Join(s.home, "ci"))
	s.mustFjord("user", "add", "ci", "--key", ciKey+".pub")
	out, err = s.fjord("user", "add", "bad", "--key", ciKey)
	if err == nil || !strings.Contains(out, "is a private key") {
		t.Fatalf("private key as --key: %v %q", err, out)
	}
	s.mustFjord("grant", "ci", "demo", "write")
	out, err = s.fjord("grant", "ci", "demo", "owner")
	if err == nil || !strings.Contains(out, "want read, write or none") {
		t.Fatalf("bad access level: %v %q", err, out)
	}

	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/demo.git", work)
	os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644)
	s.mustGit(work, "add", ".")
	s.mustGit(work, "commit", "-q", "-m", "first")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")
	head := s.mustGit(work, "rev-parse", "HEAD")

	var repos []struct {
		Name     string `json:"name"`
		HeadHash string `json:"headHash"`
	}
	if err := json.Unmarshal([]byte(s.mustFjord("repo", "list", "-o", "json")), &repos); err != nil {
		t.Fatal(err)
	}
	if len(repos) != 1 || repos[0].Name != "demo" || repos[0].HeadHash != head {
		t.Fatalf("repo list -o json = %+v", repos)
	}
	if out := s.mustFjord("repo", "list", "-o", "yaml"); !strings.Contains(out, "name: demo") {
		t.Fatalf("repo list -o yaml: %q", out)
	}
	if out := s.mustFjord("user", "list"); !strings.Contains(out, "ci") || !strings.Contains(out, "admin") {
		t.Fatalf("user list: %q", out)
	}

	// Health, readiness and metrics.
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok", "/metrics": "fjord_git_requests_total"} {
		resp, err := http.Get("http://" + s.http + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
	}

	// Restart: everything survives, including the host key (the same
	// known_hosts still works with StrictHostKeyChecking).
	s.stop()
	if _, err := os.Stat(filepath.Join(s.data, "fjord.sock")); !os.IsNotExist(err) {
		t.Errorf("socket left after clean shutdown: %v", err)
	}
	s.start()
	clone := filepath.Join(s.dir, "clone")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/demo", clone)
	if got := s.mustGit(clone, "rev-parse", "HEAD"); got != head {
		t.Fatalf("after restart HEAD = %s, want %s", got, head)
	}
	var grants []struct{ User, Repo, Access string }
	json.Unmarshal([]byte(s.mustFjord("grant", "list", "-o", "json")), &grants)
	if len(grants) != 1 || grants[0].User != "ci" || grants[0].Access != "write" {
		t.Fatalf("grants after restart: %+v", grants)
	}
	if kh2 := lastLine(s.mustFjord("hostkey")); kh2 != line {
		t.Fatalf("host key changed across restart:\n%s\n%s", line, kh2)
	}

	// Delete, and the repo is gone for clients.
	s.mustFjord("repo", "delete", "demo")
	if out, err := s.git("", "ls-remote", "ssh://"+s.ssh+"/demo"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("deleted repo still served: %v %q", err, out)
	}
}

// TestServeRefusesNewerSchema checks that a database written by a newer
// fjord is not opened.
func TestServeRefusesNewerSchema(t *testing.T) {
	s := newSession(t)
	s.start()
	s.stop()
	db, err := bolt.Open(filepath.Join(s.data, "fjord.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 99))
	})
	db.Close()
	cmd := exec.Command(fjordBin, "serve", "--data", s.data, "--ssh-addr", freeAddr(t), "--http-addr", freeAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "database schema 99") || !strings.Contains(string(out), "newer fjord") {
		t.Fatalf("serve on a newer schema: err=%v\n%s", err, out)
	}
}

// TestSecondServerOnSameDataDir checks the clear error when a data dir is
// already served.
func TestSecondServerOnSameDataDir(t *testing.T) {
	s := newSession(t)
	s.start()
	cmd := exec.Command(fjordBin, "serve", "--data", s.data, "--ssh-addr", freeAddr(t), "--http-addr", freeAddr(t))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another fjord process") {
		t.Fatalf("second serve: err=%v\n%s", err, out)
	}
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			last = l
		}
	}
	return last
}

// TestHostKeyFlag serves with a host key from a file (as mounted from a
// Kubernetes Secret) and refuses one that is not a private key.
func TestHostKeyFlag(t *testing.T) {
	s := newSession(t)
	key := filepath.Join(s.dir, "secret_host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	fp, _ := exec.Command("ssh-keygen", "-lf", key+".pub").Output()
	s.start("--host-key", key)
	if out := s.mustFjord("hostkey"); !strings.Contains(out, strings.Fields(string(fp))[1]) {
		t.Fatalf("hostkey %q does not show the key from --host-key (%s)", out, fp)
	}
	if _, err := os.Stat(filepath.Join(s.data, "ssh_host_ed25519_key")); !os.IsNotExist(err) {
		t.Fatalf("a host key was generated although --host-key was given: %v", err)
	}
	s.stop()
	out, err := exec.Command(fjordBin, "serve", "--data", s.data, "--host-key", key+".pub", "--ssh-addr", freeAddr(t), "--http-addr", freeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--host-key") {
		t.Fatalf("serve with a public key as --host-key: %v %s", err, out)
	}
}
