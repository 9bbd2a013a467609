package gitserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// peer is what a session knows of its connection.
type peer struct {
	perms  *gossh.Permissions // set by VerifiedPublicKeyCallback
	login  string             // the SSH login name ("git" in git@host): not an identity
	remote string             // the client's address, without port
}

func newPeer(conn *gossh.ServerConn, tc *trackedConn) peer {
	p := peer{perms: conn.Permissions, login: conn.User()}
	if tc != nil {
		p.remote = tc.host
	} else {
		p.remote = hostOf(conn.RemoteAddr())
	}
	return p
}

// who names a peer in a log line: the fjord user its verified key belongs
// to (or "anonymous"), the login name it gave, and where it comes from.
func (s *Server) who(p peer) []any {
	name := "anonymous"
	if u, _, err := s.identity(p); u != nil {
		name = u.Name
	} else if err != nil {
		name = "unknown"
	}
	return []any{"user", name, "login", p.login, "remote", p.remote}
}

// refuseChannel rejects channel types fjord does not serve (port
// forwarding) with a reason the client prints.
func (s *Server) refuseChannel(_ *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, _ ssh.Context) {
	s.metrics.refused.WithLabelValues("port-forwarding").Inc()
	s.log.Warn("refused: port forwarding", append(s.who(newPeer(conn, nil)), "channel", newChan.ChannelType())...)
	newChan.Reject(gossh.Prohibited, "fjord: port forwarding is disabled on this server")
}

// refuseForward rejects remote port forwarding requests.
func (s *Server) refuseForward(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	s.metrics.refused.WithLabelValues("port-forwarding").Inc()
	if conn, ok := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn); ok {
		s.log.Warn("refused: remote port forwarding", s.who(newPeer(conn, nil))...)
	} else {
		s.log.Warn("refused: remote port forwarding", "remote", hostOf(ctx.RemoteAddr()))
	}
	return false, nil
}

// handleSession serves one session channel: it accepts GIT_PROTOCOL and
// one exec of a git service, and refuses everything else with a message.
func (s *Server) handleSession(_ *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	tc, _ := ctx.Value(connKey{}).(*trackedConn)
	p := newPeer(conn, tc)
	if s.conns.isDraining() {
		newChan.Reject(gossh.ResourceShortage, "fjord: server is shutting down; retry in a moment")
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.metrics.refused.WithLabelValues("max-sessions").Inc()
		s.log.Warn("refused: session limit reached", append(s.who(p), "limit", s.limits.MaxSessions)...)
		newChan.Reject(gossh.ResourceShortage, fmt.Sprintf("fjord: too many concurrent git sessions (limit %d); retry shortly", s.limits.MaxSessions))
		return
	}
	defer func() { <-s.slots }()
	ch, reqs, err := newChan.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	s.metrics.sessions.Inc()
	s.metrics.sessionsActive.Inc()
	defer s.metrics.sessionsActive.Dec()

	var gitProtocol string
	for req := range reqs {
		switch req.Type {
		case "env":
			name, value, ok := envPayload(req.Payload)
			if ok && name == "GIT_PROTOCOL" {
				gitProtocol = value
				req.Reply(true, nil)
				continue
			}
			// OpenSSH sends LANG and LC_* by default; declining is silent
			// for the client, so this is not worth a warning.
			s.log.Debug("declined environment variable", "name", name)
			req.Reply(false, nil)
		case "exec":
			cmdline, ok := sshString(req.Payload)
			if !ok {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			s.runExec(ctx, tc, p, ch, reqs, cmdline, gitProtocol)
			return
		case "shell":
			req.Reply(true, nil)
			s.refuseSession(ch, p, "shell", "interactive shells are disabled; this server only serves git (git clone ssh://HOST:PORT/REPO)")
			return
		case "subsystem":
			req.Reply(true, nil)
			s.refuseSession(ch, p, "subsystem", "subsystems (sftp and others) are disabled; this server only serves git")
			return
		case "pty-req":
			s.metrics.refused.WithLabelValues("pty").Inc()
			s.log.Warn("refused: pty", s.who(p)...)
			req.Reply(false, nil)
		case "auth-agent-req@openssh.com", "x11-req":
			s.metrics.refused.WithLabelValues("forwarding").Inc()
			s.log.Warn("refused: "+req.Type, s.who(p)...)
			req.Reply(false, nil)
		default:
			req.Reply(false, nil)
		}
	}
}

// runExec runs a session's one command in the session's own goroutine,
// so the answer goes out as soon as the exec is accepted, with no
// hand-off to another goroutine (nor another goroutine stack to grow):
// a small goroutine declines whatever the client asks meanwhile
// (window-change, signal, keepalive).
func (s *Server) runExec(ctx ssh.Context, tc *trackedConn, p peer, ch gossh.Channel, reqs <-chan *gossh.Request, cmdline, gitProtocol string) {
	// Counted until the channel is closed on both sides, so a draining
	// server never cuts a connection while the client still reads the
	// exit status.
	s.conns.begin(tc)
	defer s.conns.end(tc)
	declined := make(chan struct{})
	go func() {
		defer close(declined)
		for req := range reqs {
			req.Reply(false, nil)
		}
	}()
	code := s.exec(ctx, p, ch, cmdline, gitProtocol)
	sendExit(ch, code)
	ch.Close()
	<-declined
}

// refuseSession ends a session that asked for something other than git.
func (s *Server) refuseSession(ch gossh.Channel, p peer, reason, msg string) {
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.log.Warn("refused: "+msg, s.who(p)...)
	fmt.Fprintf(ch.Stderr(), "fjord: %s\n", msg)
	sendExit(ch, 1)
	ch.Close()
}

func sendExit(ch gossh.Channel, code int) {
	ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(code)))
}

