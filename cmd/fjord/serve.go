package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/ha"
	"github.com/fjordhq/fjord/internal/server"
	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

type serveOptions struct {
	sshAddr         string
	httpAddr        string
	adminKey        string
	hostKey         string
	logFormat       string
	logLevel        string
	shutdownTimeout time.Duration
	limits          gitserver.Limits
	mirrorWorkers   int
	mirrorTimeout   time.Duration
	kubeconfig      string
	resyncInterval  time.Duration
	ha              haFlags
}

// haFlags are serve's replica group flags.
type haFlags struct {
	lease         string
	id            string
	advertise     string
	key           string
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration
	syncReplicas  int
	syncTimeout   time.Duration
}

func newServeCmd(g *globals) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the fjord server: SSH git, HTTP health and metrics, admin API",
		Long: `serve runs everything on one data directory: bbolt metadata in DATA/fjord.db,
repos in DATA/repos, the SSH host key in DATA/ssh_host_ed25519_key (generated
on first start) and the admin socket DATA/fjord.sock used by the other commands.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g.dataDir, o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.sshAddr, "ssh-addr", "127.0.0.1:2222", "SSH listen address")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address for /healthz, /readyz, /metrics")
	f.StringVar(&o.adminKey, "admin-key", os.Getenv("FJORD_ADMIN_KEY"), "public key file of the first admin (env FJORD_ADMIN_KEY)")
	f.StringVar(&o.hostKey, "host-key", os.Getenv("FJORD_HOST_KEY"), "SSH host private key file, e.g. mounted from a Secret (env FJORD_HOST_KEY; default DATA/ssh_host_ed25519_key, generated on first start)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long in-flight git sessions may take to finish")
	f.IntVar(&o.limits.MaxSessions, "max-sessions", 256, "git commands running at once; more are refused")
	f.DurationVar(&o.limits.IdleTimeout, "idle-timeout", 5*time.Minute, "close SSH connections idle this long")
	f.Int64Var(&o.limits.MaxPushBytes, "max-push-size", 2<<30, "largest pack a push may send, in bytes")
	f.IntVar(&o.limits.AuthFailures, "max-auth-failures", 10, "failed SSH logins per source address per --auth-window before it is refused")
	f.DurationVar(&o.limits.AuthWindow, "auth-window", time.Minute, "window for --max-auth-failures")
	f.IntVar(&o.mirrorWorkers, "mirror-concurrency", mirror.DefaultConcurrency, "mirror syncs running at once")
	f.DurationVar(&o.mirrorTimeout, "mirror-sync-timeout", mirror.DefaultSyncTimeout, "longest a mirror sync may take")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster apps deploy to (else $KUBECONFIG, else in-cluster; without one the reconciler is off)")
	f.DurationVar(&o.resyncInterval, "resync-interval", reconciler.DefaultResyncInterval, "full reconcile of every app, the safety net behind push notifications")
	f.StringVar(&o.ha.lease, "ha", "", "run as one replica of a group elected by the Lease NAMESPACE/NAME (needs --replica-id, --advertise, --ha-key and a cluster: in-cluster, --kubeconfig or KUBECONFIG)")
	f.StringVar(&o.ha.id, "replica-id", os.Getenv("POD_NAME"), "this replica's id in the group (env POD_NAME), e.g. fjord-0")
	f.StringVar(&o.ha.advertise, "advertise", "", "HOST:PORT the other replicas reach this one's SSH on, e.g. fjord-0.fjord:2222")
	f.StringVar(&o.ha.key, "ha-key", os.Getenv("FJORD_HA_KEY"), "private key file of the group key the replicas use between themselves, from a Secret (env FJORD_HA_KEY)")
	f.DurationVar(&o.ha.leaseDuration, "lease-duration", ha.DefaultLeaseDuration, "how long a primary's Lease lasts without renewal before another replica may take over")
	f.DurationVar(&o.ha.renewDeadline, "renew-deadline", ha.DefaultRenewDeadline, "a primary that could not renew its Lease for this long stops taking pushes (shorter than --lease-duration)")
	f.DurationVar(&o.ha.retryPeriod, "retry-period", ha.DefaultRetryPeriod, "how often the Leases are renewed and read")
	f.IntVar(&o.ha.syncReplicas, "sync-replicas", -1, "replicas that must hold a push before it is acknowledged (default 1 when the group has 2 or more members, else 0)")
	f.DurationVar(&o.ha.syncTimeout, "sync-timeout", ha.DefaultAckTimeout, "how long a push waits for its synchronous replicas before it is refused")
	return cmd
}

// haOptions checks the replica group flags; nil means the server runs
// alone.
func (o *serveOptions) haOptions() (*server.HAOptions, error) {
	f := o.ha
	if f.lease == "" {
		return nil, nil
	}
	ns, name, ok := strings.Cut(f.lease, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("--ha %q: want NAMESPACE/NAME of the leader Lease, e.g. --ha fjord/fjord", f.lease)
	}
	if f.id == "" {
		return nil, errors.New("--ha needs --replica-id ID (in a StatefulSet, POD_NAME from the downward API sets it)")
	}
	if err := checkListenAddr("--advertise", f.advertise, "fjord-0.fjord:2222"); err != nil {
		return nil, err
	}
	if f.key == "" {
		return nil, errors.New("--ha needs --ha-key FILE: the group's private key, the same on every replica (ssh-keygen -t ed25519 -N '' -f ha_key; mount it from a Secret)")
	}
	if _, err := gitserver.LoadHostKey(f.key); err != nil {
		return nil, fmt.Errorf("--ha-key: %w", err)
	}
	if f.syncReplicas < -1 {
		return nil, fmt.Errorf("--sync-replicas %d: want 0 or more", f.syncReplicas)
	}
	return &server.HAOptions{
		Namespace: ns, Name: name, ID: f.id, Advertise: f.advertise, KeyFile: f.key,
		LeaseDuration: f.leaseDuration, RenewDeadline: f.renewDeadline, RetryPeriod: f.retryPeriod,
		SyncReplicas: f.syncReplicas, AckTimeout: f.syncTimeout,
		PodNamespace: os.Getenv("POD_NAMESPACE"), PodName: os.Getenv("POD_NAME"),
	}, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func serve(ctx context.Context, dataDir string, o *serveOptions, stderr io.Writer) error {
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if err := checkListenAddr("--ssh-addr", o.sshAddr, "127.0.0.1:2222"); err != nil {
		return err
	}
	if err := checkListenAddr("--http-addr", o.httpAddr, "127.0.0.1:8080"); err != nil {
		return err
	}
	haOpts, err := o.haOptions()
	if err != nil {
		return err
	}
	if haOpts != nil {
		// client-go's leader election logs through klog.
		klog.SetSlogLogger(log)
	}
	var adminKeys []storage.Key
	if o.adminKey != "" {
		lines, err := readPublicKeys("--admin-key", o.adminKey)
		if err != nil {
			return err
		}
		for _, line := range lines {
			key, err := storage.ParseKey(line)
			if err != nil {
				return fmt.Errorf("--admin-key %s: %w", o.adminKey, err)
			}
			adminKeys = append(adminKeys, key)
		}
	}
	srv, err := server.Open(ctx, server.Options{
		DataDir:           dataDir,
		Version:           version,
		SSHAddr:           o.sshAddr,
		HTTPAddr:          o.httpAddr,
		AdminKeys:         adminKeys,
		HostKeyFile:       o.hostKey,
		Logger:            log,
		ShutdownTimeout:   o.shutdownTimeout,
		Limits:            o.limits,
		MirrorConcurrency: o.mirrorWorkers,
		MirrorSyncTimeout: o.mirrorTimeout,
		Kubeconfig:        o.kubeconfig,
		ResyncInterval:    o.resyncInterval,
		HA:                haOpts,
		Ready: func(srv *server.Server) {
			printWelcome(stderr, dataDir, srv.Info(), srv.Store(), srv.Reconciling())
		},
	})
	if err != nil {
		return err
	}
	if err := writeLastAddr(dataDir, srv.Info()); err != nil {
		log.Warn("cannot record the listen addresses for `fjord hostkey`", "err", err)
	}
	return srv.Run(ctx)
}

// printWelcome tells a person who just ran `make run` what to do next:
// the steps not done yet (a first user, a first repo), then how to trust
// the host key and clone. After a restart with users and repos in place it
// says only how to reach them.
func printWelcome(w io.Writer, dataDir string, info admin.Info, store *storage.Store, reconciling bool) {
	host, port, _ := net.SplitHostPort(info.SSHAddr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	p, _ := strconv.Atoi(port)
	// Name the binary the way the user invoked it (bin/fjord after
	// `make run`), so the lines can be pasted as they are.
	bin := os.Args[0]
	if !strings.Contains(bin, "/") {
		bin = "fjord"
	}
	if dataDir != "./data" && dataDir != "data" {
		bin += " --data " + dataDir
	}
	users, _ := store.Users()
	repos, _ := store.Repos()
	repo := "demo"
	if len(repos) > 0 {
		repo = repos[0].Name
	}
	fmt.Fprintf(w, "\nfjord is ready.  SSH %s   HTTP http://%s (/healthz /readyz /metrics)\nHost key %s\n\n",
		info.SSHAddr, info.HTTPAddr, info.HostKeyFingerprint)
	if len(users) > 0 && len(repos) > 0 {
		fmt.Fprintf(w, "%d user(s), %d repo(s) (%s user list, %s repo list). To clone:\n", len(users), len(repos), bin, bin)
	} else {
		fmt.Fprintln(w, "Next, in another terminal, from this directory:")
	}
	if len(users) == 0 {
		fmt.Fprintf(w, "  ssh-keygen -t ed25519    # only if ~/.ssh/id_ed25519.pub does not exist yet\n")
		fmt.Fprintf(w, "  %s user add alice --key ~/.ssh/id_ed25519.pub --admin\n", bin)
	}
	if len(repos) == 0 {
		fmt.Fprintf(w, "  %s repo create %s\n", bin, repo)
	}
	fmt.Fprintf(w, `  %s hostkey > fjord_known_hosts
  git clone -c core.sshCommand="ssh -o UserKnownHostsFile=$PWD/fjord_known_hosts" ssh://%s/%s.git
