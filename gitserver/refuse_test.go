package gitserver_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// sshCLI runs the OpenSSH client against the server with key and returns
// its combined output and error.
func (e *env) sshCLI(key clientKey, extra ...string) (string, error) {
	args := []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + e.knownHosts, "-i", key.path, "-p", e.port}
	cmd := exec.Command("ssh", append(args, extra...)...)
	cmd.Env = append(os.Environ(), "HOME="+e.home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestRefusals covers everything the SSH server refuses: each gets one
// clear line to the client and one log line, and nothing on disk changes.
func TestRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	admin := e.user("root", true)
	reader := e.user("reader", false)
	e.repo("app", false)
	e.repo("secret", false)
	e.store.SetGrant("reader", "app", storage.AccessRead)
	e.seed(admin, "app", 2)
	e.seed(admin, "secret", 1)
	before := e.repoState("app") + e.repoState("secret")
	defer func() {
		if after := e.repoState("app") + e.repoState("secret"); after != before {
			t.Errorf("a refusal changed the repos on disk:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}()

	t.Run("shell", func(t *testing.T) {
		out, err := e.sshCLI(reader, "-T", "git@127.0.0.1")
		if err == nil || !strings.Contains(out, "fjord: interactive shells are disabled") {
			t.Fatalf("shell: err=%v out=%q", err, out)
		}
	})
	t.Run("other commands", func(t *testing.T) {
		for _, cmd := range []string{"ls /", "sh -c id", "git-upload-pack 'app'; rm -rf /", "git-upload-pack app extra", "git upload-pack --help", "git-upload-pack"} {
			out, err := e.sshCLI(reader, "git@127.0.0.1", cmd)
			if err == nil || !strings.Contains(out, "fjord: ") {
				t.Errorf("%q: err=%v out=%q", cmd, err, out)
			}
		}
		out, _ := e.sshCLI(reader, "git@127.0.0.1", "ls /")
		if !strings.Contains(out, "only git-upload-pack, git-receive-pack and git-upload-archive run on this server") {
			t.Errorf("ls: %q", out)
		}
	})
	t.Run("hostile paths", func(t *testing.T) {
		c := e.dial(admin)
		for _, path := range []string{"..", "../secret", "app/../secret", "//etc/passwd", "~root/app", "app\x00x", "app\x1b[31m", "-app", ".git", ""} {
			_, stderr, err := execRaw(t, c, "git-upload-pack '"+path+"'", nil, nil)
			var exit *gossh.ExitError
			if !errors.As(err, &exit) || exit.ExitStatus() != 1 {
				t.Errorf("path %q: err = %v, want exit status 1", path, err)
			}
			if !strings.HasPrefix(stderr, "fjord: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("path %q: stderr %q is not one fjord: line", path, stderr)
			}
		}
	})
	t.Run("missing and forbidden look alike", func(t *testing.T) {
		forbidden := e.runGit("", reader, "ls-remote", e.url("secret"))
		missing := e.runGit("", reader, "ls-remote", e.url("nothere"))
		if forbidden.err == nil || missing.err == nil {
			t.Fatalf("ls-remote succeeded: %q %q", forbidden.out, missing.out)
		}
		if strings.ReplaceAll(forbidden.out, "secret", "X") != strings.ReplaceAll(missing.out, "nothere", "X") {
			t.Fatalf("forbidden and missing differ:\n%q\n%q", forbidden.out, missing.out)
		}
		if !strings.Contains(missing.out, `fjord: repository "nothere" not found, or you have no access to it`) {
			t.Fatalf("message: %q", missing.out)
		}
	})
	t.Run("push without write access", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "w")
		e.mustGit("", reader, "clone", "-q", e.url("app"), dir)
		e.mustGit(dir, reader, "commit", "-q", "--allow-empty", "-m", "nope")
		r := e.runGit(dir, reader, "push", "origin", "HEAD:main")
		if r.err == nil || !strings.Contains(r.out, `fjord: user "reader" may read "app" but not push to it`) {
			t.Fatalf("push: err=%v out=%q", r.err, r.out)
		}
	})
	t.Run("pty, env, agent, subsystem and forwarding", func(t *testing.T) {
		c := e.dial(reader)
		s, _ := c.NewSession()
		if err := s.RequestPty("xterm", 80, 24, gossh.TerminalModes{}); err == nil {
			t.Error("pty granted")
		}
		if err := s.Setenv("LD_PRELOAD", "/tmp/evil.so"); err == nil {
			t.Error("LD_PRELOAD accepted")
		}
		if err := s.Setenv("GIT_PROTOCOL", "version=2"); err != nil {
			t.Errorf("GIT_PROTOCOL refused: %v", err)
		}
		if ok, _ := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok {
			t.Error("agent forwarding granted")
		}
		if ok, _ := s.SendRequest("x11-req", true, gossh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00", 0})); ok {
			t.Error("x11 forwarding granted")
		}
		s.Close()

		if out, err := e.sshCLI(reader, "-s", "git@127.0.0.1", "sftp"); err == nil || !strings.Contains(out, "fjord: subsystems (sftp and others) are disabled") {
			t.Errorf("sftp: err=%v out=%q", err, out)
		}

		if _, err := c.Dial("tcp", e.addr); err == nil || !strings.Contains(err.Error(), "port forwarding is disabled") {
			t.Errorf("local forwarding: %v", err)
		}
		if l, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
			l.Close()
			t.Error("remote forwarding granted")
		}
	})
	logs := e.logs.String()
	for _, want := range []string{"refused: interactive shells", "refused: only git-upload-pack", "refused: pty", "refused: port forwarding", "refused: auth-agent-req@openssh.com", `refused: repository \"nothere\" not found`} {
		line := logLine(logs, want)
		if line == "" {
			t.Errorf("no log line %q", want)
			continue
		}
		// Every refusal names the fjord user, and the SSH login name
		// apart as login=.
		if !strings.Contains(line, " user=reader ") && !strings.Contains(line, " user=root ") {
			t.Errorf("log line does not name the fjord user: %s", line)
		}
		if !strings.Contains(line, " login=") {
			t.Errorf("log line does not give the login name as login=: %s", line)
		}
	}
	// The shell was asked for as git@host by the user "reader".
	if line := logLine(logs, "refused: interactive shells"); !strings.Contains(line, " user=reader login=git ") {
		t.Errorf("shell refusal: %s", line)
	}
}