// sshString decodes a payload that is one SSH string (RFC 4251 section 5),
// as an exec request's is, without the reflection of gossh.Unmarshal.
func sshString(b []byte) (string, bool) {
	s, rest, ok := cutSSHString(b)
	return s, ok && len(rest) == 0
}

// envPayload decodes an env request: two SSH strings, name and value.
func envPayload(b []byte) (name, value string, ok bool) {
	name, rest, ok := cutSSHString(b)
	if !ok {
		return "", "", false
	}
	value, ok = sshString(rest)
	return name, value, ok
}

func cutSSHString(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

// clientError is an error whose text is for the client: it is written to
// the client's stderr as "fjord: TEXT".
type clientError struct {
	reason string // metrics label
	msg    string
}

func (e *clientError) Error() string { return e.msg }

func refusal(reason, format string, args ...any) error {
	return &clientError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// exec authorizes and runs one git command, returning its exit status.
// It logs one line per command, built at the end from plain attributes
// (no Logger.With chain to clone on every command).
func (s *Server) exec(ctx context.Context, p peer, ch gossh.Channel, cmdline, gitProtocol string) int {
	if isPeer(p) {
		return s.execPeer(ctx, p, ch, cmdline, gitProtocol)
	}
	start := time.Now()
	user, fp, err := s.identity(p)
	if err != nil {
		err = refusal("auth", "%v", err)
	}
	userName := "anonymous"
	if user != nil {
		userName = user.Name
	}

	var (
		svc  service
		repo string
		path = "advert"
	)
	if err == nil {
		var raw string
		svc, raw, err = parseCommand(cmdline)
		if err != nil {
			err = refusal("command", "%v", err)
		} else if repo, err = storage.NormalizeRepoName(raw); err != nil {
			err = refusal("path", "%v", err)
		}
	}
	if err == nil {
		path, err = s.serve(ctx, ch, user, svc, repo, gitProtocol)
	}

	elapsed := time.Since(start)
	attrs := []slog.Attr{
		slog.String("remote", p.remote), slog.String("user", userName), slog.String("login", p.login), slog.String("key", fp),
		slog.String("service", string(svc)), slog.String("repo", repo), slog.Int("protocol", protocolVersion(gitProtocol)),
		slog.String("path", path), slog.Duration("duration", elapsed),
	}
	var ce *clientError
	switch {
	case err == nil:
		s.metrics.requests.WithLabelValues(string(svc), "ok").Inc()
		s.metrics.duration.WithLabelValues(string(svc), path).Observe(elapsed.Seconds())
		s.log.LogAttrs(ctx, slog.LevelInfo, "git command served", attrs...)
		return 0
	case errors.As(err, &ce):
		s.metrics.refused.WithLabelValues(ce.reason).Inc()
		s.metrics.requests.WithLabelValues(string(svc), "refused").Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "refused: "+ce.msg, append(attrs, slog.String("command", cmdline))...)
		fmt.Fprintf(ch.Stderr(), "fjord: %s\n", ce.msg)
		return 1
	default:
		s.metrics.requests.WithLabelValues(string(svc), "error").Inc()
		s.log.LogAttrs(ctx, slog.LevelError, "git command failed", append(attrs, slog.Any("err", err))...)
		var ee exitCoder
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		if !errors.Is(err, io.EOF) {
			fmt.Fprintf(ch.Stderr(), "fjord: %s failed on the server; the server log has details\n", svc)
		}
		return 1
	}
}

type exitCoder interface{ ExitCode() int }

// serve checks access and runs the service. It returns "advert" when the
// request was answered from the snapshot alone, "pack" when git ran.
func (s *Server) serve(ctx context.Context, ch gossh.Channel, user *storage.User, svc service, repo, gitProtocol string) (string, error) {
	access := s.store.AccessFor(user, repo)
	if access < storage.AccessRead {
		return "advert", s.notFound(user, repo)
	}
	switch svc {
	case serviceUploadPack:
		return s.uploadPack(ctx, ch, user, repo, gitProtocol)
	case serviceUploadArchive:
		return "pack", s.proxyGit(ctx, ch, repo, gitProtocol, nil, "upload-archive")
	case serviceReceivePack:
		if access < storage.AccessWrite {
			who := "anonymous clients"
			if user != nil {
				who = fmt.Sprintf("user %q", user.Name)
			}
			return "advert", refusal("access", "%s may read %q but not push to it; an admin can run `fjord grant USER %s write`", who, repo, repo)
		}
		if s.guard != nil {
			if err := s.guard.AllowPush(ctx, repo); err != nil {
				return "advert", refusal("push-refused", "%v", err)
			}
		}
		return "pack", s.receivePack(ctx, ch, repo, gitProtocol)
	}
	return "advert", refusal("command", "%v", errCommandRefused)
}
