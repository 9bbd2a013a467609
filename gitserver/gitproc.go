package gitserver

import (
	"context"
	"fmt"
	"io"
	"os/exec"

	"github.com/fjordhq/fjord/internal/gitrun"
	gossh "golang.org/x/crypto/ssh"
)

// command returns a git command for a repo, with fjord's environment and
// the client's GIT_PROTOCOL. Its stderr goes to the client, as git's own
// messages ("remote: ...") are meant for them.
func (s *Server) command(ctx context.Context, ch gossh.Channel, gitProtocol string, args ...string) *exec.Cmd {
	var env []string
	if gitProtocol != "" {
		env = append(env, "GIT_PROTOCOL="+gitProtocol)
	}
	// gitrun's WaitDelay: a client that vanishes must not leave git or the
	// copy goroutines behind for long.
	cmd := gitrun.Runner{Git: s.git}.Command(ctx, "", env, args...)
	cmd.Stderr = ch.Stderr()
	return cmd
}

// proxyGit runs a stateful git service for repo with the client's stream on
// its stdin and stdout. prefix, if not nil, is written to git's stdin
// before the client's stream (bytes fjord already read from the client).
// It serves readers (upload-archive), so git runs deprioritized.
func (s *Server) proxyGit(ctx context.Context, ch gossh.Channel, repo, gitProtocol string, prefix []byte, svc string, flags ...string) error {
	args := append(append([]string{}, flags...), svc, s.store.RepoPath(repo))
	cmd := s.command(ctx, ch, gitProtocol, args...)
	cmd.Stdout = ch
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("%s %s: %w", svc, repo, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start git %s for %s: %w", svc, repo, err)
	}
	deprioritize(cmd.Process)
	go feed(stdin, prefix, ch)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git %s %s: %w", svc, repo, err)
	}
	return nil
}

// feed copies the client's stream into git's stdin. It does not hold up
// Wait: when git exits first, the copy ends at the next write, or when the
// channel is closed.
func feed(stdin io.WriteCloser, prefix []byte, client io.Reader) {
	defer stdin.Close()
	if len(prefix) > 0 {
		if _, err := stdin.Write(prefix); err != nil {
			return
		}
	}
	io.Copy(stdin, client)
}
