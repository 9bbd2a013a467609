package gitserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// refuseChannel rejects channel types fjord does not serve (port
// forwarding) with a reason the client prints.
func (s *Server) refuseChannel(_ *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, _ ssh.Context) {
	s.metrics.refused.WithLabelValues("port-forwarding").Inc()
	s.log.Warn("refused: port forwarding", "user", conn.User(), "remote", hostOf(conn.RemoteAddr()), "channel", newChan.ChannelType())
	newChan.Reject(gossh.Prohibited, "fjord: port forwarding is disabled on this server")
}

// refuseForward rejects remote port forwarding requests.
func (s *Server) refuseForward(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	s.metrics.refused.WithLabelValues("port-forwarding").Inc()
	s.log.Warn("refused: remote port forwarding", "remote", hostOf(ctx.RemoteAddr()))
	return false, nil
}

// handleSession serves one session channel: it accepts GIT_PROTOCOL and
// one exec of a git service, and refuses everything else with a message.
func (s *Server) handleSession(_ *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	if s.conns.isDraining() {
		newChan.Reject(gossh.ResourceShortage, "fjord: server is shutting down; retry in a moment")
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.metrics.refused.WithLabelValues("max-sessions").Inc()
		s.log.Warn("refused: session limit reached", "limit", s.limits.MaxSessions, "remote", hostOf(conn.RemoteAddr()))
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

	var (
		gitProtocol string
		done        chan struct{}
	)
	refuse := func(reason, msg string) {
		s.metrics.refused.WithLabelValues(reason).Inc()
		s.log.Warn("refused: "+msg, "user", conn.User(), "remote", hostOf(conn.RemoteAddr()))
		fmt.Fprintf(ch.Stderr(), "fjord: %s\n", msg)
		sendExit(ch, 1)
		ch.Close()
	}
	for req := range reqs {
		switch {
		case done != nil:
			// A command is running; later requests (window-change,
			// signal, keepalive) are declined.
			req.Reply(false, nil)
		case req.Type == "env":
			var kv struct{ Name, Value string }
			if gossh.Unmarshal(req.Payload, &kv) == nil && kv.Name == "GIT_PROTOCOL" {
				gitProtocol = kv.Value
				req.Reply(true, nil)
				continue
			}
			// OpenSSH sends LANG and LC_* by default; declining is silent
			// for the client, so this is not worth a warning.
			s.log.Debug("declined environment variable", "name", kv.Name)
			req.Reply(false, nil)
		case req.Type == "exec":
			var p struct{ Command string }
			if err := gossh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			done = make(chan struct{})
			// Counted until the channel is closed on both sides (the
			// end of this function), so a draining server never cuts a
			// connection while the client still reads the exit status.
			s.conns.begin(ctx)
			defer s.conns.end(ctx)
			go func() {
				defer close(done)
				code := s.exec(ctx, conn, ch, p.Command, gitProtocol)
				sendExit(ch, code)
				ch.Close()
			}()
		case req.Type == "shell":
			req.Reply(true, nil)
			refuse("shell", "interactive shells are disabled; this server only serves git (git clone ssh://HOST:PORT/REPO)")
			return
		case req.Type == "subsystem":
			req.Reply(true, nil)
			refuse("subsystem", "subsystems (sftp and others) are disabled; this server only serves git")
			return
		case req.Type == "pty-req":
			s.metrics.refused.WithLabelValues("pty").Inc()
			s.log.Warn("refused: pty", "user", conn.User(), "remote", hostOf(conn.RemoteAddr()))
			req.Reply(false, nil)
		case req.Type == "auth-agent-req@openssh.com" || req.Type == "x11-req":
			s.metrics.refused.WithLabelValues("forwarding").Inc()
			s.log.Warn("refused: "+req.Type, "user", conn.User(), "remote", hostOf(conn.RemoteAddr()))
			req.Reply(false, nil)
		default:
			req.Reply(false, nil)
		}
	}
	if done != nil {
		<-done
	}
}

func sendExit(ch gossh.Channel, code int) {
	ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{uint32(code)}))
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
func (s *Server) exec(ctx context.Context, conn *gossh.ServerConn, ch gossh.Channel, cmdline, gitProtocol string) int {
	start := time.Now()
	log := s.log.With("remote", hostOf(conn.RemoteAddr()))
	user, fp, err := s.identity(conn)
	if err != nil {
		err = refusal("auth", "%v", err)
	}
	userName := "anonymous"
	if user != nil {
		userName = user.Name
	}
	log = log.With("user", userName, "key", fp)

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
	log = log.With("service", string(svc), "repo", repo, "protocol", protocolVersion(gitProtocol), "path", path, "duration", elapsed)
	var ce *clientError
	switch {
	case err == nil:
		s.metrics.requests.WithLabelValues(string(svc), "ok").Inc()
		s.metrics.duration.WithLabelValues(string(svc), path).Observe(elapsed.Seconds())
		log.Info("git command served")
		return 0
	case errors.As(err, &ce):
		s.metrics.refused.WithLabelValues(ce.reason).Inc()
		s.metrics.requests.WithLabelValues(string(svc), "refused").Inc()
		log.Warn("refused: "+ce.msg, "command", cmdline)
		fmt.Fprintf(ch.Stderr(), "fjord: %s\n", ce.msg)
		return 1
	default:
		s.metrics.requests.WithLabelValues(string(svc), "error").Inc()
		log.Error("git command failed", "err", err)
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
		// The same words whether the repo is missing or hidden, so a
		// client cannot probe which repos exist.
		return "advert", refusal("access", "repository %q not found, or you have no access to it", repo)
	}
	switch svc {
	case serviceUploadPack:
		return s.uploadPack(ctx, ch, repo, gitProtocol)
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
