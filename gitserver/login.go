package gitserver

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
)

// loginTimeout bounds the SSH handshake and authentication of a
// connection, as OpenSSH's LoginGraceTime does. The idle timeout alone is
// not enough: every byte resets it, so a client dribbling one byte at a
// time would hold a connection open forever without logging in.
const loginTimeout = 30 * time.Second

// loginKey is the ssh.Context key of a connection's *loginConn.
type loginKey struct{}

// loginConn caps every deadline set on the connection at the end of its
// login grace time until authentication has succeeded.
type loginConn struct {
	net.Conn
	deadline time.Time
	done     atomic.Bool
}

func (c *loginConn) SetDeadline(t time.Time) error {
	if !c.done.Load() && (t.IsZero() || t.After(c.deadline)) {
		t = c.deadline
	}
	return c.Conn.SetDeadline(t)
}

// limitLogin wraps a new connection in its login grace time.
func limitLogin(ctx ssh.Context, c net.Conn) net.Conn {
	lc := &loginConn{Conn: c, deadline: time.Now().Add(loginTimeout)}
	lc.Conn.SetDeadline(lc.deadline)
	ctx.SetValue(loginKey{}, lc)
	return lc
}

// loggedIn lifts the login grace time of ctx's connection; from now on
// only the idle timeout applies.
func loggedIn(ctx ssh.Context) {
	if lc, ok := ctx.Value(loginKey{}).(*loginConn); ok {
		lc.done.Store(true)
	}
}