// logLine returns the first log line containing s, or "".
func logLine(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestNotFoundSuggestsReadableRepo checks the "did you mean" of a
// mistyped repo name: the nearest repo the user may read is suggested,
// never one they may not, and a hidden repo and a missing one still read
// alike.
func TestNotFoundSuggestsReadableRepo(t *testing.T) {
	e := newEnv(t, envOptions{})
	admin := e.user("root", true)
	reader := e.user("reader", false)
	for _, r := range []string{"demo", "deno", "platform"} {
		e.repo(r, false)
		e.seed(admin, r, 1)
	}
	e.store.SetGrant("reader", "demo", storage.AccessRead)
	e.store.SetGrant("reader", "platform", storage.AccessRead)
	lsRemote := func(key clientKey, repo string) string {
		t.Helper()
		r := e.runGit("", key, "ls-remote", e.url(repo))
		if r.err == nil {
			t.Fatalf("ls-remote %s succeeded: %q", repo, r.out)
		}
		return r.out
	}

	if out := lsRemote(reader, "dmeo"); !strings.Contains(out, `fjord: repository "dmeo" not found, or you have no access to it; did you mean "demo"?`) {
		t.Errorf("swapped letters: %q", out)
	}
	if out := lsRemote(reader, "platfrom.git"); !strings.Contains(out, `did you mean "platform"?`) {
		t.Errorf("swapped letters with .git: %q", out)
	}
	// "denoo" is one edit from the hidden "deno" and two from "demo".
	if out := lsRemote(reader, "denoo"); strings.Contains(out, `"deno"`) || !strings.Contains(out, `did you mean "demo"?`) {
		t.Errorf("suggested a repo the user may not read, or not the readable one: %q", out)
	}
	// The admin may read "deno", so for them it is the nearest.
	if out := lsRemote(admin, "denoo"); !strings.Contains(out, `did you mean "deno"?`) {
		t.Errorf("admin: %q", out)
	}
	if out := lsRemote(reader, "zzzz"); strings.Contains(out, "did you mean") {
		t.Errorf("suggested a far-off name: %q", out)
	}
	hidden, missing := lsRemote(reader, "deno"), lsRemote(reader, "demx")
	if strings.ReplaceAll(hidden, `"deno"`, "X") != strings.ReplaceAll(missing, `"demx"`, "X") {
		t.Errorf("a hidden repo and a missing one read differently:\n%q\n%q", hidden, missing)
	}
}

type mirrorGuard struct{}

func (mirrorGuard) AllowPush(_ context.Context, repo string) error {
	if repo == "mirror" {
		return errors.New(`"mirror" is a read-only mirror of https://example.com/up.git; push there instead`)
	}
	return nil
}

// TestPushGuard checks the hook point mirrors use to refuse pushes.
func TestPushGuard(t *testing.T) {
	e := newEnv(t, envOptions{guard: mirrorGuard{}})
	ci := e.user("ci", true)
	e.repo("mirror", false)
	e.repo("app", false)
	e.seed(ci, "app", 1)
	before := e.repoState("mirror")
	dir := filepath.Join(t.TempDir(), "w")
	e.mustGit("", ci, "clone", "-q", e.url("mirror"), dir)
	e.mustGit(dir, ci, "commit", "-q", "--allow-empty", "-m", "x")
	r := e.runGit(dir, ci, "push", "origin", "HEAD:main")
	if r.err == nil || !strings.Contains(r.out, `fjord: "mirror" is a read-only mirror of https://example.com/up.git; push there instead`) {
		t.Fatalf("push to mirror: err=%v out=%q", r.err, r.out)
	}
	if after := e.repoState("mirror"); after != before {
		t.Fatalf("refused push changed the repo")
	}
}

// TestAnonymousRead checks that unknown keys are refused unless a repo
// allows anonymous reads, and then may read only that repo.
func TestAnonymousRead(t *testing.T) {
	e := newEnv(t, envOptions{})
	admin := e.user("root", true)
	stranger := e.newKey("stranger", "")
	e.repo("public", false)
	e.repo("private", false)
	e.seed(admin, "public", 1)
	e.seed(admin, "private", 1)
	if r := e.runGit("", stranger, "ls-remote", e.url("public")); r.err == nil || !strings.Contains(r.out, "Permission denied") {
		t.Fatalf("unknown key got in: %v %q", r.err, r.out)
	}
	if _, err := e.store.UpdateRepo("public", func(r *storage.Repo) error { r.AnonRead = true; return nil }); err != nil {
		t.Fatal(err)
	}
	e.mustGit("", stranger, "clone", "-q", e.url("public"), filepath.Join(t.TempDir(), "p"))
	if r := e.runGit("", stranger, "ls-remote", e.url("private")); r.err == nil || !strings.Contains(r.out, "not found, or you have no access") {
		t.Fatalf("anonymous read of private: %v %q", r.err, r.out)
	}
	dir := filepath.Join(t.TempDir(), "w")
	e.mustGit("", stranger, "clone", "-q", e.url("public"), dir)
	e.mustGit(dir, stranger, "commit", "-q", "--allow-empty", "-m", "x")
	if r := e.runGit(dir, stranger, "push", "origin", "HEAD:main"); r.err == nil || !strings.Contains(r.out, "anonymous clients may read") {
		t.Fatalf("anonymous push: %v %q", r.err, r.out)
	}
}

// TestIdentityIsTheVerifiedKey offers an admin's public key first (its
// private key is passphrase-protected, so the client cannot sign with it)
// and then a read-only key: the session must act as the reader.
func TestIdentityIsTheVerifiedKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	adminKey := e.newKey("admin-locked", "secret passphrase")
	if _, err := e.store.CreateUser(storage.User{Name: "root", Admin: true, Keys: []storage.Key{adminKey.pub}}); err != nil {
		t.Fatal(err)
	}
	reader := e.user("reader", false)
	e.repo("app", false)
	e.store.SetGrant("reader", "app", storage.AccessRead)
	e.repo("adminonly", false)
	ssh := e.sshCommand(adminKey.path, reader.path)
	r := e.runGitSSH("", ssh, "ls-remote", e.url("adminonly"))
	if r.err == nil {
		t.Fatalf("offering the admin's public key without its private key gave admin access:\n%s", r.out)
	}
	if !strings.Contains(r.out, "not found, or you have no access") {
		t.Fatalf("unexpected: %q", r.out)
	}
	if r := e.runGitSSH("", ssh, "ls-remote", e.url("app")); r.err != nil {
		t.Fatalf("reader lost access: %v %q", r.err, r.out)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `msg="public key offered" remote=127.0.0.1 key=`+adminKey.pub.Fingerprint) {
		t.Fatal("the client never offered the admin key, so this test proves nothing")
	}
	if !strings.Contains(logs, "user=reader") {
		t.Fatal("log does not name the verified user")
	}
}

