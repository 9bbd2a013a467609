package main_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnknownCommand checks that a typo in a subcommand fails with a
// non-zero exit in every command group, suggesting the command meant when
// one is close, and that a group alone still prints its help.
func TestUnknownCommand(t *testing.T) {
	s := newSession(t)
	for _, group := range []string{"", "repo", "user", "grant", "mirror", "pushmirror", "app", "bench"} {
		args := append(strings.Fields(group), "lsit")
		out, err := s.fjord(args...)
		if err == nil {
			t.Errorf("fjord %s lsit exited 0:\n%s", group, out)
			continue
		}
		if !strings.Contains(out, `unknown command "lsit"`) {
			t.Errorf("fjord %s lsit: %q", group, out)
		}
		// Every group but the root and bench has a list command.
		if group != "" && group != "bench" && !strings.Contains(out, "did you mean list?") {
			t.Errorf("fjord %s lsit does not suggest list: %q", group, out)
		}
	}
	if out, err := s.fjord("mirror", "histroy"); err == nil || !strings.Contains(out, "did you mean history?") {
		t.Errorf("fjord mirror histroy: %v %q", err, out)
	}
	if out, err := s.fjord("repo"); err != nil || !strings.Contains(out, "Available Commands") {
		t.Errorf("fjord repo alone: %v %q", err, out)
	}
}

// TestFlagMistakes checks the messages for flag values a new user gets
// wrong: each names the flag and shows a value that works.
func TestFlagMistakes(t *testing.T) {
	s := newSession(t)
	serve := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(fjordBin, append([]string{"serve", "--data", s.data}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("serve %v started", args)
		}
		return string(out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ssh-addr", "2222", "--http-addr", freeAddr(t)}, `--ssh-addr "2222": want HOST:PORT, e.g. --ssh-addr 127.0.0.1:2222 (or --ssh-addr :2222 for every interface)`},
		{[]string{"--ssh-addr", freeAddr(t), "--http-addr", "8080"}, `--http-addr "8080": want HOST:PORT, e.g. --http-addr 127.0.0.1:8080`},
		{[]string{"--ssh-addr", "localhost:ssh2", "--http-addr", freeAddr(t)}, `--ssh-addr "localhost:ssh2": want HOST:PORT`},
		{[]string{"--ssh-addr", freeAddr(t), "--http-addr", freeAddr(t), "--admin-key", s.key}, "--admin-key " + s.key + " is a private key: give the public key, e.g. --admin-key " + s.key + ".pub"},
		{[]string{"--ssh-addr", freeAddr(t), "--http-addr", freeAddr(t), "--admin-key", s.key + ".missing.pub"}, "ssh-keygen -t ed25519"},
		{[]string{"--shutdown-timeout", "30"}, `--shutdown-timeout "30": want a duration, e.g. --shutdown-timeout=90s`},
	} {
		if out := serve(c.args...); !strings.Contains(out, c.want) {
			t.Errorf("serve %v said %q, want %q", c.args, out, c.want)
		}
	}
	if out, err := s.fjord("repo", "update", "demo", "--anon-read=yes"); err == nil || !strings.Contains(out, `--anon-read "yes": want true or false, e.g. --anon-read=true`) {
		t.Errorf("--anon-read=yes: %v %q", err, out)
	}
	if out, err := s.fjord("repo", "create", "demo", "--anon-read=yes"); err == nil || strings.Contains(out, "strconv") {
		t.Errorf("repo create --anon-read=yes: %v %q", err, out)
	}
}

// TestDidYouMean checks that the CLI suggests the nearest existing name
// for a repo, user or mirror that does not exist.
func TestDidYouMean(t *testing.T) {
	s := newSession(t)
	s.start("--admin-key", s.key+".pub")
	s.mustFjord("repo", "create", "demo", "--description", "the demo app")
	s.mustFjord("repo", "create", "payments")
	up := filepath.Join(s.dir, "up.git")
	s.mustGit("", "init", "-q", "--bare", up)
	s.mustFjord("mirror", "add", "gitops", "--upstream", "file://"+up)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"repo", "update", "dmeo", "--anon-read=true"}, `repo "dmeo": not found; did you mean "demo"?`},
		{[]string{"repo", "delete", "paymnets"}, `repo "paymnets": not found; did you mean "payments"?`},
		{[]string{"grant", "admin", "dmeo", "read"}, `repo "dmeo": not found; did you mean "demo"?`},
		{[]string{"grant", "amdin", "demo", "read"}, `user "amdin": not found; did you mean "admin"?`},
		{[]string{"user", "delete", "admn"}, `user "admn": not found; did you mean "admin"?`},
		{[]string{"mirror", "sync", "gitosp"}, `mirror "gitosp": not found; did you mean "gitops"?`},
		{[]string{"mirror", "status", "gtiops"}, `mirror "gtiops": not found; did you mean "gitops"?`},
	} {
		if out, err := s.fjord(c.args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("fjord %v: %v %q, want %q", c.args, err, out, c.want)
		}
	}
	// Nothing near: no suggestion.
	if out, err := s.fjord("repo", "delete", "zzzzzzzz"); err == nil || strings.Contains(out, "did you mean") {
		t.Errorf("repo delete of a name far from all: %v %q", err, out)
	}
	// repo list shows the description.
	out := s.mustFjord("repo", "list")
	if !strings.Contains(out, "DESCRIPTION") || !strings.Contains(out, "the demo app") {
		t.Errorf("repo list does not show the description:\n%s", out)
	}
	s.mustFjord("repo", "update", "demo", "--description", "renamed")
	if out := s.mustFjord("repo", "list"); !strings.Contains(out, "renamed") {
		t.Errorf("repo update --description:\n%s", out)
	}
}

// TestHostkeyServerStopped checks that `fjord hostkey` with the server
// stopped uses the address the server last listened on, and says it is
// guessing when no server ever recorded one.
func TestHostkeyServerStopped(t *testing.T) {
	s := newSession(t)
	s.start()
	running := lastLine(s.mustFjord("hostkey"))
	s.stop()
	out := s.mustFjord("hostkey")
	_, port, _ := net.SplitHostPort(s.ssh)
	if line := lastLine(out); line != running || !strings.HasPrefix(line, "[127.0.0.1]:"+port+" ") {
		t.Fatalf("hostkey with the server stopped printed %q, want the running server's %q", line, running)
	}
	if !strings.Contains(out, "last listened on, "+s.ssh) {
		t.Errorf("hostkey does not say where the address comes from: %q", out)
	}
	// A data dir with a host key but no record (made by an older fjord).
	if err := os.Remove(filepath.Join(s.data, "serve.json")); err != nil {
		t.Fatal(err)
	}
	out = s.mustFjord("hostkey")
	if !strings.Contains(out, "guessing 127.0.0.1:2222") || !strings.Contains(out, "--port") {
		t.Errorf("hostkey without a record does not say it guesses: %q", out)
	}
}
