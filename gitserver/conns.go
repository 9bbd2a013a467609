package gitserver

import (
	"net"
	"sync"

	"github.com/gliderlabs/ssh"
)

// connKey is the ssh.Context key of a connection's tracked net.Conn.
type connKey struct{}

// conns tracks open connections and how many git commands each runs, so
// that Shutdown can close idle connections at once (a co-located
// reconciler keeps one open between polls) while busy ones finish.
type conns struct {
	mu       sync.Mutex
	active   map[*trackedConn]int
	draining bool
}

// trackedConn removes itself from the tracker when closed.
type trackedConn struct {
	net.Conn
	host string // the remote address without port, for log lines
	t    *conns
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.active, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// wrap is the server's ConnCallback.
func (t *conns) wrap(ctx ssh.Context, c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, host: hostOf(c.RemoteAddr()), t: t}
	t.mu.Lock()
	if t.active == nil {
		t.active = make(map[*trackedConn]int)
	}
	t.active[tc] = 0
	draining := t.draining
	t.mu.Unlock()
	if draining {
		tc.Close()
	}
	ctx.SetValue(connKey{}, tc)
	return tc
}

// begin and end bracket one git command on a connection.
func (t *conns) begin(tc *trackedConn) {
	if tc == nil {
		return
	}
	t.mu.Lock()
	if _, open := t.active[tc]; open {
		t.active[tc]++
	}
	t.mu.Unlock()
}

func (t *conns) end(tc *trackedConn) {
	if tc == nil {
		return
	}
	t.mu.Lock()
	n, open := t.active[tc]
	if open {
		n--
		t.active[tc] = n
	}
	closeIt := open && n == 0 && t.draining
	t.mu.Unlock()
	if closeIt {
		tc.Close()
	}
}

// drain closes every idle connection now and each busy one as soon as its
// last command ends.
func (t *conns) drain() {
	t.mu.Lock()
	t.draining = true
	var idle []*trackedConn
	for c, n := range t.active {
		if n == 0 {
			idle = append(idle, c)
		}
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// isDraining reports whether Shutdown has begun.
func (t *conns) isDraining() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.draining
}
