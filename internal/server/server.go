// Package server assembles one fjord server from its parts: the store, the
// SSH git server, the mirror manager, housekeeping, the reconciler (when a
// cluster is configured), the admin API on the data directory's socket and
// the HTTP listener for /healthz, /readyz, /metrics and /hooks/. It is the
// one place that wiring and its shutdown order live, so `fjord serve` and
// the tests that run a whole server in-process start the same thing.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/ha"
	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/housekeeping"
	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/notify"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/replication"
	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"
)

// Options configures Open. Every zero value picks the default its comment
// names; only DataDir is required.
type Options struct {
	// DataDir holds fjord.db, repos/, the generated host key and the admin
	// socket.
	DataDir string
	// Version is reported by the admin API's info.
	Version string
	// SSHAddr is the SSH listen address. Empty means 127.0.0.1:2222.
	SSHAddr string
	// HTTPAddr is the listen address for /healthz, /readyz, /metrics,
	// /hooks/ and the web UI under /ui/. Empty means 127.0.0.1:8080.
	HTTPAddr string
	// AdminKeys are registered as admin keys on every start. Nil means
	// none.
	AdminKeys []storage.Key
	// HostKeyFile is the SSH host private key. Empty means
	// DATA/ssh_host_ed25519_key, generated on first start.
	HostKeyFile string
	// Logger receives the logs. Nil discards them.
	Logger *slog.Logger
	// ShutdownTimeout is how long in-flight sessions may take to finish
	// once Run's context ends. Zero means 30 s.
	ShutdownTimeout time.Duration
	// Limits bound the SSH server; zero fields take gitserver's defaults.
	Limits gitserver.Limits
	// MirrorConcurrency is the number of mirror syncs at once. Zero means
	// mirror.DefaultConcurrency.
	MirrorConcurrency int
	// MirrorSyncTimeout bounds one mirror sync. Zero means
	// mirror.DefaultSyncTimeout.
	MirrorSyncTimeout time.Duration
	// Kubeconfig is the cluster apps deploy to. Empty means $KUBECONFIG,
	// else in-cluster; with none the reconciler is off.
	Kubeconfig string
	// ResyncInterval is the reconciler's full resync. Zero means
	// reconciler.DefaultResyncInterval.
	ResyncInterval time.Duration
	// NoReconciler keeps the reconciler off even when a cluster is
	// configured (bench git --self serves git only). False means on when a
	// cluster is found.
	NoReconciler bool
	// NoAdmin serves no admin API: no socket in DataDir (bench git --self
	// drives the store itself, and its data dir may be too deep for a unix
	// socket's path). False means the CLI's socket is served.
	NoAdmin bool
	// Git is the git binary every service runs. Empty means "git" from
	// PATH.
	Git string
	// HA, when set, runs the server as one member of a replica group:
	// the primary (by Lease) takes writes and runs mirrors, housekeeping
	// and the reconciler; the others follow it and serve reads.
	HA *HAOptions
	// Ready is called once by Run when every service serves and /readyz
	// says ok, e.g. to print where to connect. Nil means nothing is called.
	Ready func(*Server)
}

// Server is an opened fjord server: listeners bound, services built, nothing
// served until Run.
type Server struct {
	opts     Options
	log      *slog.Logger
	store    *storage.Store
	info     admin.Info
	mirrors  *mirror.Manager
	charts   *helmrepo.Manager
	upkeep   *housekeeping.Manager
	notify   *notify.Manager
	gs       *gitserver.Server
	rec      *reconciler.Reconciler
	adminSrv *admin.Server
	httpSrv  *http.Server
	sshL     net.Listener
	httpL    net.Listener
	adminL   net.Listener
	ready    atomic.Bool
	elector  *ha.Elector // nil when the server runs alone
	primary  *replication.Primary
	// followerMetrics are this member's follower side of the stream.
	followerMetrics *replication.FollowerMetrics
	groupKey        gossh.Signer
	hostPub         gossh.PublicKey
	caughtUp        atomic.Bool // a replica that held the primary's position once
}

