// Package dht finds and publishes through the BitTorrent mainline DHT
// (BEP 5, BEP 44) with github.com/anacrolix/dht/v2: one DHT server per
// Node on its own UDP socket.
//
// Two ways to publish:
//
//   - by key, as Pkarr does: Publish stores a BEP 44 mutable item signed
//     with the node's ed25519 key (seq is the time in microseconds) and
//     Lookup fetches and verifies the item of any key;
//   - by path, the Cheshire design: Announce does announce_peer on the
//     infohash sha1(path + PathSalt) and Find does get_peers on it.
//
// A Node never contacts the public DHT routers unless Options.PublicRouters
// asks it to: without bootstrap addresses it only answers queries.
//
// The library (v2.23.0) is corrected where it misbehaves: the peer store
// is keyed by address and port (the library's keys by IP and decodes
// garbage), the BEP 44 store is bounded, each server has its own send
// limiter (the library shares one process-wide), IPv4 addresses that come
// back as IPv4-in-IPv6 are unmapped so that a node is seen once, puts and
// announces are counted one by one (the library's getput.Put reports
// success when every node refused), the nodes in replies are rewritten to
// the closest ones (responder.go), the bootstrap never fails (the
// library leaks a goroutine when it does), and Close closes the socket
// before it returns.
package dht

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/atomicfile"
	"cheshire/plan9"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	alog "github.com/anacrolix/log"
	"golang.org/x/time/rate"
)

// DefaultListen is the UDP address a Node listens on when Options.Listen
// is empty. It is loopback: to take part in the public DHT, listen on a
// public address and set PublicRouters (or give Bootstrap nodes).
const DefaultListen = "127.0.0.1:6881"

// Limits and periods.
const (
	// SendRate is how many packets a second a Node's server sends, at
	// most (SendBurst at once). Replies over the limit are dropped. The
	// burst lets a node resolve a namespace's worth of keys at once (a
	// lookup is about a dozen queries); the rate is libtorrent's default
	// upload limit for its DHT, about 8 kB/s.
	SendRate  = 100
	SendBurst = 500
	// RepublishInterval is how often the last published record is put
	// again, well inside the two hours nodes keep BEP 44 items.
	RepublishInterval = time.Hour
	// ReannounceInterval is how often announced paths are announced
	// again; peers expire after PeerTTL.
	ReannounceInterval = 30 * time.Minute
	// PeerTTL is how long this node keeps a peer announced to it.
	PeerTTL = time.Hour
	// ItemTTL is how long this node keeps a BEP 44 item put to it.
	ItemTTL = 2 * time.Hour
	// K is how many of the closest nodes a put or an announce goes to.
	K = 8
	// alpha is how many queries a traversal keeps in flight.
	alpha = 5
	// resolveTimeout bounds the DNS lookup of bootstrap host names.
	resolveTimeout = 5 * time.Second
	// closeTimeout bounds how long Close waits for the node's goroutines.
	closeTimeout = 15 * time.Second
)

// Options configure a Node.
type Options struct {
	// Listen is the UDP address: udp!HOST!PORT or HOST:PORT
	// (DefaultListen if empty; port 0 picks a free port).
	Listen string
	// Bootstrap are the HOST:PORT addresses of nodes to join the DHT
	// through when the routing table is empty.
	Bootstrap []string
	// PublicRouters adds the library's public routers
	// (router.bittorrent.com and others) to Bootstrap. Off by default:
	// a Node contacts only the addresses it is given.
	PublicRouters bool
	// Key is the node's ed25519 key, which signs what Publish stores.
	// If nil, a key is made for the life of the Node.
	Key ed25519.PrivateKey
	// Log receives the node's and the library's messages (none if nil).
	Log *slog.Logger
	// Now is the clock of sequence numbers and ages (time.Now if nil).
	Now func() time.Time
	// Memory keeps what the node learns, for the nodes that follow it
	// (a new one if nil).
	Memory *Memory
	// QuietFile, if set, keeps the nodes left out of traversals for not
	// answering (see QuietFirst) across restarts: read by New, written
	// (atomically) by Close and every QuietSaveInterval while they
	// change. Without it a restarted node waits once more for each
	// dead node that other nodes' tables still hand out.
	QuietFile string

	// periods of the maintenance loop (RepublishInterval and
	// ReannounceInterval if zero); tests shorten them.
	republishEvery, reannounceEvery time.Duration
	// wrapConn, if set, wraps the socket; tests watch what is sent.
	wrapConn func(net.PacketConn) net.PacketConn
	// the first and longest waits of the advertising retries
	// (advertMinBackoff and advertMaxBackoff if zero); tests shorten them.
	advertBackoff, advertMaxBackoff time.Duration
	// quietFirst and quietMax replace QuietFirst and QuietTTL if not
	// zero: tests of small swarms on a loaded machine shorten them.
	quietFirst, quietMax time.Duration
}

