package dns

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
)

// Defaults of the TCP service's limits (Options.TCPConns,
// Options.TCPPerClient).
const (
	DefaultTCPConns     = 512 // connections served at once
	DefaultTCPPerClient = 16  // connections at once from one client (IPv4 address, IPv6 /64)
)

// The TCP connections served are kept in a tcpConns, which makes room
// for a new one, when there is none, by closing an idle one: a
// connection waiting for its next message, the one that has waited
// longest. A client over its own cap loses its longest-idle connection
// to its new one; a full server loses the longest-idle connection of
// anyone. So connections held open and idle, however many and however
// often renewed, cost the client that holds them and never lock out
// another client with a query to send. A new connection is refused only
// when every connection it could replace is busy answering.
type tcpConns struct {
	max, perClient int

	mu       sync.Mutex
	n        int                        // connections served
	byClient map[netip.Prefix]int       // connections served, by client
	idle     list.List                  // of *tcpConn: the idle ones, longest idle first
	shed     func()                     // counts a connection closed or refused to make room
	conns    map[*tcpConn]*list.Element // the idle ones' places in idle
}

// A tcpConn is one connection served.
type tcpConn struct {
	c       net.Conn
	client  netip.Prefix
	evicted bool // guarded by tcpConns.mu: closed to make room, no longer counted
}

func newTCPConns(max, perClient int, shed func()) *tcpConns {
	return &tcpConns{max: max, perClient: perClient, shed: shed,
		byClient: make(map[netip.Prefix]int), conns: make(map[*tcpConn]*list.Element)}
}

// clientOf is the prefix a client's connections are counted by: its
// IPv4 address, or the /64 of its IPv6 address.
func clientOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// add counts c, from client, making room if need be. It returns nil if c
// is refused (and closed).
func (t *tcpConns) add(c net.Conn, from netip.Addr) *tcpConn {
	tc := &tcpConn{c: c, client: clientOf(from)}
	t.mu.Lock()
	if t.byClient[tc.client] >= t.perClient {
		if !t.evictLocked(func(o *tcpConn) bool { return o.client == tc.client }) {
			t.mu.Unlock()
			t.shed()
			c.Close()
			return nil
		}
	}
	if t.n >= t.max && !t.evictLocked(func(*tcpConn) bool { return true }) {
		t.mu.Unlock()
		t.shed()
		c.Close()
		return nil
	}
	t.n++
	t.byClient[tc.client]++
	t.conns[tc] = t.idle.PushBack(tc) // idle until its first message has come
	t.mu.Unlock()
	return tc
}

// evictLocked closes the longest-idle connection that ok accepts, and
// reports whether there was one. t.mu is held.
func (t *tcpConns) evictLocked(ok func(*tcpConn) bool) bool {
	for e := t.idle.Front(); e != nil; e = e.Next() {
		o := e.Value.(*tcpConn)
		if !ok(o) {
			continue
		}
		t.idle.Remove(e)
		delete(t.conns, o)
		o.evicted = true
		t.dropLocked(o)
		o.c.Close()
		t.shed()
		return true
	}
	return false
}

func (t *tcpConns) dropLocked(tc *tcpConn) {
	t.n--
	if t.byClient[tc.client]--; t.byClient[tc.client] <= 0 {
		delete(t.byClient, tc.client)
	}
}

// setIdle marks tc as waiting for a message (idle), or as answering
// one. It reports false if tc was closed to make room.
func (t *tcpConns) setIdle(tc *tcpConn, idle bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc.evicted {
		return false
	}
	e, was := t.conns[tc]
	switch {
	case idle && !was:
		t.conns[tc] = t.idle.PushBack(tc)
	case !idle && was:
		t.idle.Remove(e)
		delete(t.conns, tc)
	}
	return true
}

// remove forgets tc, which is closed.
func (t *tcpConns) remove(tc *tcpConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc.evicted {
		return
	}
	if e, ok := t.conns[tc]; ok {
		t.idle.Remove(e)
		delete(t.conns, tc)
	}
	t.dropLocked(tc)
}

// count returns the number of connections served.
func (t *tcpConns) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}