// Open opens the store, registers the admin keys, builds every service and
// binds the listeners. On error everything it opened is closed again. Run
// serves; a Server that is never Run must be closed with Close.
func Open(ctx context.Context, o Options) (_ *Server, err error) {
	if o.SSHAddr == "" {
		o.SSHAddr = "127.0.0.1:2222"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:8080"
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.MirrorConcurrency == 0 {
		o.MirrorConcurrency = mirror.DefaultConcurrency
	}
	if o.MirrorSyncTimeout == 0 {
		o.MirrorSyncTimeout = mirror.DefaultSyncTimeout
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = reconciler.DefaultResyncInterval
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.store, err = storage.Open(ctx, o.DataDir, &storage.Options{Logger: log, Git: o.Git})
	if err != nil {
		return nil, err
	}
	if o.HA == nil {
		// A group's primary registers them in its term: only it writes.
		for _, key := range o.AdminKeys {
			u, err := s.store.EnsureAdminKey(key)
			if err != nil {
				return nil, fmt.Errorf("--admin-key: %w", err)
			}
			log.Info("admin key registered", "user", u.Name, "key", key.Fingerprint)
		}
	}

	var hostKey gossh.Signer
	if o.HostKeyFile != "" {
		hostKey, err = gitserver.LoadHostKey(o.HostKeyFile)
	} else {
		hostKey, err = gitserver.LoadOrCreateHostKey(filepath.Join(o.DataDir, "ssh_host_ed25519_key"))
	}
	if err != nil {
		return nil, fmt.Errorf("--host-key: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.mirrors, err = mirror.New(mirror.Config{
		Store:       s.store,
		Logger:      log,
		Registerer:  reg,
		Concurrency: o.MirrorConcurrency,
		SyncTimeout: o.MirrorSyncTimeout,
		Git:         o.Git,
	})
	if err != nil {
		return nil, err
	}
	s.charts, err = helmrepo.New(helmrepo.Config{Store: s.store, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	s.upkeep, err = housekeeping.New(housekeeping.Config{Store: s.store, Logger: log, Registerer: reg, Git: o.Git})
	if err != nil {
		return nil, err
	}
	if s.notify, err = notify.New(notify.Config{Store: s.store, Logger: log, Registerer: reg}); err != nil {
		return nil, err
	}
	gcfg := gitserver.Config{
		Store:      s.store,
		HostKey:    hostKey,
		Logger:     log,
		Registerer: reg,
		Limits:     o.Limits,
		PushGuard:  s.mirrors,
		Git:        o.Git,
	}
	if o.HA != nil {
		if gcfg.PeerKey, err = s.openReplication(hostKey); err != nil {
			return nil, err
		}
		gcfg.Replicator = s.primary
		// The stream's lag and acks as the primary sees them, and the
		// apply times and full copies as this member's follower sees
		// them: either may be this member's role.
		s.followerMetrics = replication.NewFollowerMetrics(reg)
		reg.MustRegister(s.primary.Collector())
		if err := s.openHA(reg); err != nil {
			return nil, err
		}
		gcfg.PushGuard = writeGuard{e: s.elector, next: s.mirrors}
		gcfg.Durability = durability{s}
	}
	s.gs, err = gitserver.New(ctx, gcfg)
	if err != nil {
		return nil, err
	}

	s.sshL, err = net.Listen("tcp", o.SSHAddr)
	if err != nil {
		return nil, fmt.Errorf("--ssh-addr %s: %w", o.SSHAddr, err)
	}
	s.httpL, err = net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr %s: %w", o.HTTPAddr, err)
	}
	if !o.NoAdmin {
		if s.adminL, err = admin.Listen(o.DataDir); err != nil {
			return nil, err
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		msg, ok := s.readiness()
		if !ok {
			http.Error(w, "not ready\n"+msg, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n"+msg)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/hooks/", s.hooks())
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	s.info = admin.Info{
		Version:            o.Version,
		DataDir:            o.DataDir,
		SSHAddr:            s.sshL.Addr().String(),
		HTTPAddr:           s.httpL.Addr().String(),
		HostKey:            string(gossh.MarshalAuthorizedKey(hostKey.PublicKey())),
		HostKeyFingerprint: gossh.FingerprintSHA256(hostKey.PublicKey()),
	}
	s.rec, err = newReconciler(s.store, log, reg, o, s.info.SSHAddr, s.charts)
	if err != nil {
		return nil, err
	}
	if err := s.mountUI(mux); err != nil {
		return nil, err
	}
	var apps admin.Apps
	var clusters admin.Clusters
	if s.rec != nil {
		apps, clusters = appsAPI{s.rec}, s.rec
	}
	acfg := admin.Config{Store: s.store, Info: s.info, Logger: log, Mirrors: s.mirrors, HelmRepos: s.charts, Apps: apps, Clusters: clusters, Notify: s.notify, HostKeyFile: o.HostKeyFile}
	if s.elector != nil {
		acfg.Replicas, acfg.WriteGate = s.elector, s.elector.Writable
		acfg.Durable = func(ctx context.Context) error { return s.elector.WaitDurable(ctx, s.position()) }
	}
	s.adminSrv = admin.NewServer(acfg)
	return s, nil
}

// Info describes the server as the admin API reports it: the bound
// addresses (with the real port when one was 0) and the host key.
func (s *Server) Info() admin.Info { return s.info }

// Store is the server's metadata and repository store.
func (s *Server) Store() *storage.Store { return s.store }

// Reconciling reports whether the reconciler runs (a cluster was found).
func (s *Server) Reconciling() bool { return s.rec != nil }

// Run serves until ctx ends, then stops the SSH, HTTP and admin servers
// concurrently within ShutdownTimeout, removes the admin socket and closes
// the store. It returns the first error of any service.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeStore()
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return ignoreClosed(s.gs.Serve(s.sshL)) })
	grp.Go(func() error { return ignoreClosed(s.httpSrv.Serve(s.httpL)) })
	if s.adminL != nil {
		grp.Go(func() error { return ignoreClosed(s.adminSrv.Serve(s.adminL)) })
	}
	if s.elector != nil {
		// The primary's services run in its term (runPrimary).
		grp.Go(func() error { return s.elector.Run(gctx) })
	} else {
		grp.Go(func() error { return s.mirrors.Run(gctx) })
		grp.Go(func() error { return s.charts.Run(gctx) })
		grp.Go(func() error { return s.upkeep.Run(gctx, housekeeping.Primary) })
		grp.Go(func() error { return s.notify.Run(gctx) })
		if s.rec != nil {
			grp.Go(func() error { return s.rec.Run(gctx) })
		}
	}
	grp.Go(func() error {
		<-gctx.Done()
		s.ready.Store(false)
		s.log.Info("shutting down", "grace", s.opts.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
		defer cancel()
		// Stop the three servers concurrently; each error is logged.
		var wg errgroup.Group
		wg.Go(func() error { return s.gs.Shutdown(sctx) })
		wg.Go(func() error { return s.httpSrv.Shutdown(sctx) })
		if s.adminL != nil {
			wg.Go(func() error { return s.adminSrv.Shutdown(sctx) })
		}
		if err := wg.Wait(); err != nil {
			s.log.Warn("shutdown", "err", err)
		}
		os.Remove(filepath.Join(s.opts.DataDir, admin.SocketName))
		return nil
	})
	s.ready.Store(true)
	s.log.Info("fjord serving", "data", s.opts.DataDir, "ssh", s.info.SSHAddr, "http", s.info.HTTPAddr, "hostkey", s.info.HostKeyFingerprint)
	if s.opts.Ready != nil {
		s.opts.Ready(s)
	}
	err := grp.Wait()
	s.log.Info("stopped")
	return err
}

// applyAdminKeys registers the --admin-key keys (a write: on a group's
// primary only).
func (s *Server) applyAdminKeys() {
	for _, key := range s.opts.AdminKeys {
		u, err := s.store.EnsureAdminKey(key)
		if err != nil {
			s.log.Error("--admin-key", "err", err)
			continue
		}
		s.log.Info("admin key registered", "user", u.Name, "key", key.Fingerprint)
	}
}

// Close releases what Open acquired, for a Server that is not Run (Run
// releases everything itself).
func (s *Server) Close() {
	for _, l := range []net.Listener{s.sshL, s.httpL, s.adminL} {
		if l != nil {
			l.Close()
		}
	}
	if s.adminL != nil {
		os.Remove(filepath.Join(s.opts.DataDir, admin.SocketName))
	}
	s.closeStore()
}

func (s *Server) closeStore() {
	if s.store == nil {
		return
	}
	if err := s.store.Close(); err != nil {
		s.log.Error("close database", "err", err)
	}
	s.store = nil
}

func ignoreClosed(err error) error {
	if errors.Is(err, gitserver.ErrServerClosed) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// newReconciler starts nothing; it returns the reconciler when a cluster is
// configured, and nil (after saying so) when none is.
func newReconciler(store *storage.Store, log *slog.Logger, reg prometheus.Registerer, o Options, sshAddr string, charts reconciler.ChartSource) (*reconciler.Reconciler, error) {
	if o.NoReconciler {
		return nil, nil
	}
	cfg, source, err := reconciler.LoadRESTConfig(o.Kubeconfig)
	if errors.Is(err, reconciler.ErrNoCluster) {
		log.Warn("reconciler off: no cluster configured; give --kubeconfig FILE or set KUBECONFIG to deploy apps", "reason", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	log.Info("reconciler on", "cluster", cfg.Host, "from", source, "resync", o.ResyncInterval)
	return reconciler.New(reconciler.Config{Store: store, RESTConfig: cfg, Logger: log, Registerer: reg, ResyncInterval: o.ResyncInterval, SSHAddr: sshAddr, Charts: charts})
}
