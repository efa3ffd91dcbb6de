package raftgroup

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/connlimit"
	"cheshire/nodekey"

	"github.com/hashicorp/raft"
)

// Raft's transport runs on a TLS listener of its own, with the node's
// key: a connection is mutual TLS 1.3 as between nodes' 9P (nodekey),
// the dialler pins the key of the server it means (a ServerAddress is
// KEY@HOST:PORT), and the listener lets in only keys of the group's
// latest configuration (any key while the node belongs to no group,
// so that a leader can add it). After the handshake the dialler's first
// byte says what follows: raft's own RPC type (0–4), or fwdByte for a
// request forwarded to the leader (forward.go).

const (
	fwdByte          = 'F'
	handshakeTimeout = 10 * time.Second
	// maxConns bounds the connections the listener holds, and
	// maxPerHost those of one remote IP (connlimit): at maxConns the
	// oldest connection still handshaking is closed to make room, so a
	// flood of idle connections cannot lock members out; admitted ones
	// are never evicted. Every connection held may be handshaking.
	maxConns   = 128
	maxPerHost = 32
)

// streamLayer is raft's StreamLayer over TLS by key.
type streamLayer struct {
	inner   net.Listener // plain TCP
	id      *nodekey.Identity
	srv     *tls.Config
	admit   func(key string) bool // is key let in
	forward func(net.Conn)        // serves one forwarded request stream
	conns   chan net.Conn         // admitted raft connections
	done    chan struct{}
	closing sync.Once
	wg      sync.WaitGroup
	refused atomic.Int64 // connections refused: bad handshake, unknown key, bad first byte
	lim     *connlimit.Limits

	mu     sync.Mutex
	open   map[net.Conn]bool // guarded by mu: connections being admitted or forwarding, closed by Close
	closed bool              // guarded by mu
}

// track adds c to the connections Close closes; false if closed already.
func (s *streamLayer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.open[c] = true
	return true
}

func (s *streamLayer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

func newStreamLayer(l net.Listener, id *nodekey.Identity, admit func(string) bool) (*streamLayer, error) {
	cfg, err := id.ServerTLS()
	if err != nil {
		return nil, err
	}
	lim := &connlimit.Limits{Total: maxConns, PerHost: maxPerHost, Name: "raft"}
	s := &streamLayer{inner: connlimit.Listener(l, lim), id: id, srv: cfg, admit: admit, conns: make(chan net.Conn),
		done: make(chan struct{}), lim: lim, open: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.admitConn(c)
		}()
	}
}

// admitConn handshakes c, checks the key it proved and its first byte,
// and hands it to raft or to the forwarder. Anything else is refused
// and counted; garbage never reaches raft's decoder.
func (s *streamLayer) admitConn(c net.Conn) {
	if !s.track(c) {
		c.Close()
		return
	}
	defer s.untrack(c) // raft's connections are then raft's to close
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(c, s.srv)
	if err := tc.Handshake(); err != nil {
		s.refused.Add(1)
		c.Close()
		return
	}
	k, ok := nodekey.Peer(tc)
	if !ok || !s.admit(nodekey.Encode(k)) {
		s.refused.Add(1)
		c.Close()
		return
	}
	br := bufio.NewReader(tc)
	b, err := br.Peek(1)
	if err != nil || (b[0] > 4 && b[0] != fwdByte) {
		s.refused.Add(1)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	connlimit.MarkEstablished(c)
	pc := &peekedConn{Conn: tc, r: br}
	if b[0] == fwdByte {
		br.ReadByte()
		s.forward(pc)
		return
	}
	select {
	case s.conns <- pc:
	case <-s.done:
		c.Close()
	}
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// Accept implements net.Listener for raft.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (s *streamLayer) Close() error {
	s.closing.Do(func() {
		close(s.done)
		s.inner.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.open {
			c.Close() // a forwarding peer's idle connection would hold wait forever
		}
		s.mu.Unlock()
	})
	return nil
}

// wait waits for the accept loop and the connections being admitted.
func (s *streamLayer) wait() { s.wg.Wait() }

// Addr implements net.Listener: KEY@HOST:PORT, which raft sends as the
// leader's address in its RPCs.
func (s *streamLayer) Addr() net.Addr { return keyAddr{s.id.ID() + "@" + s.inner.Addr().String()} }

// keyAddr is a raft address, KEY@HOST:PORT.
type keyAddr struct{ s string }

func (a keyAddr) Network() string { return "tcp" }
func (a keyAddr) String() string  { return a.s }

// Dial implements raft.StreamLayer: address is KEY@HOST:PORT.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, string(address))
}

func (s *streamLayer) dial(ctx context.Context, address string) (net.Conn, error) {
	key, hostport, err := splitAddress(address)
	if err != nil {
		return nil, err
	}
	cfg, err := s.id.ClientTLS(key)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", hostport, err)
	}
	return tc, nil
}

// splitAddress parses KEY@HOST:PORT.
func splitAddress(a string) (ed25519.PublicKey, string, error) {
	k, hp, ok := strings.Cut(a, "@")
	if !ok {
		return nil, "", fmt.Errorf("bad raft address %q: want KEY@HOST:PORT", a)
	}
	key, err := nodekey.Decode(k)
	if err != nil {
		return nil, "", fmt.Errorf("bad raft address %q: %w", a, err)
	}
	if _, _, err := net.SplitHostPort(hp); err != nil {
		return nil, "", fmt.Errorf("bad raft address %q: %w", a, err)
	}
	return key, hp, nil
}