// TestLimits checks each configurable limit and its message.
func TestLimits(t *testing.T) {
	t.Run("max sessions", func(t *testing.T) {
		e := newEnv(t, envOptions{limits: gitserver.Limits{MaxSessions: 1}})
		ci := e.user("ci", true)
		e.repo("app", false)
		c := e.dial(ci)
		busy, _ := c.NewSession()
		stdin, _ := busy.StdinPipe()
		stdout, _ := busy.StdoutPipe()
		if err := busy.Start("git-upload-pack 'app'"); err != nil {
			t.Fatal(err)
		}
		stdout.Read(make([]byte, 4)) // the session is being served
		_, err := c.NewSession()
		if err == nil || !strings.Contains(err.Error(), "fjord: too many concurrent git sessions (limit 1)") {
			t.Fatalf("second session: %v", err)
		}
		stdin.Write([]byte("0000"))
		stdin.Close()
		busy.Wait()
		busy.Close()
		// The slot is free again once the first session has ended.
		var s *gossh.Session
		for i := 0; i < 50; i++ {
			if s, err = c.NewSession(); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("session after the busy one ended: %v", err)
		}
		s.Close()
	})
	t.Run("idle timeout", func(t *testing.T) {
		e := newEnv(t, envOptions{limits: gitserver.Limits{IdleTimeout: 300 * time.Millisecond}})
		ci := e.user("ci", true)
		c := e.dial(ci)
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("idle connection not closed")
		}
	})
	t.Run("max push size", func(t *testing.T) {
		e := newEnv(t, envOptions{limits: gitserver.Limits{MaxPushBytes: 64 << 10}})
		ci := e.user("ci", true)
		e.repo("app", false)
		work := e.seed(ci, "app", 1)
		before := e.repoState("app")
		big := make([]byte, 1<<20)
		rand.Read(big)
		os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644)
		e.mustGit(work, ci, "add", ".")
		e.mustGit(work, ci, "commit", "-q", "-m", "big")
		r := e.runGit(work, ci, "push", "origin", "HEAD:main")
		if r.err == nil || !strings.Contains(r.out, "pack exceeds maximum allowed size") {
			t.Fatalf("oversized push: err=%v out=%q", r.err, r.out)
		}
		if after := e.repoState("app"); after != before {
			t.Fatalf("oversized push left something on disk:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	t.Run("failed auth rate limit", func(t *testing.T) {
		e := newEnv(t, envOptions{limits: gitserver.Limits{AuthFailures: 3, AuthWindow: time.Hour}})
		ci := e.user("ci", true)
		e.repo("app", false)
		stranger := e.newKey("stranger", "")
		for i := 0; i < 3; i++ {
			if r := e.runGit("", stranger, "ls-remote", e.url("app")); r.err == nil {
				t.Fatal("unknown key accepted")
			}
		}
		r := e.runGit("", ci, "ls-remote", e.url("app"))
		if r.err == nil || !strings.Contains(r.out, "fjord: too many failed authentications from 127.0.0.1") {
			t.Fatalf("after 3 failures: err=%v out=%q", r.err, r.out)
		}
	})
}

// TestShutdownClosesIdleConnections checks that Shutdown closes a
// connection with no running command at once and lets a running one
// finish.
func TestShutdownClosesIdleConnections(t *testing.T) {
	e := newEnv(t, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	e.seed(ci, "app", 1)
	idle := e.dial(ci)
	busy := e.dial(ci)
	s, _ := busy.NewSession()
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	if err := s.Start("git-upload-pack 'app'"); err != nil {
		t.Fatal(err)
	}
	stdout.Read(make([]byte, 4)) // the command is running

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(ctx) }()
	idleDone := make(chan error, 1)
	go func() { idleDone <- idle.Wait() }()
	select {
	case <-idleDone:
	case <-time.After(30 * time.Second):
		t.Fatal("idle connection still open during shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a command was running", err)
	default:
	}
	// The running command finishes normally, then Shutdown returns.
	stdin.Write([]byte("0000"))
	stdin.Close()
	if err := s.Wait(); err != nil {
		t.Fatalf("running command cut by shutdown: %v", err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after the last command ended")
	}
}
