package gitserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/gliderlabs/ssh"
	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = ssh.ErrServerClosed

// PushGuard decides whether a repo accepts pushes at all. A mirror refuses
// them; the error text is shown to the pushing client as is, so it should
// say why and what to do instead.
type PushGuard interface {
	AllowPush(ctx context.Context, repo string) error
}

// Durability holds a push's report-status until the change is safe, e.g.
// held by a replica group's synchronous followers. Its error refuses the
// push: the client is told the text and not told that the push succeeded.
type Durability interface {
	WaitDurable(ctx context.Context, repo string) error
}

// Limits bound what clients may consume. Each zero field takes the default
// its comment gives.
type Limits struct {
	// MaxSessions is the number of git commands running at once across all
	// connections; more are refused with "resource shortage". Default 256.
	MaxSessions int
	// IdleTimeout closes a connection with no traffic for this long.
	// Default 5 minutes.
	IdleTimeout time.Duration
	// MaxPushBytes is the largest pack a push may send. Default 2 GiB.
	MaxPushBytes int64
	// AuthFailures is how many failed authentications one source address
	// may have within AuthWindow before it is refused outright until the
	// window passes. Default 10.
	AuthFailures int
	// AuthWindow is the window for AuthFailures. Default 1 minute.
	AuthWindow time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxSessions <= 0 {
		l.MaxSessions = 256
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 5 * time.Minute
	}
	if l.MaxPushBytes <= 0 {
		l.MaxPushBytes = 2 << 30
	}
	if l.AuthFailures <= 0 {
		l.AuthFailures = 10
	}
	if l.AuthWindow <= 0 {
		l.AuthWindow = time.Minute
	}
	return l
}

// Config configures a Server. Store and HostKey are required.
type Config struct {
	// Store holds repos, users, grants and ref snapshots.
	Store *storage.Store
	// HostKey is the server's host key (see LoadOrCreateHostKey).
	HostKey gossh.Signer
	// Logger receives one line per session and per refusal. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer receives the server's metrics. Nil means none are
	// registered.
	Registerer prometheus.Registerer
	// Limits bound resource use; zero fields take defaults.
	Limits Limits
	// PushGuard, if set, is asked before every push.
	PushGuard PushGuard
	// Durability, if set, is waited for after a push moved refs and
	// before the client sees the result.
	Durability Durability
	// Git is the git binary. Empty means "git" from PATH.
	Git string
	// PeerKey is the public half of the replica group's key (--ha-key).
	// A connection proving it holds it is a peer replica, which is no
	// user: it may run the replication stream (Replicator) and fetch
	// every repo, hidden refs too, and nothing else. Nil means no peers.
	PeerKey gossh.PublicKey
	// Replicator serves the replication stream to peers. Nil refuses it.
	Replicator Replicator
}

// Server is an SSH git server. Create one with New.
type Server struct {
	store   *storage.Store
	log     *slog.Logger
	limits  Limits
	guard   PushGuard
	durable Durability
	git     string
	ad      advertiser
	metrics *metrics
	auth    *authLimiter
	slots   chan struct{} // one token per running git command
	conns   conns
	ssh     *ssh.Server

	peerKey    gossh.PublicKey
	replicator Replicator
}

// New checks the configuration, probes the installed git for its
// capabilities and returns a server ready to Serve.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.HostKey == nil {
		return nil, errors.New("gitserver: Config.Store and Config.HostKey are required")
	}
	s := &Server{
		store:  cfg.Store,
		log:    cfg.Logger,
		limits: cfg.Limits.withDefaults(),
		guard:  cfg.PushGuard,
		git:    cfg.Git,

		peerKey:    cfg.PeerKey,
		replicator: cfg.Replicator,
		durable:    cfg.Durability,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.git == "" {
		s.git = "git"
	}
	caps, err := probeCapabilities(ctx, s.git)
	if err != nil {
		return nil, fmt.Errorf("gitserver: %w", err)
	}
	s.ad.caps = caps
	s.metrics = newMetrics(cfg.Registerer)
	s.auth = newAuthLimiter(s.limits.AuthFailures, s.limits.AuthWindow)
	s.slots = make(chan struct{}, s.limits.MaxSessions)
	s.ssh = &ssh.Server{
		Version:     "fjord",
		HostSigners: []ssh.Signer{cfg.HostKey},
		IdleTimeout: s.limits.IdleTimeout,
		// Our own session handler refuses ptys, shells, env and agent
		// forwarding explicitly. No other channel type or global request
		// (port forwarding) has a handler, so all are refused.
		ChannelHandlers: map[string]ssh.ChannelHandler{
			"session":      s.handleSession,
			"direct-tcpip": s.refuseChannel,
		},
		RequestHandlers:          map[string]ssh.RequestHandler{"tcpip-forward": s.refuseForward, "cancel-tcpip-forward": s.refuseForward},
		PublicKeyHandler:         s.acceptKey,
		BannerHandler:            s.banner,
		ServerConfigCallback:     s.serverConfig,
		ConnCallback:             func(ctx ssh.Context, c net.Conn) net.Conn { return s.conns.wrap(ctx, limitLogin(ctx, c)) },
		ConnectionFailedCallback: s.connFailed,
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown or Close, then returns
// ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	return s.ssh.Serve(l)
}

// ListenAndServe listens on addr and serves.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gitserver: listen on %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Shutdown stops accepting connections, closes idle ones at once, lets
// running git commands finish until ctx is done, then closes whatever is
// left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.conns.drain()
	err := s.ssh.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.log.Warn("shutdown grace period over; closing remaining SSH connections")
		return s.ssh.Close()
	}
	return err
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	return s.ssh.Close()
}
