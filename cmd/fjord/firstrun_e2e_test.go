package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// welcome returns what the last `fjord serve` start printed for people.
func (s *session) welcome() string {
	log := s.serveLog()
	i := strings.LastIndex(log, "fjord is ready.")
	if i < 0 {
		s.t.Fatalf("serve printed no welcome:\n%s", log)
	}
	return log[i:]
}

// sh runs one line as a user pastes it into bash, in the session's
// directory with the session's HOME.
func (s *session) sh(line string) (string, error) {
	cmd := exec.Command("bash", "-c", line)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "HOME="+s.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestFirstRun follows what a fresh `fjord serve` tells a new user to do,
// line by line as printed (a key made with ssh-keygen, a user with a
// literal name, a repo, the host key in a known_hosts file of its own,
// a clone through UserKnownHostsFile), then restarts: with users and repos
// in place the hints to add them are gone.
func TestFirstRun(t *testing.T) {
	s := newSession(t)
	s.start()
	w := s.welcome()
	for _, want := range []string{"ssh-keygen -t ed25519", "user add alice --key ~/.ssh/id_ed25519.pub --admin", "repo create demo",
		"hostkey > fjord_known_hosts", "UserKnownHostsFile=$PWD/fjord_known_hosts", "hostkey >> ~/.ssh/known_hosts",
		"make run ARGS='--kubeconfig FILE'"} {
		if !strings.Contains(w, want) {
			t.Errorf("first welcome lacks %q:\n%s", want, w)
		}
	}
	os.MkdirAll(filepath.Join(s.home, ".ssh"), 0o700)
	ran := 0
	for _, line := range strings.Split(w, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "ssh-keygen "):
			// Without a terminal: no passphrase prompt, no questions.
			line, _, _ = strings.Cut(line, "#")
			line += " -q -N '' -f ~/.ssh/id_ed25519"
		case strings.HasPrefix(line, "git clone "):
			// The test's ssh must not read the real user's ~/.ssh (ssh
			// takes ~ from the password database, not $HOME).
			line = strings.Replace(line, `"ssh -o `, `"ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i `+s.home+`/.ssh/id_ed25519 -o `, 1)
		case strings.HasPrefix(line, fjordBin+" "):
		default:
			continue
		}
		if out, err := s.sh(line); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		ran++
	}
	if ran != 5 {
		t.Fatalf("ran %d lines of the welcome, want 5:\n%s", ran, w)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "demo", ".git")); err != nil {
		t.Fatalf("the welcome's clone made no demo/: %v", err)
	}
	// The clone keeps trusting the key file: a push works with no flags.
	if out, err := s.sh(`cd demo && git -c user.name=A -c user.email=a@x commit -q --allow-empty -m first && ` +
		`GIT_SSH_COMMAND="ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i $HOME/.ssh/id_ed25519 -o UserKnownHostsFile=$PWD/../fjord_known_hosts" git push -q origin HEAD:main`); err != nil {
		t.Fatalf("push from the clone: %v\n%s", err, out)
	}

	s.stop()
	s.start()
	w = s.welcome()
	for _, gone := range []string{"user add", "repo create", "ssh-keygen"} {
		if strings.Contains(w, gone) {
			t.Errorf("welcome after a restart with users and repos still says %q:\n%s", gone, w)
		}
	}
	if !strings.Contains(w, "1 user(s), 1 repo(s)") || !strings.Contains(w, "/demo.git") {
		t.Errorf("welcome after a restart does not say how to reach what exists:\n%s", w)
	}
}

// TestUserAddMistakes covers what trips a new user: an empty $USER and a
// key that was never made.
func TestUserAddMistakes(t *testing.T) {
	s := newSession(t)
	s.start()
	out, err := s.fjord("user", "add", "", "--key", s.key+".pub")
	if err == nil || !strings.Contains(out, "one user name") || !strings.Contains(out, "fjord user add alice") {
		t.Fatalf("user add with an empty name: %v %q", err, out)
	}
	out, err = s.fjord("user", "add", "alice", "--key", filepath.Join(s.home, "nokey.pub"))
	if err == nil || !strings.Contains(out, "no such file") || !strings.Contains(out, "ssh-keygen -t ed25519") {
		t.Fatalf("user add with a missing key file: %v %q", err, out)
	}
	out, err = s.fjord("user", "add", "alice")
	if err == nil || !strings.Contains(out, "ssh-keygen -t ed25519") {
		t.Fatalf("user add without --key: %v %q", err, out)
	}
}

// TestMakeRunArgs checks that `make run ARGS=…`, as the README shows it,
// passes the flags to fjord serve.
func TestMakeRunArgs(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	out, err := exec.Command("make", "-n", "-C", "../..", "run", "ARGS=--kubeconfig /etc/fjord/kubeconfig").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "bin/fjord serve --data ./data --kubeconfig /etc/fjord/kubeconfig") {
		t.Fatalf("make run does not pass ARGS to fjord serve:\n%s", out)
	}
}
