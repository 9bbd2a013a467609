package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/internal/server"
	"github.com/fjordhq/fjord/storage"
)

// SelfOptions configures StartSelf. Every zero value picks the default its
// comment names.
type SelfOptions struct {
	// Dir is where the temporary data directory is made. Empty means the
	// system temp directory.
	Dir string
	// Shape sizes the generated repository.
	Shape RepoShape
	// Git is the git binary. Empty means "git" from PATH.
	Git string
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
}

// Self is a temporary fjord on a fresh data directory, assembled by
// internal/server as `fjord serve` is (SSH git server, mirrors,
// housekeeping; the reconciler and the admin socket off), serving one generated
// repository to one user, so bench git runs with no setup. Pass its URL,
// KeyFile and KnownHosts to RunGit, then Close it.
type Self struct {
	// URL is the generated repository's ssh:// URL on 127.0.0.1.
	URL string
	// KeyFile is the private key of the user allowed to read it.
	KeyFile string
	// KnownHosts holds the server's host key.
	KnownHosts string

	dir    string
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
}

// selfRepo and selfUser name what StartSelf creates.
const (
	selfRepo = "bench/gitops"
	selfUser = "bench"
)

// StartSelf starts a temporary fjord serving a generated repository, pushed
// through the server itself over SSH and then housekept, as a running
// fjord keeps it. Close stops it and removes everything.
func StartSelf(ctx context.Context, opts SelfOptions) (_ *Self, err error) {
	if opts.Git == "" {
		opts.Git = "git"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp(opts.Dir, "fjord-bench-self-")
	if err != nil {
		return nil, fmt.Errorf("bench: create temporary fjord directory: %w", err)
	}
	s := &Self{dir: dir}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	srv, err := server.Open(ctx, server.Options{
		DataDir:         filepath.Join(dir, "data"),
		SSHAddr:         "127.0.0.1:0",
		HTTPAddr:        "127.0.0.1:0",
		Logger:          opts.Logger,
		Git:             opts.Git,
		NoReconciler:    true,
		NoAdmin:         true,
		ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: start the temporary fjord: %w", err)
	}
	s.srv = srv
	store := srv.Store()
	s.KeyFile = filepath.Join(dir, "id_ed25519")
	pub, err := writeClientKey(s.KeyFile)
	if err != nil {
		return nil, err
	}
	if _, err := store.CreateUser(storage.User{Name: selfUser, Keys: []storage.Key{pub}}); err != nil {
		return nil, fmt.Errorf("bench: create user: %w", err)
	}
	if _, err := store.CreateRepo(ctx, storage.Repo{Name: selfRepo}); err != nil {
		return nil, fmt.Errorf("bench: create repo: %w", err)
	}
	if err := store.SetGrant(selfUser, selfRepo, storage.AccessWrite); err != nil {
		return nil, fmt.Errorf("bench: grant: %w", err)
	}
	info := srv.Info()
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey([]byte(info.HostKey))
	if err != nil {
		return nil, fmt.Errorf("bench: the temporary fjord's host key: %w", err)
	}
	_, portText, _ := net.SplitHostPort(info.SSHAddr)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("bench: the temporary fjord's SSH address %q: %w", info.SSHAddr, err)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() {
		s.done <- srv.Run(runCtx)
	}()
	s.URL = fmt.Sprintf("ssh://git@127.0.0.1:%d/%s", port, selfRepo)
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	line := gitserver.KnownHostsLine("127.0.0.1", port, hostKey)
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("bench: write %s: %w", s.KnownHosts, err)
	}

	// The repository travels the way users' do: generated locally,
	// then pushed through fjord over SSH.
	src := filepath.Join(dir, "src.git")
	if err := GenerateRepo(ctx, opts.Git, src, opts.Shape); err != nil {
		return nil, err
	}
	push := exec.CommandContext(ctx, opts.Git, "push", "--quiet", s.URL, "refs/heads/main:refs/heads/main")
	push.Dir = src
	push.Env = gitEnv(GitOptions{SSHKey: s.KeyFile, KnownHosts: s.KnownHosts})
	push.WaitDelay = 5 * time.Second
	if out, err := push.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: push the generated repository to the temporary fjord: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if _, err := srv.Housekeep(ctx, selfRepo); err != nil {
		return nil, fmt.Errorf("bench: housekeep the generated repository: %w", err)
	}
	return s, nil
}

// Close stops the server and removes its data directory. It is safe to call
// after a partial start and more than once.
func (s *Self) Close() error {
	var errs []error
	switch {
	case s.done != nil:
		// Run stops every service and closes the store.
		s.cancel()
		if err := <-s.done; err != nil {
			errs = append(errs, err)
		}
		s.done = nil
	case s.srv != nil:
		s.srv.Close() // opened, never run
	}
	s.srv = nil
	if s.dir != "" {
		// The directory is this run's own, made by MkdirTemp.
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, err)
		}
		s.dir = ""
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: stop the temporary fjord: %w", errors.Join(errs...))
	}
	return nil
}

// writeClientKey writes a new ed25519 private key to path (0600) and
// returns its public half.
func writeClientKey(path string) (storage.Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return storage.Key{}, fmt.Errorf("bench: generate key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "fjord bench")
	if err != nil {
		return storage.Key{}, fmt.Errorf("bench: encode key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return storage.Key{}, fmt.Errorf("bench: write key: %w", err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return storage.Key{}, fmt.Errorf("bench: key: %w", err)
	}
	return storage.ParseKey(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
}
