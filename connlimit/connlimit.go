// Package connlimit bounds the network connections a listener holds: per
// remote host and in total. At the total, the oldest connection that has
// not yet proven itself (finished its handshake and first exchange) is
// closed to make room, so a flood of silent connections cannot lock out
// a legitimate client, while established sessions are never evicted.
//
// A connection without a host address (a unix socket's, a pipe) is not
// counted: the owner's local socket keeps working whatever the network
// side suffers.
package connlimit

import (
	"container/list"
	"log/slog"
	"net"
	"sync"
)

// Defaults of Limits.
const (
	DefaultTotal   = 4096
	DefaultPerHost = 64
)

// Limits is the accounting of admitted connections. Its zero value
// admits DefaultTotal connections and DefaultPerHost per host.
type Limits struct {
	Total   int          // connections held at most
	PerHost int          // connections held at most per remote IP
	Log     *slog.Logger // if set, refusals and evictions are logged (the 1st, 2nd, 4th, 8th...)
	Name    string       // what the log calls the listeners, such as "9p"

	mu      sync.Mutex
	total   int            // guarded by mu
	perHost map[string]int // guarded by mu
	pending list.List      // guarded by mu: *Ticket not yet established, oldest first
	stats   Stats          // guarded by mu: Refused, Evicted
}

// Stats are the counts of a Limits.
type Stats struct {
	Held    int   // connections held
	Pending int   // ... of which not yet established
	Refused int64 // connections refused so far
	Evicted int64 // connections closed to make room so far
}

// A Ticket is one admitted connection. Its methods may be called on nil
// (a connection that was not counted).
type Ticket struct {
	l    *Limits
	host string
	nc   net.Conn
	elem *list.Element // in l.pending until established; guarded by l.mu
	done bool          // guarded by l.mu
}

// Host is the remote IP of a connection, or "" for one without (a unix
// socket, a pipe).
func Host(nc net.Conn) string {
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UDPAddr:
		return a.IP.String()
	}
	return ""
}

// Admit decides whether nc is taken. It refuses a host past PerHost; at
// Total it closes the oldest connection not yet established to make
// room, and refuses nc if there is none. A refused connection is not
// closed: the caller does that. The ticket is nil for a connection
// without a host.
func (l *Limits) Admit(nc net.Conn) (*Ticket, bool) {
	host := Host(nc)
	if host == "" {
		return nil, true
	}
	maxTotal, maxHost := l.Total, l.PerHost
	if maxTotal <= 0 {
		maxTotal = DefaultTotal
	}
	if maxHost <= 0 {
		maxHost = DefaultPerHost
	}
	var evict net.Conn
	l.mu.Lock()
	if l.perHost[host] >= maxHost {
		l.refuseLocked(nc, "too many connections from one host")
		return nil, false
	}
	if l.total >= maxTotal {
		front := l.pending.Front()
		if front == nil {
			l.refuseLocked(nc, "too many connections")
			return nil, false
		}
		old := front.Value.(*Ticket)
		evict = old.nc
		l.releaseLocked(old)
		l.stats.Evicted++
		if n := l.stats.Evicted; l.Log != nil && n&(n-1) == 0 {
			l.Log.Warn(l.Name+" connection closed to make room: too many connections", "remote", evict.RemoteAddr().String(), "evicted", n)
		}
	}
	if l.perHost == nil {
		l.perHost = make(map[string]int)
	}
	t := &Ticket{l: l, host: host, nc: nc}
	t.elem = l.pending.PushBack(t)
	l.perHost[host]++
	l.total++
	l.mu.Unlock()
	if evict != nil {
		evict.Close()
	}
	return t, true
}

// refuseLocked counts and logs a refusal, and unlocks l.mu.
func (l *Limits) refuseLocked(nc net.Conn, why string) {
	l.stats.Refused++
	n := l.stats.Refused
	l.mu.Unlock()
	if l.Log != nil && n&(n-1) == 0 {
		l.Log.Warn(l.Name+" connection refused: "+why, "remote", nc.RemoteAddr().String(), "refused", n)
	}
}

// Established marks the connection as proven: it is no longer evicted
// to make room for others.
func (t *Ticket) Established() {
	if t == nil {
		return
	}
	t.l.mu.Lock()
	if t.elem != nil {
		t.l.pending.Remove(t.elem)
		t.elem = nil
	}
	t.l.mu.Unlock()
}

// Release gives the connection's place back. It may be called more than
// once.
func (t *Ticket) Release() {
	if t == nil {
		return
	}
	t.l.mu.Lock()
	t.l.releaseLocked(t)
	t.l.mu.Unlock()
}

func (l *Limits) releaseLocked(t *Ticket) {
	if t.done {
		return
	}
	t.done = true
	if t.elem != nil {
		l.pending.Remove(t.elem)
		t.elem = nil
	}
	l.total--
	if l.perHost[t.host]--; l.perHost[t.host] <= 0 {
		delete(l.perHost, t.host)
	}
}

// Stats reports the counts.
func (l *Limits) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Held, st.Pending = l.total, l.pending.Len()
	return st
}
