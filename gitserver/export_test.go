package gitserver

import (
	"context"

	gossh "golang.org/x/crypto/ssh"
)

// ExecForBench runs one exec request as a session does once the exec is
// accepted, for the holder of the key with fingerprint fp, on ch: the
// server's own path with no SSH beneath it, for allocation counts.
func (s *Server) ExecForBench(ctx context.Context, ch gossh.Channel, fp, cmdline, gitProtocol string) int {
	p := peer{perms: &gossh.Permissions{Extensions: map[string]string{extKeyFingerprint: fp}}, login: "git", remote: "127.0.0.1"}
	return s.exec(ctx, p, ch, cmdline, gitProtocol)
}