(or trust the key for every ssh client: %s hostkey >> ~/.ssh/known_hosts, then a plain git clone)

`, bin, net.JoinHostPort(host, strconv.Itoa(p)), repo, bin)
	if !reconciling {
		fmt.Fprintf(w, "The reconciler is off (no cluster): to deploy apps, start again with --kubeconfig FILE\n(with make: make run ARGS='--kubeconfig FILE').\n\n")
	}
}

// checkListenAddr refuses a listen address net.Listen would reject with a
// bare "missing port in address", naming the flag and a form that works.
func checkListenAddr(flag, addr, example string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n < 0 || n > 65535 {
			err = fmt.Errorf("port %q is not a number from 0 to 65535", port)
		}
	}
	if err != nil {
		_, p, _ := net.SplitHostPort(example)
		return fmt.Errorf("%s %q: want HOST:PORT, e.g. %s %s (or %s :%s for every interface)", flag, addr, flag, example, flag, p)
	}
	return nil
}

// lastAddrFile records, in the data dir, where the last `fjord serve` on it
// listened, so `fjord hostkey` names the right port while it is stopped.
const lastAddrFile = "serve.json"

func writeLastAddr(dataDir string, info admin.Info) error {
	b, err := json.Marshal(struct {
		SSHAddr  string `json:"sshAddr"`
		HTTPAddr string `json:"httpAddr"`
	}{info.SSHAddr, info.HTTPAddr})
	if err != nil {
		return err
	}
	tmp := filepath.Join(dataDir, "."+lastAddrFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dataDir, lastAddrFile))
}

// readLastAddr returns the SSH address the last server on dataDir listened
// on, or "" when none recorded it.
func readLastAddr(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, lastAddrFile))
	if err != nil {
		return ""
	}
	var rec struct {
		SSHAddr string `json:"sshAddr"`
	}
	if json.Unmarshal(b, &rec) != nil {
		return ""
	}
	return rec.SSHAddr
}
