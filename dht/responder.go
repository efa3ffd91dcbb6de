package dht

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2/int160"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// The library answers find_node, get and get_peers with the wrong nodes:
// it takes the target from the info_hash argument, which find_node and
// get do not have (so it looks for nodes near zero), and it walks its
// buckets from the target's towards the farthest, never looking at the
// buckets nearer the node, where the nodes closest to the target are
// when the target's own bucket is empty. A small network never fills its
// tables that way. The node notes each such query (the library's OnQuery
// hook) and, as the reply goes out through its socket, replaces the
// nodes in it with the K closest to the target it knows.

// maxPending bounds the queries noted and not yet answered.
const maxPending = 1024

// pendingKey names a query: who sent it and its transaction id.
type pendingKey struct {
	addr string
	t    string
}

// pendingQuery is what the reply to a noted query needs.
type pendingQuery struct {
	target   [20]byte
	want4    bool // wants nodes (IPv4)
	want6    bool // wants nodes6 (IPv6)
	from     net.Addr
	getPeers bool // nodes only if no values
	at       time.Time
}

// pendingTTL is how long a noted query waits for its reply (which the
// send limiter may drop).
const pendingTTL = 10 * time.Second

// responder fixes the nodes of the replies of one Node.
type responder struct {
	closest func(target [20]byte, not net.Addr, v6 bool) []krpc.NodeInfo
	ready   atomic.Bool // closest may be called

	mu      sync.Mutex
	pending map[pendingKey]pendingQuery // guarded by mu
}

func newResponder() *responder {
	return &responder{pending: make(map[pendingKey]pendingQuery)}
}

// onQuery notes the queries whose replies carry nodes. It is the
// library's OnQuery hook, called with the server's lock held: it must
// not call the server.
func (r *responder) onQuery(m *krpc.Msg, from net.Addr) bool {
	if m.A == nil {
		return true
	}
	var target [20]byte
	switch m.Q {
	case "find_node", "get":
		target = m.A.Target
	case "get_peers":
		target = m.A.InfoHash
	default:
		return true
	}
	ip := addrIP(from)
	want4, want6 := ip.To4() != nil, ip.To4() == nil
	if len(m.A.Want) > 0 {
		want4 = slices.Contains(m.A.Want, krpc.WantNodes)
		want6 = slices.Contains(m.A.Want, krpc.WantNodes6)
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) >= maxPending {
		for k, q := range r.pending {
			if now.Sub(q.at) > pendingTTL {
				delete(r.pending, k)
			}
		}
		if len(r.pending) >= maxPending {
			return true // under a flood the library's answer goes out as is
		}
	}
	r.pending[pendingKey{from.String(), m.T}] = pendingQuery{target: target, want4: want4, want6: want6,
		from: from, getPeers: m.Q == "get_peers", at: now}
	return true
}

// fix returns the packet p going to addr with the nodes of its reply
// replaced, or p if it is not the reply to a noted query.
func (r *responder) fix(p []byte, addr net.Addr) []byte {
	if len(p) == 0 || p[0] != 'd' || !r.ready.Load() {
		return p
	}
	r.mu.Lock()
	empty := len(r.pending) == 0
	r.mu.Unlock()
	if empty {
		return p
	}
	var m krpc.Msg
	if err := bencode.Unmarshal(p, &m); err != nil || m.Y == "q" {
		return p
	}
	k := pendingKey{addr.String(), m.T}
	r.mu.Lock()
	q, ok := r.pending[k]
	delete(r.pending, k)
	r.mu.Unlock()
	if !ok || m.Y != "r" || m.R == nil || (q.getPeers && len(m.R.Values) > 0) {
		return p
	}
	m.R.Nodes, m.R.Nodes6 = nil, nil
	if q.want4 {
		m.R.Nodes = r.closest(q.target, q.from, false)
	}
	if q.want6 {
		m.R.Nodes6 = r.closest(q.target, q.from, true)
	}
	b, err := bencode.Marshal(m)
	if err != nil {
		return p
	}
	return b
}

// addrIP is the IP of a UDP address.
func addrIP(a net.Addr) net.IP {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.IP
	}
	return nil
}

// closestNodes returns the K nodes of the table (not bad) closest to
// target, IPv4 ones or, if v6, IPv6 ones (BEP 32: the library gives IPv4
// nodes again, mapped), leaving out the asker.
func (n *Node) closestNodes(target [20]byte, not net.Addr, v6 bool) []krpc.NodeInfo {
	var skip string
	if not != nil {
		if ua, ok := not.(*net.UDPAddr); ok {
			skip = unmap(ua.AddrPort()).String()
		}
	}
	t := int160.FromByteArray(target)
	var nis []krpc.NodeInfo
	for _, p := range n.Peers() {
		if p.Addr.String() == skip || p.Addr.Addr().Is4() == v6 {
			continue
		}
		nis = append(nis, krpc.NodeInfo{ID: p.ID, Addr: krpc.NodeAddr{IP: p.Addr.Addr().AsSlice(), Port: int(p.Addr.Port())}})
	}
	slices.SortFunc(nis, func(a, b krpc.NodeInfo) int {
		return int160.Distance(int160.FromByteArray(a.ID), t).Cmp(int160.Distance(int160.FromByteArray(b.ID), t))
	})
	if len(nis) > K {
		nis = nis[:K]
	}
	return nis
}

// fixingConn is the node's socket: replies go out with fixed nodes.
type fixingConn struct {
	net.PacketConn
	r *responder
}

func (c fixingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	q := c.r.fix(p, addr)
	n, err := c.PacketConn.WriteTo(q, addr)
	if err == nil && n == len(q) {
		n = len(p) // the library checks for short writes
	}
	return n, err
}
