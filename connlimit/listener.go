package connlimit

import (
	"net"
	"sync"
)

// Listener wraps l so that Accept returns only connections Limits
// admits; the others are closed at once. A returned connection gives
// its place back when closed, and is marked established by
// MarkEstablished (for example from http.Server.ConnState).
func Listener(l net.Listener, lim *Limits) net.Listener {
	return &listener{Listener: l, lim: lim}
}

type listener struct {
	net.Listener
	lim *Limits
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		t, ok := l.lim.Admit(nc)
		if !ok {
			nc.Close()
			continue
		}
		return &conn{Conn: nc, t: t}, nil
	}
}

type conn struct {
	net.Conn
	t    *Ticket
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(c.t.Release)
	return c.Conn.Close()
}

// MarkEstablished marks a connection returned by a Listener (or a
// connection wrapping one, such as a *tls.Conn) as established. Other
// connections are left alone.
func MarkEstablished(nc net.Conn) {
	for nc != nil {
		if c, ok := nc.(*conn); ok {
			c.t.Established()
			return
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		nc = u.NetConn()
	}
}