// A Node is one DHT server on its own UDP socket, with the records it
// published and fetched.
type Node struct {
	key   ed25519.PrivateKey
	pub   ed25519.PublicKey
	log   *slog.Logger
	now   func() time.Time
	conn  net.PacketConn
	srv   *adht.Server
	items *itemStore
	peers *peerStore
	quiet *quietNodes

	quietFile  string
	saveMu     sync.Mutex // held while the quiet file is written
	quietSaved string     // guarded by saveMu: what the file holds
	mem        *Memory
	boot       []string // HOST:PORT, public routers included

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	cerr   error

	republishEvery  time.Duration
	reannounceEvery time.Duration
	// the advertising loop's retries: the first after advertMin, then
	// twice as long each time, up to advertMax
	advertMin, advertMax time.Duration
}

// New opens the UDP socket of opts.Listen and starts a DHT server on it.
// The server fills its routing table from opts.Bootstrap in the
// background; Bootstrap waits for that.
func New(opts Options) (*Node, error) {
	mem := opts.Memory
	if mem == nil {
		mem = NewMemory()
	}
	addr, err := ParseListen(opts.Listen)
	if err != nil {
		return nil, err
	}
	for _, b := range opts.Bootstrap {
		if err := CheckHostPort(b); err != nil {
			return nil, fmt.Errorf("dht: bootstrap: %w", err)
		}
	}
	key := opts.Key
	if key == nil {
		_, key, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("dht: %w", err)
		}
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("dht: key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	lg := opts.Log
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dht: listen: %w", err)
	}
	resp := newResponder()
	conn = fixingConn{PacketConn: conn, r: resp}
	if opts.wrapConn != nil {
		conn = opts.wrapConn(conn)
	}
	n := &Node{
		key:             key,
		pub:             key.Public().(ed25519.PublicKey),
		log:             lg,
		now:             now,
		conn:            conn,
		items:           newItemStore(4096),
		peers:           newPeerStore(now, PeerTTL),
		quiet:           newQuietNodes(opts.quietFirst, opts.quietMax),
		quietFile:       opts.QuietFile,
		mem:             mem,
		boot:            slices.Clone(opts.Bootstrap),
		republishEvery:  RepublishInterval,
		advertMin:       advertMinBackoff,
		advertMax:       advertMaxBackoff,
		reannounceEvery: ReannounceInterval,
	}
	if opts.republishEvery > 0 {
		n.republishEvery = opts.republishEvery
	}
	if opts.reannounceEvery > 0 {
		n.reannounceEvery = opts.reannounceEvery
	}
	if opts.advertBackoff > 0 {
		n.advertMin = opts.advertBackoff
	}
	if opts.advertMaxBackoff > 0 {
		n.advertMax = opts.advertMaxBackoff
	}
	if opts.PublicRouters {
		n.boot = append(n.boot, adht.DefaultGlobalBootstrapHostPorts...)
	}
	if n.quietFile != "" {
		if data, err := os.ReadFile(n.quietFile); err == nil {
			if k := n.quiet.decode(data, now()); k > 0 {
				lg.Info("dht: nodes still quiet from before", "n", k)
			}
		}
	}
	cfg := adht.NewDefaultServerConfig()
	cfg.Conn = conn
	cfg.NodeId = nodeID(n.pub)
	cfg.NoSecurity = true
	cfg.StartingNodes = n.startingNodes
	cfg.OnQuery = func(m *krpc.Msg, from net.Addr) bool {
		if u, ok := from.(*net.UDPAddr); ok {
			n.quiet.heard(unmap(u.AddrPort())) // it is back, if it was quiet
		}
		return resp.onQuery(m, from)
	}
	resp.closest = n.closestNodes
	n.ctx, n.cancel = context.WithCancel(context.Background())
	cfg.PeerStore = n.peers
	cfg.Store = n.items
	cfg.Exp = ItemTTL
	cfg.SendLimiter = rate.NewLimiter(SendRate, SendBurst)
	cfg.Logger = libLogger(lg)
	srv, err := adht.NewServer(cfg)
	if err != nil {
		n.cancel()
		conn.Close()
		return nil, fmt.Errorf("dht: %w", err)
	}
	n.srv = srv
	resp.ready.Store(true) // closestNodes may use n.srv
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		srv.TableMaintainer()
	}()
	go n.maintain()
	lg.Info("dht: listening", "addr", n.Addr(), "id", fmt.Sprintf("%x", cfg.NodeId[:]), "bootstrap", strings.Join(n.boot, " "))
	return n, nil
}

