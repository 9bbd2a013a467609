package replication

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// hostAlias is the name git's ssh checks the primary's host key under:
// every replica presents the one host key, whatever its address.
const hostAlias = "fjord-replica-group"

// peerLogin is the SSH login name a follower gives; fjord ignores login
// names, but a log line reads better with it.
const peerLogin = "fjord-replica"

// FollowerOptions configures a Follower. ID, Primary, KeyFile and HostKey
// are required.
type FollowerOptions struct {
	// ID names this replica to the primary (--replica-id).
	ID string
	// Primary is the primary's SSH address, HOST:PORT. SetPrimary changes
	// it.
	Primary string
	// KeyFile is the group key's private key file (--ha-key), which git's
	// ssh uses to fetch objects.
	KeyFile string
	// Signer is the group key for the stream. Nil means it is read from
	// KeyFile.
	Signer gossh.Signer
	// HostKey is the host key every replica presents; the primary's is
	// checked against it.
	HostKey gossh.PublicKey
	// Logger receives the follower's events. Nil means slog.Default().
	Logger *slog.Logger
	// Git and SSH are the git and ssh binaries. Empty means "git" and
	// "ssh" from PATH.
	Git, SSH string
	// MinBackoff and MaxBackoff bound the wait before reconnecting to a
	// primary that went away. Zero means 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// Metrics, if set, are kept up to date (see NewFollowerMetrics).
	Metrics *FollowerMetrics
}

// FollowerState is what a follower knows of its stream.
type FollowerState struct {
	// Primary is the address it follows.
	Primary string `json:"primary"`
	// Connected is whether its stream is open now: the primary answered.
	Connected bool `json:"connected"`
	// CaughtUp is whether it is connected and holds what the primary
	// last said it holds.
	CaughtUp bool `json:"caughtUp"`
	// Position is what it holds; PrimaryPosition what the primary last
	// said it holds.
	Position        uint64 `json:"position"`
	PrimaryPosition uint64 `json:"primaryPosition"`
	// LastContact is when it last heard from the primary.
	LastContact time.Time `json:"lastContact,omitzero"`
	// LastError is why the last stream ended, if it failed.
	LastError string `json:"lastError,omitempty"`
}

// Follower keeps a store a copy of its primary's: it streams the
// primary's change log, applies every change and acks it. A follower
// store must take no writes of its own: the caller refuses pushes and
// admin writes while it follows (a local write would make its history
// diverge, and the primary would then send it a full copy).
type Follower struct {
	store *storage.Store
	o     FollowerOptions
	log   *slog.Logger

	mu     sync.Mutex
	state  FollowerState
	cancel context.CancelFunc // of the current stream
	kick   chan struct{}      // SetPrimary: reconnect now, no backoff

	// A change that fails to apply again and again (a repo damaged on
	// this replica) is not retried forever: the next stream asks for a
	// full copy. Only Run's goroutine touches these.
	failedAt  uint64
	failures  int
	forceFull bool
}

// maxApplyFailures is how often one change may fail to apply before the
// follower asks for a full copy instead.
const maxApplyFailures = 3

// applyError is a change (or full copy) that failed to apply.
type applyError struct {
	pos uint64
	err error
}

func (e *applyError) Error() string { return e.err.Error() } // names the change already
func (e *applyError) Unwrap() error { return e.err }

// NewFollower returns a follower of o.Primary for store. Run starts it.
func NewFollower(store *storage.Store, o FollowerOptions) *Follower {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Git == "" {
		o.Git = "git"
	}
	if o.SSH == "" {
		o.SSH = "ssh"
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewFollowerMetrics(nil)
	}
	return &Follower{store: store, o: o, log: o.Logger.With("replica", o.ID), state: FollowerState{Primary: o.Primary}, kick: make(chan struct{}, 1)}
}

// Position returns the position the follower's store holds.
func (f *Follower) Position() uint64 { return f.store.Position() }

// State returns what the follower knows of its stream.
func (f *Follower) State() FollowerState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.state
	st.Position = f.store.Position()
	st.CaughtUp = st.Connected && st.Position >= st.PrimaryPosition
	return st
}

