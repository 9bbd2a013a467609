package gitserver

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// Permission extensions fjord attaches to a connection once a key's
// signature has been verified. They are set only in
// VerifiedPublicKeyCallback, so they always describe the key that proved
// possession, never merely the last key a client offered (the
// CVE-2024-45337 pattern).
const (
	extKeyFingerprint = "fjord-key-fp"
	extAnonymous      = "fjord-anonymous"
)

// acceptKey is asked about every key a client offers, before any
// signature is checked. It only filters: known keys pass, and unknown keys
// pass while some repo allows anonymous reads. Identity is decided later,
// in verifiedKey.
func (s *Server) acceptKey(ctx ssh.Context, key ssh.PublicKey) bool {
	host := hostOf(ctx.RemoteAddr())
	if s.auth.blocked(host) {
		return false
	}
	fp := gossh.FingerprintSHA256(key)
	s.log.Debug("public key offered", "remote", host, "key", fp)
	if s.isPeerKey(key) {
		return true
	}
	if _, err := s.store.UserByKey(fp); err == nil {
		return true
	}
	return s.store.AnyAnonRead()
}

// serverConfig installs the verified-key callback on the base config that
// gliderlabs/ssh then completes.
func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	return &gossh.ServerConfig{
		VerifiedPublicKeyCallback: func(conn gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			fp := gossh.FingerprintSHA256(key)
			if s.isPeerKey(key) {
				loggedIn(ctx)
				return &gossh.Permissions{Extensions: map[string]string{extPeer: fp}}, nil
			}
			if _, err := s.store.UserByKey(fp); err == nil {
				loggedIn(ctx)
				return &gossh.Permissions{Extensions: map[string]string{extKeyFingerprint: fp}}, nil
			}
			if s.store.AnyAnonRead() {
				loggedIn(ctx)
				return &gossh.Permissions{Extensions: map[string]string{extAnonymous: fp}}, nil
			}
			return nil, fmt.Errorf("unknown key %s", fp)
		},
	}
}

// identity returns the user a connection authenticated as, or nil for an
// anonymous client. It re-reads the user so a key or grant removed while
// the connection is open takes effect on its next command.
func (s *Server) identity(p peer) (*storage.User, string, error) {
	if p.perms == nil {
		return nil, "", fmt.Errorf("connection has no verified key")
	}
	if fp, ok := p.perms.Extensions[extKeyFingerprint]; ok {
		u, err := s.store.UserByKey(fp)
		if err != nil {
			return nil, fp, fmt.Errorf("key %s is no longer registered", fp)
		}
		return &u, fp, nil
	}
	if fp, ok := p.perms.Extensions[extAnonymous]; ok {
		return nil, fp, nil
	}
	return nil, "", fmt.Errorf("connection has no verified key")
}

// banner tells a client refused by the failed-auth limit why; OpenSSH
// prints the banner on stderr, and git passes it through.
func (s *Server) banner(ctx ssh.Context) string {
	host := hostOf(ctx.RemoteAddr())
	if s.auth.blocked(host) {
		s.metrics.refused.WithLabelValues("auth-rate-limit").Inc()
		s.log.Warn("refused: too many failed authentications", "remote", host)
		return fmt.Sprintf("fjord: too many failed authentications from %s; wait %s and check which key you offer (ssh -v)\n", host, s.auth.window)
	}
	return ""
}

// connFailed counts failed authentications per source address.
func (s *Server) connFailed(c net.Conn, err error) {
	if _, ok := err.(*gossh.ServerAuthError); !ok {
		return
	}
	host := hostOf(c.RemoteAddr())
	s.metrics.authFailures.Inc()
	s.auth.fail(host)
	s.log.Info("authentication failed", "remote", host)
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// authLimiter counts failed authentications per source address in a fixed
// window.
type authLimiter struct {
	max    int
	window time.Duration

	mu   sync.Mutex
	seen map[string]*failures
}

type failures struct {
	start time.Time
	n     int
}

func newAuthLimiter(max int, window time.Duration) *authLimiter {
	return &authLimiter{max: max, window: window, seen: make(map[string]*failures)}
}

func (l *authLimiter) fail(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	f := l.seen[host]
	if f == nil || now.Sub(f.start) > l.window {
		// Drop stale entries now and then so the map cannot grow without
		// bound under a scan from many addresses.
		if len(l.seen) > 4096 {
			for h, old := range l.seen {
				if now.Sub(old.start) > l.window {
					delete(l.seen, h)
				}
			}
		}
		f = &failures{start: now}
		l.seen[host] = f
	}
	f.n++
}

func (l *authLimiter) blocked(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.seen[host]
	return f != nil && f.n >= l.max && time.Since(f.start) <= l.window
}
