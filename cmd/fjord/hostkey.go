package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/gitserver"
	"github.com/spf13/cobra"
	gossh "golang.org/x/crypto/ssh"
)

func newHostkeyCmd(g *globals) *cobra.Command {
	var (
		host   string
		port   int
		output string
	)
	cmd := &cobra.Command{
		Use:   "hostkey",
		Short: "Print the SSH host key fingerprint and a known_hosts line for Argo CD, Flux and git",
		Long: `hostkey prints a known_hosts line for this server's SSH host key (on stdout)
and its fingerprint (on stderr), so that

  fjord hostkey >> ~/.ssh/known_hosts

is all a git client needs. Use --host for the name clients connect to (the
address of the running server is the default), and paste the line into
Argo CD's ssh_known_hosts ConfigMap or Flux's known_hosts secret key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, addr, err := hostKeyOf(cmd, g.dataDir)
			if err != nil {
				return err
			}
			h, p, _ := net.SplitHostPort(addr)
			if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
				h = "localhost"
			}
			pn, _ := strconv.Atoi(p)
			if host != "" {
				h = host
			}
			if port != 0 {
				pn = port
			}
			line := gitserver.KnownHostsLine(h, pn, key)
			fp := gossh.FingerprintSHA256(key)
			if done, err := printData(cmd.OutOrStdout(), output, map[string]string{"fingerprint": fp, "knownHosts": line}); done {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "# fjord host key %s\n", fp)
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "host name or address clients use to reach the server")
	cmd.Flags().IntVar(&port, "port", 0, "SSH port clients use (default: the server's)")
	addOutputFlag(cmd, &output)
	return cmd
}

// hostKeyOf asks the running server for its key and address, and falls
// back to reading the key file when no server runs.
func hostKeyOf(cmd *cobra.Command, dataDir string) (gossh.PublicKey, string, error) {
	info, err := admin.NewClient(dataDir).Info(cmd.Context())
	if err == nil {
		key, _, _, _, err := gossh.ParseAuthorizedKey([]byte(info.HostKey))
		return key, info.SSHAddr, err
	}
	if !errors.Is(err, admin.ErrNoServer) {
		return nil, "", err
	}
	path := filepath.Join(dataDir, "ssh_host_ed25519_key")
	b, rerr := os.ReadFile(path)
	if rerr != nil {
		return nil, "", fmt.Errorf("%w; and no host key at %s yet: it is created by the first `fjord serve --data %s`", err, path, dataDir)
	}
	signer, perr := gossh.ParsePrivateKey(b)
	if perr != nil {
		return nil, "", fmt.Errorf("host key %s: %w", path, perr)
	}
	if addr := readLastAddr(dataDir); addr != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "# fjord is not running on %s; using the SSH address it last listened on, %s (--host, --port to change)\n", dataDir, addr)
		return signer.PublicKey(), addr, nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "# fjord is not running on %s and never recorded its address: guessing 127.0.0.1:2222; give --host and --port if it listens elsewhere\n", dataDir)
	return signer.PublicKey(), "127.0.0.1:2222", nil
}
