package gitserver

import (
	"testing"

	"github.com/anmitsu/go-shlex"
)

// TestParsePlainCommand checks the lexer-free path against shlex on the
// forms clients send and on the ones it must leave to shlex.
func TestParsePlainCommand(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		fast bool // parsed without shlex
	}{
		{"git-upload-pack 'app.git'", true},
		{"git-upload-pack '/team/app.git'", true},
		{"git-receive-pack 'app'", true},
		{"git-upload-archive 'app'", true},
		{"git-upload-pack app.git", true},
		{"git-upload-pack /team/app", true},
		{"git-upload-pack ''", false},
		{"git-upload-pack 'a'b'", false},
		{"git-upload-pack 'app'; rm -rf /", false},
		{"git-upload-pack 'app' extra", false},
		{"git-upload-pack  'app'", false},
		{`git-upload-pack "app"`, false},
		{`git-upload-pack ap\p`, false},
		{"git-upload-pack $HOME", false},
		{"git upload-pack 'app'", false},
		{"ls /", false},
		{"git-upload-pack", false},
	} {
		svc, path, ok := parsePlainCommand(c.cmd)
		if ok != c.fast {
			t.Errorf("%q: parsed without shlex = %v, want %v", c.cmd, ok, c.fast)
		}
		if !ok {
			continue
		}
		args, err := shlex.Split(c.cmd, true)
		if err != nil || len(args) != 2 || args[0] != string(svc) || args[1] != path {
			t.Errorf("%q: fast path gave %q %q, shlex %q (%v)", c.cmd, svc, path, args, err)
		}
	}
}