// QuietSaveInterval is how often the quiet nodes are written to
// Options.QuietFile while they change.
const QuietSaveInterval = 10 * time.Second

// saveQuiet writes the quiet nodes to the quiet file, if there is one
// and they changed since the last time.
func (n *Node) saveQuiet() {
	if n.quietFile == "" {
		return
	}
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	data := n.quiet.encode(n.now())
	if string(data) == n.quietSaved {
		return
	}
	if err := os.MkdirAll(filepath.Dir(n.quietFile), 0o700); err == nil {
		err = atomicfile.Write(n.quietFile, data, 0o600)
		if err != nil {
			n.log.Warn("dht: saving quiet nodes", "err", err)
			return
		}
	}
	n.quietSaved = string(data)
}

// nodeID derives the node's DHT id from its key, so that it keeps its
// place in the DHT across restarts.
func nodeID(pub ed25519.PublicKey) krpc.ID {
	return sha1.Sum(append([]byte("cheshire-dht-node-id-v1"), pub...))
}

// ParseListen turns udp!HOST!PORT or HOST:PORT into HOST:PORT.
func ParseListen(s string) (string, error) {
	if s == "" {
		return DefaultListen, nil
	}
	if strings.Contains(s, "!") {
		d, err := plan9.ParseDial(s)
		if err != nil {
			return "", fmt.Errorf("dht: listen: %w", err)
		}
		network, addr := d.NetAddr()
		if network != "udp" {
			return "", fmt.Errorf("dht: listen %q: want a udp address", s)
		}
		return addr, nil
	}
	if err := CheckHostPort(s); err != nil {
		return "", fmt.Errorf("dht: listen: %w", err)
	}
	return s, nil
}

// CheckHostPort checks that s is HOST:PORT with a numeric port.
func CheckHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: bad port %q", s, port)
	}
	return nil
}

// startingNodes resolves the bootstrap addresses: the library calls it
// when the routing table is empty. It never fails: with nothing to give
// it gives the node's own address, which traversals skip, because the
// library's BootstrapContext leaks a goroutine each time this fails, and
// its TableMaintainer bootstraps every minute until one succeeds.
func (n *Node) startingNodes() ([]adht.Addr, error) {
	self := []adht.Addr{adht.NewAddr(net.UDPAddrFromAddrPort(n.Addr()))}
	if len(n.boot) == 0 {
		return self, nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, resolveTimeout)
	defer cancel()
	var out []adht.Addr
	seen := make(map[netip.AddrPort]bool)
	for _, hp := range n.boot {
		host, ps, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		port, err := strconv.ParseUint(ps, 10, 16)
		if err != nil {
			continue
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
			n.log.Debug("dht: bootstrap", "addr", hp, "err", err)
			continue
		}
		for _, ip := range ips {
			ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
			if seen[ap] {
				continue
			}
			seen[ap] = true
			out = append(out, adht.NewAddr(net.UDPAddrFromAddrPort(ap)))
		}
	}
	if len(out) == 0 {
		n.log.Warn("dht: no bootstrap node resolved", "bootstrap", strings.Join(n.boot, " "))
		return self, nil
	}
	return out, nil
}

