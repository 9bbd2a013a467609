package fjordtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Dial opens an SSH connection to the server authenticating with the
// private key file key, checking the server's host key.
func (s *Server) Dial(key string) (*gossh.Client, error) {
	cfg, err := s.ClientConfig(key)
	if err != nil {
		return nil, err
	}
	return gossh.Dial("tcp", s.SSHAddr, cfg)
}

// ClientConfig is the SSH client configuration of Dial.
func (s *Server) ClientConfig(key string) (*gossh.ClientConfig, error) {
	pem, err := os.ReadFile(key)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.ParsePrivateKey(pem)
	if err != nil {
		return nil, err
	}
	hostPEM, err := os.ReadFile(filepath.Join(s.Data, "ssh_host_ed25519_key"))
	if err != nil {
		return nil, err
	}
	host, err := gossh.ParsePrivateKey(hostPEM)
	if err != nil {
		return nil, err
	}
	return &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.FixedHostKey(host.PublicKey()),
		Timeout:         10 * time.Second,
	}, nil
}

// pkt encodes one pkt-line.
func pkt(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }

// AnythingNew asks, on a new session of an open connection, for a repo's
// branch heads in protocol v2 (ls-refs), as a reconciler polling for new
// commits does: fjord's fast path, answered from the ref snapshot.
func AnythingNew(c *gossh.Client, repo string) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	if err := sess.Setenv("GIT_PROTOCOL", "version=2"); err != nil {
		return err
	}
	sess.Stdin = strings.NewReader(pkt("command=ls-refs\n") + pkt("agent=git/2.39.5\n") + "0001" + pkt("peel\n") + pkt("symrefs\n") +
		pkt("ref-prefix HEAD\n") + pkt("ref-prefix refs/heads/\n") + "0000")
	out, err := sess.Output("git-upload-pack '" + repo + ".git'")
	if err != nil {
		return fmt.Errorf("ls-refs %s: %w", repo, err)
	}
	if !bytes.Contains(out, []byte(" refs/heads/")) {
		return fmt.Errorf("ls-refs %s: no branch in %q", repo, out)
	}
	return nil
}
