// Package gitrun starts git for every part of fjord the same way: an
// environment that depends only on the repo's own config, death with the
// parent (a git orphaned by a kill -9 of fjord would keep writing into a
// repo nobody watches), a bounded wait for its pipes, and errors that carry
// git's stderr with secrets redacted.
package gitrun

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// DefaultWaitDelay bounds how long Wait waits for git's pipes after ctx is
// done or git exited, so a stuck child never hangs the caller.
const DefaultWaitDelay = 10 * time.Second

// Env is the environment for git subprocesses fjord runs on its repos:
// the process environment minus every GIT_* variable, with the user's and
// the system's git config switched off and no terminal prompts, then
// extra. What a repo does depends only on its own config and the -c flags
// fjord passes.
func Env(extra ...string) []string {
	env := []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Runner starts git. The zero value runs "git" from PATH.
type Runner struct {
	// Git is the git binary. Empty means "git" from PATH.
	Git string
	// WaitDelay is exec.Cmd.WaitDelay. Zero means DefaultWaitDelay.
	WaitDelay time.Duration
	// Redact is applied to git's stderr before it goes into an error.
	// Nil keeps it as it is.
	Redact func(string) string
}

// Command returns git with args, run in dir (empty: the current
// directory) with Env(env...), the runner's WaitDelay, and killed by the
// kernel if fjord dies. The caller sets its stdio.
func (r Runner) Command(ctx context.Context, dir string, env []string, args ...string) *exec.Cmd {
	git := r.Git
	if git == "" {
		git = "git"
	}
	cmd := exec.CommandContext(ctx, git, args...)
	cmd.Dir = dir
	cmd.Env = Env(env...)
	cmd.WaitDelay = r.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	dieWithParent(cmd)
	return cmd
}

// Tool returns another program git's work needs (gpg importing a key)
// bounded as Command bounds git: the runner's WaitDelay, so a child that
// keeps its pipes open (gpg-agent) cannot hold Wait after the program
// exits or ctx ends, and killed by the kernel if fjord dies. It inherits
// fjord's environment; the caller sets its stdio.
func (r Runner) Tool(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = r.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	dieWithParent(cmd)
	return cmd
}

// Output runs git with args in dir, stdin (may be nil) on its standard
// input, and returns its standard output. A failure is an *Error holding
// git's (redacted) stderr.
func (r Runner) Output(ctx context.Context, dir string, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := r.Command(ctx, dir, nil, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, r.Error(args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// Error builds the *Error of a failed git command, redacting stderr.
func (r Runner) Error(args []string, err error, stderr string) *Error {
	stderr = strings.TrimSpace(stderr)
	if r.Redact != nil {
		stderr = r.Redact(stderr)
	}
	e := &Error{Err: err, Stderr: stderr}
	if len(args) > 0 {
		e.Command = args[0]
	}
	return e
}

// Error is a git command that failed.
type Error struct {
	// Command is git's subcommand ("fetch", "update-ref").
	Command string
	Err     error
	// Stderr is what git said, redacted.
	Stderr string
}

func (e *Error) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("git %s: %v", e.Command, e.Err)
	}
	return fmt.Sprintf("git %s: %v: %s", e.Command, e.Err, e.Stderr)
}

func (e *Error) Unwrap() error { return e.Err }