// SetPrimary makes the follower follow addr: the current stream ends and
// the next one goes to addr, from the position held. A follower whose
// new primary holds a different history gets a full copy from it.
func (f *Follower) SetPrimary(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Primary == addr {
		return
	}
	f.state.Primary = addr
	if f.cancel != nil {
		f.cancel()
	}
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run follows the primary until ctx ends, reconnecting with backoff when
// the stream breaks; it returns nil when ctx ends, or an error for
// options that can never work.
func (f *Follower) Run(ctx context.Context) error {
	if f.o.ID == "" || f.o.KeyFile == "" || f.o.HostKey == nil {
		return errors.New("replication: FollowerOptions.ID, KeyFile and HostKey are required")
	}
	if !validID.MatchString(f.o.ID) {
		return fmt.Errorf("replication: replica id %q: use letters, digits, '.', '_' and '-', at most 63", f.o.ID)
	}
	if f.o.Signer == nil {
		pem, err := os.ReadFile(f.o.KeyFile)
		if err != nil {
			return fmt.Errorf("replication: group key: %w", err)
		}
		if f.o.Signer, err = gossh.ParsePrivateKey(pem); err != nil {
			return fmt.Errorf("replication: group key %s: %w (give an unencrypted OpenSSH private key)", f.o.KeyFile, err)
		}
	}
	// known_hosts for git's ssh: the one host key, under an alias.
	dir, err := os.MkdirTemp("", "fjord-replica-")
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	defer os.RemoveAll(dir)
	knownHosts := filepath.Join(dir, "known_hosts")
	line := hostAlias + " " + string(gossh.MarshalAuthorizedKey(f.o.HostKey))
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	sshCmd := strings.Join([]string{shellQuote(f.o.SSH), "-F", "/dev/null", "-i", shellQuote(f.o.KeyFile),
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + shellQuote(knownHosts),
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlias=" + hostAlias, "-o", "ConnectTimeout=10",
		// One SSH connection for every fetch: a handshake per change would
		// be most of what a synchronous push waits for. The master exits
		// after ControlPersist idle, and at the latest with Run.
		"-o", "ControlMaster=auto", "-o", "ControlPath=" + shellQuote(filepath.Join(dir, "cm-%C")), "-o", "ControlPersist=30"}, " ")
	defer f.closeMasters(dir)

	backoff := f.o.MinBackoff
	for {
		applied, err := f.follow(ctx, sshCmd)
		if ctx.Err() != nil {
			return nil
		}
		f.o.Metrics.connected.Set(0)
		f.mu.Lock()
		f.state.Connected = false
		if err != nil {
			f.state.LastError = err.Error()
		}
		f.mu.Unlock()
		if applied {
			backoff = f.o.MinBackoff
		}
		var ae *applyError
		if errors.As(err, &ae) {
			if ae.pos == f.failedAt {
				f.failures++
			} else {
				f.failedAt, f.failures = ae.pos, 1
			}
			if f.failures >= maxApplyFailures {
				f.log.Error("a change failed to apply again and again; asking the primary for a full copy", "position", ae.pos, "err", ae.err)
				f.forceFull, f.failures = true, 0
			}
		}
		f.log.Warn("replication stream ended; reconnecting", "primary", f.State().Primary, "in", backoff, "err", err)
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, f.o.MaxBackoff)
		case <-f.kick: // a new primary: no reason to wait
			backoff = f.o.MinBackoff
		case <-ctx.Done():
			return nil
		}
	}
}

// closeMasters stops the SSH connection masters of the fetches.
func (f *Follower) closeMasters(dir string) {
	socks, _ := filepath.Glob(filepath.Join(dir, "cm-*"))
	for _, sock := range socks {
		cmd := exec.Command(f.o.SSH, "-F", "/dev/null", "-o", "ControlPath="+sock, "-O", "exit", hostAlias)
		if out, err := cmd.CombinedOutput(); err != nil {
			f.log.Debug("stop the ssh connection master", "socket", sock, "err", err, "out", string(out))
		}
	}
}

