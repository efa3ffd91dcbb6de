// Package remote imports the namespaces of other cheshire nodes, found by
// key alone: it resolves a key to addresses (from the node's DHT record),
// dials 9P over mutual TLS pinned to the key, and presents what the node
// exports as styx.Files to mount.
//
// There is one connection per remote key, shared by every import of it.
// While the remote node is down, operations fail at once with "remote
// node unreachable" instead of hanging, and the connection is remade in
// the background: the last address that worked is tried first, then the
// key is resolved again, so a node that comes back on another address is
// found. Files opened on a lost connection keep failing with an error
// saying the connection was lost; walk to them again to reach the node
// anew. A connection that stops answering is noticed by a heartbeat.
package remote

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/styx"
)

// Defaults of Options.
const (
	DefaultAttemptTimeout   = 5 * time.Second
	DefaultHeartbeat        = 2 * time.Second
	DefaultHeartbeatTimeout = 3 * time.Second
	DefaultMinBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff       = 2 * time.Second
)

// clunkTimeout bounds the Tclunk sent when a File is released.
const clunkTimeout = 5 * time.Second

// Options configure an Importer.
type Options struct {
	// Resolve returns the dial strings (tls!HOST!PORT) at which the node
	// holding key may be reached now, best first.
	Resolve func(ctx context.Context, key ed25519.PublicKey) ([]string, error)
	// Dial connects to addr and makes sure that the other end holds key.
	Dial func(ctx context.Context, addr string, key ed25519.PublicKey) (net.Conn, error)
	// Uname is the user name sent in attaches; the remote node goes by
	// the key the connection proves, not by it.
	Uname string
	// Log receives connection events (none if nil).
	Log *slog.Logger
	// AttemptTimeout bounds one attempt to connect: resolving and
	// dialing (DefaultAttemptTimeout if zero).
	AttemptTimeout time.Duration
	// Heartbeat is how often a connection is checked; a check not
	// answered within HeartbeatTimeout drops it (defaults if zero).
	Heartbeat, HeartbeatTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts to
	// reconnect (defaults if zero).
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock of status times (time.Now if nil).
	Now func() time.Time
}

// An Importer holds the connections to remote nodes.
type Importer struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	peers  map[string]*peer // guarded by mu: by key (z-base-32)
	closed bool             // guarded by mu
}

// New returns an Importer; it connects to nothing until Import.
func New(opts Options) *Importer {
	if opts.AttemptTimeout == 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.HeartbeatTimeout == 0 {
		opts.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Importer{opts: opts, log: log, ctx: ctx, cancel: cancel, peers: make(map[string]*peer)}
}

// ErrClosed is returned by Import after Close.
var ErrClosed = errors.New("remote: importer closed")

// Import returns the root of the tree aname (a path; "" or "/" for the
// whole view) of the node holding key, to be mounted. With wait, Import
// makes sure the node can be reached first and returns its error if it
// cannot; without, it returns at once and the first operation waits for
// the first attempt to connect (a namespace being restored at start
// should not wait for every node it imports). The root holds the
// connection to the node open until it is clunked.
func (im *Importer) Import(ctx context.Context, key ed25519.PublicKey, aname string, wait bool) (styx.File, error) {
	return im.ImportAt(ctx, key, "", aname, wait)
}

// ImportAt is Import with addr (a tls!HOST!PORT where the node was
// just found, or "") tried first when a connection to key is made; a
// key already connected keeps its connection.
func (im *Importer) ImportAt(ctx context.Context, key ed25519.PublicKey, addr, aname string, wait bool) (styx.File, error) {
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("remote: key of %d bytes, want %d", len(key), ed25519.PublicKeySize)
	}
	p, err := im.peer(key, addr)
	if err != nil {
		return nil, err
	}
	r := &root{p: p, aname: aname, qid: styx.Qid{Type: styx.QTDIR, Path: qidPath(key, aname)}}
	if wait {
		f, err := p.attached(ctx, aname)
		if err != nil {
			p.release()
			return nil, err
		}
		r.qid = f.Qid()
	}
	return r, nil
}

// peer returns the peer of key, made and started on first use (trying
// addr first, if not ""), with a reference taken.
func (im *Importer) peer(key ed25519.PublicKey, addr string) (*peer, error) {
	name := nodekey.Encode(key)
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.closed {
		return nil, ErrClosed
	}
	p := im.peers[name]
	if p == nil {
		ctx, cancel := context.WithCancel(im.ctx)
		p = &peer{im: im, key: key, name: name, ctx: ctx, cancel: cancel, state: stateConnecting,
			since: im.opts.Now(), first: make(chan struct{}), roots: make(map[string]*styx.Fid), addr: addr}
		im.peers[name] = p
		im.wg.Add(1)
		go p.run()
	}
	p.refs++
	return p, nil
}

// drop forgets p once its last import is gone.
func (im *Importer) drop(p *peer) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.peers[p.name] == p {
		delete(im.peers, p.name)
	}
}

// Close drops every connection and stops reconnecting; files of imports
// fail from then on.
func (im *Importer) Close() error {
	im.mu.Lock()
	im.closed = true
	im.mu.Unlock()
	im.cancel()
	im.wg.Wait()
	return nil
}

// Status is the state of the connection to one remote node.
type Status struct {
	Key     string    // z-base-32
	State   string    // connecting, up or down
	Addr    string    // the address connected to, or last connected to
	Since   time.Time // when State began
	Err     string    // why the last attempt failed, or the connection was lost
	Imports int       // imports using the connection
}

// Status returns the state of each connection, by key.
func (im *Importer) Status() []Status {
	im.mu.Lock()
	peers := make([]*peer, 0, len(im.peers))
	for _, p := range im.peers {
		peers = append(peers, p)
	}
	im.mu.Unlock()
	out := make([]Status, 0, len(peers))
	for _, p := range peers {
		out = append(out, p.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// StatusOf returns the state of the connection to key, if there is one.
func (im *Importer) StatusOf(key ed25519.PublicKey) (Status, bool) {
	im.mu.Lock()
	p := im.peers[nodekey.Encode(key)]
	im.mu.Unlock()
	if p == nil {
		return Status{}, false
	}
	return p.status(), true
}

// unreachable is the error of an operation on a node that cannot be
// reached: "remote node unreachable: abcdefgh: why".
func unreachable(name string, why error) error {
	return fmt.Errorf("%w: %s: %v", plan9.ErrUnreachable, short(name), why)
}

// short is a key cut to its first 8 characters, for error strings that
// must fit plan9.ErrMax.
func short(name string) string {
	if len(name) > 8 {
		return name[:8]
	}
	return name
}
