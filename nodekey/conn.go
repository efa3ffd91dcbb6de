package nodekey

import (
	"crypto/tls"
	"net"
	"sync"
)

// batchSize is the most a Conn gathers into one write to the socket:
// four whole TLS records (16 KiB of data and at most 22 bytes of
// framing each). Over loopback, a 256 KiB TLS write went at 1,050–1,160
// MB/s sent as crypto/tls sends it, a syscall a record, and at
// 1,120–1,820 MB/s gathered (best at three to seven records a write;
// a quarter MiB a write was slower again, the receiver waiting longer
// for each); BENCHMARKS.md "TLS records gathered".
const batchSize = 4 * (16<<10 + 256)

// A Conn is a TLS connection that sends the records of one Write (or of
// one WriteVector: a 9P message's header and its data) in writes of up
// to batchSize bytes, where crypto/tls writes each record to the socket
// on its own. Everything else is the *tls.Conn's.
type Conn struct {
	*tls.Conn
	b   *batcher
	wmu sync.Mutex // one Write or WriteVector at a time: a vector's buffers stay together, and they share b's batch
}

// Client returns the client side of a TLS connection over c, as
// tls.Client does, its writes gathered.
func Client(c net.Conn, cfg *tls.Config) *Conn {
	b := &batcher{Conn: c}
	return &Conn{Conn: tls.Client(b, cfg), b: b}
}

// Server returns the server side of a TLS connection over c, as
// tls.Server does, its writes gathered.
func Server(c net.Conn, cfg *tls.Config) *Conn {
	b := &batcher{Conn: c}
	return &Conn{Conn: tls.Server(b, cfg), b: b}
}

// NewListener returns a listener of l's connections as Server
// connections, as tls.NewListener does.
func NewListener(l net.Listener, cfg *tls.Config) net.Listener {
	return &listener{Listener: l, cfg: cfg}
}

type listener struct {
	net.Listener
	cfg *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.cfg), nil
}

// Write writes p, as tls.Conn.Write does, its records gathered.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) > 16<<10 {
		n, err := c.WriteVector([][]byte{p})
		return int(n), err
	}
	c.wmu.Lock() // one record, nothing to gather; but not inside a WriteVector
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

// WriteVector writes bufs in order, as one Write of them joined would,
// without joining them; styx sends a Twrite's header and data so.
func (c *Conn) WriteVector(bufs [][]byte) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.b.start()
	var n int64
	var err error
	for _, p := range bufs {
		var k int
		k, err = c.Conn.Write(p)
		n += int64(k)
		if err != nil {
			break
		}
	}
	if ferr := c.b.flush(); err == nil && ferr != nil {
		n, err = 0, ferr
	}
	return n, err
}

// TLS returns the TLS connection c is or wraps.
func TLS(c net.Conn) (*tls.Conn, bool) {
	switch t := c.(type) {
	case *Conn:
		return t.Conn, true
	case *tls.Conn:
		return t, true
	}
	return nil, false
}

// batchPool holds batch buffers: a connection holds one only while it
// writes, so many idle connections cost none.
var batchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, batchSize)
	return &b
}}

// A batcher is the socket under a Conn's TLS: between start and flush
// it gathers what TLS writes into one buffer, sent whenever the next
// record would not fit and at the flush; otherwise (the handshake,
// alerts, a write of one record) it writes through.
type batcher struct {
	net.Conn
	mu  sync.Mutex // guards buf: TLS may write from a Read (a key update's answer)
	buf *[]byte    // nil: write through
	err error      // a gathered write failed; flush reports it
}

func (b *batcher) start() {
	b.mu.Lock()
	b.buf = batchPool.Get().(*[]byte)
	b.mu.Unlock()
}

func (b *batcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return b.Conn.Write(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(*b.buf)+len(p) > cap(*b.buf) {
		if err := b.sendLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(*b.buf) {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

func (b *batcher) sendLocked() error {
	if len(*b.buf) > 0 {
		_, b.err = b.Conn.Write(*b.buf)
		*b.buf = (*b.buf)[:0]
	}
	return b.err
}

// flush sends what was gathered, and writes through from here on.
func (b *batcher) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.sendLocked()
	batchPool.Put(b.buf)
	b.buf, b.err = nil, nil
	return err
}

// NetConn returns the socket, as tls.Conn's NetConn does.
func (b *batcher) NetConn() net.Conn { return b.Conn }