// follow runs one stream; applied tells whether it got anywhere.
func (f *Follower) follow(ctx context.Context, sshCmd string) (applied bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.mu.Lock()
	addr := f.state.Primary
	f.cancel = cancel
	f.mu.Unlock()

	cfg := &gossh.ClientConfig{
		User:            peerLogin,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(f.o.Signer)},
		HostKeyCallback: gossh.FixedHostKey(f.o.HostKey),
		Timeout:         10 * time.Second,
	}
	var d net.Dialer
	dctx, dcancel := context.WithTimeout(ctx, cfg.Timeout)
	conn, err := d.DialContext(dctx, "tcp", addr)
	dcancel()
	if err != nil {
		return false, fmt.Errorf("connect to primary %s: %w", addr, err)
	}
	c, chans, reqs, err := gossh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return false, fmt.Errorf("ssh to primary %s: %w", addr, err)
	}
	client := gossh.NewClient(c, chans, reqs)
	defer client.Close()
	go func() {
		<-ctx.Done()
		client.Close() // unblocks the reads below
	}()
	sess, err := client.NewSession()
	if err != nil {
		return false, fmt.Errorf("session on primary %s: %w", addr, err)
	}
	var stderr lockedBuffer // written by the SSH library's goroutine
	sess.Stderr = &stderr
	stdin, err := sess.StdinPipe()
	if err != nil {
		return false, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return false, err
	}
	pos, sum := f.store.PositionSum()
	if sum == "" {
		sum = "-"
	}
	if f.forceFull {
		sum = "full-copy" // matches no change: the primary sends a full copy
	}
	if err := sess.Start(fmt.Sprintf("%s %s %d %s", gitserver.ReplicateCommand, f.o.ID, pos, sum)); err != nil {
		return false, fmt.Errorf("start the stream on primary %s: %w", addr, err)
	}
	f.log.Info("following primary", "primary", addr, "position", pos)
	f.o.Metrics.streams.Inc()

	enc := json.NewEncoder(stdin)
	dec := json.NewDecoder(bufio.NewReaderSize(stdout, 64<<10))
	fetch := f.fetcher(addr, sshCmd)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				return applied, fmt.Errorf("primary %s: %s", addr, msg)
			}
			return applied, fmt.Errorf("read the stream of primary %s: %w", addr, err)
		}
		f.mu.Lock()
		// Connected from the first message: the primary took the stream.
		f.state.Connected, f.state.LastError = true, ""
		f.state.PrimaryPosition, f.state.LastContact = m.Pos, time.Now()
		f.mu.Unlock()
		f.o.Metrics.connected.Set(1)
		f.o.Metrics.primaryPos.Set(float64(m.Pos))
		start := time.Now()
		switch m.Type {
		case msgSnapshot:
			if m.Snapshot == nil {
				return applied, fmt.Errorf("primary %s sent an empty full copy", addr)
			}
			f.log.Info("making a full copy of the primary", "primary", addr, "position", m.Snapshot.Pos)
			if err := f.store.ApplySnapshot(ctx, m.Snapshot, fetch); err != nil {
				return applied, &applyError{pos: m.Snapshot.Pos, err: err}
			}
			f.forceFull = false
			f.o.Metrics.fullCopies.Inc()
		case msgChange:
			if _, err := f.store.ApplyChange(ctx, m.Change, m.Files, m.Packs, fetch); err != nil {
				if ctx.Err() != nil {
					return applied, err
				}
				return applied, &applyError{pos: f.store.Position() + 1, err: err}
			}
			f.o.Metrics.apply.Observe(time.Since(start).Seconds())
		case msgPing:
		default:
			continue // a newer primary's message: nothing to do with it
		}
		applied = applied || m.Type != msgPing
		if err := enc.Encode(ack{Ack: f.store.Position()}); err != nil {
			return applied, fmt.Errorf("ack to primary %s: %w", addr, err)
		}
	}
}

// fetcher fetches objects by name from the primary with git over SSH with
// the group key (the primary's upload-pack serves any object to peers).
func (f *Follower) fetcher(addr, sshCmd string) storage.FetchFunc {
	return func(ctx context.Context, repo, dir string, wants []string) error {
		f.o.Metrics.fetches.Inc()
		url := "ssh://" + peerLogin + "@" + addr + "/" + repo + ".git"
		args := []string{"-c", "protocol.version=2", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--stdin", url}
		in := strings.Join(wants, "\n") + "\n"
		r := gitrun.Runner{Git: f.o.Git}
		cmd := r.Command(ctx, dir, []string{"GIT_SSH_COMMAND=" + sshCmd}, args...)
		cmd.Stdin = strings.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("fetch %d objects of %q from %s: %w", len(wants), repo, addr, r.Error(args[2:], err, stderr.String()))
		}
		return nil
	}
}

// shellQuote quotes s for the shell git runs core.sshCommand with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