// Addr returns the address of the node's UDP socket.
func (n *Node) Addr() netip.AddrPort {
	if ua, ok := n.conn.LocalAddr().(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(n.conn.LocalAddr().String())
	return ap
}

// PublicKey returns the node's ed25519 public key: the key its records
// are published under.
func (n *Node) PublicKey() ed25519.PublicKey { return n.pub }

// ID returns the node's DHT id (20 bytes).
func (n *Node) ID() [20]byte { return n.srv.ID() }

// Bootstrap fills the routing table: it looks up the node's own id
// (find_node), starting from the table or, if empty, from the bootstrap
// nodes. Every node that answers joins the table.
func (n *Node) Bootstrap(ctx context.Context) error {
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	id := n.srv.ID()
	_, err := n.traverse(ctx, id, func(ctx context.Context, a adht.Addr) adht.QueryResult {
		return n.srv.Query(ctx, a, "find_node", adht.QueryInput{MsgArgs: krpc.MsgArgs{
			Target: id, Want: []krpc.Want{krpc.WantNodes, krpc.WantNodes6}}})
	}, nil)
	if err != nil {
		return fmt.Errorf("dht: bootstrap: %w", err)
	}
	return nil
}

// opContext is ctx, also cancelled when the node closes.
func (n *Node) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(n.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// A Peer is a node of the routing table.
type Peer struct {
	ID   [20]byte
	Addr netip.AddrPort
}

// Peers returns the nodes of the routing table that are not bad, each
// once (an IPv4 node is not repeated as IPv4-in-IPv6), sorted by address.
func (n *Node) Peers() []Peer {
	seen := make(map[Peer]bool)
	var out []Peer
	for _, ni := range n.srv.Nodes() {
		ap, ok := addrPort(ni.Addr)
		if !ok {
			continue
		}
		p := Peer{ID: ni.ID, Addr: ap}
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return a.Addr.Compare(b.Addr) })
	return out
}

// addrPort converts a library address, unmapping IPv4-in-IPv6.
func addrPort(na krpc.NodeAddr) (netip.AddrPort, bool) {
	ip, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(na.Port)), true
}

// Stats are a node's counts.
type Stats struct {
	Nodes     int   // nodes in the routing table
	GoodNodes int   // of which good (answered in the last 15 minutes)
	Published int64 // records published (Publish and republish)
	Fetched   int64 // records fetched by Lookup
	Forged    int64 // replies refused for a bad signature or key
	Stale     int64 // lookups refused for a lower seq than seen before
	Malformed int64 // replies refused as malformed (value not a string, too big)
	Announced int64 // paths announced
	Found     int64 // Find calls that found peers
	Quiet     int   // nodes left out of lookups for now, having timed out
}

// Stats returns the node's counts.
func (n *Node) Stats() Stats {
	ss := n.srv.Stats()
	st := n.mem.stats()
	st.Nodes, st.GoodNodes = ss.Nodes, ss.GoodNodes
	st.Quiet = n.quiet.len(n.now())
	return st
}

// Now returns the time on the node's clock (Options.Now).
func (n *Node) Now() time.Time { return n.now() }

// Close stops the server, closes the socket and waits (15 s at most) for
// the node's goroutines. Operations in flight fail.
func (n *Node) Close() error {
	n.closed.Do(func() {
		n.saveQuiet()
		n.cancel()
		n.srv.Close()
		// The library closes the socket in a goroutine of its own: close
		// it now, so that the port is free when Close returns.
		n.conn.Close()
		done := make(chan struct{})
		go func() { n.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeTimeout):
			n.cerr = errors.New("dht: close: goroutines still running")
		}
		n.log.Info("dht: closed", "addr", n.Addr())
	})
	return n.cerr
}

// libLogger makes an anacrolix logger that writes to lg.
func libLogger(lg *slog.Logger) alog.Logger {
	var l alog.Logger
	l.SetHandlers(slogHandler{lg})
	min := alog.Warning
	switch {
	case lg.Enabled(context.Background(), slog.LevelDebug):
		min = alog.Debug
	case lg.Enabled(context.Background(), slog.LevelInfo):
		min = alog.Info
	}
	return l.WithFilterLevel(min)
}

type slogHandler struct{ l *slog.Logger }

func (h slogHandler) Handle(r alog.Record) {
	lvl := slog.LevelDebug
	switch {
	case !r.Level.LessThan(alog.Error):
		lvl = slog.LevelError
	case !r.Level.LessThan(alog.Warning):
		lvl = slog.LevelWarn
	case !r.Level.LessThan(alog.Info):
		lvl = slog.LevelInfo
	}
	h.l.Log(context.Background(), lvl, "dht: "+r.Msg.Text())
}
