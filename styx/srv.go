package styx

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cheshire/connlimit"
	"cheshire/plan9"

	"golang.org/x/sync/semaphore"
)

// Defaults of Server's limits.
const (
	DefaultMsize        = 1<<20 + IOHdrSz // iounit of exactly 1 MiB
	DefaultMaxInflight  = 256
	DefaultConnMemory   = 16 << 20
	DefaultFrameTimeout = 30 * time.Second
	// DefaultHandshakeTimeout bounds a connection's TLS handshake and
	// Tversion together.
	DefaultHandshakeTimeout = 10 * time.Second
	smallFrame              = 8 << 10
	maxFlushes              = 64
)

// A Server serves 9P2000 on connections. Its zero value is not usable:
// Attacher must be set. Limits left zero take the defaults above.
//
// Memory per connection is bounded by MaxInflight small frames (8 KiB each),
// plus ConnMemory for large frames (Twrite) and Rread buffers, plus the
// goroutines of MaxInflight requests and 64 flushes. When a bound is
// reached the server stops reading the connection (backpressure); it never
// queues without limit.
type Server struct {
	Attacher Attacher
	Auth     Authenticator // optional: without it Tauth gets "authentication not required"

	Msize        uint32        // largest msize offered
	MaxInflight  int           // requests in flight per connection
	ConnMemory   int64         // bytes of large frames and read buffers per connection
	FrameTimeout time.Duration // longest wait for the rest of a started frame

	// Limits bounds the network connections Serve accepts, per host
	// and in total (see package connlimit); nil takes its defaults. A
	// connection is established, and no longer evicted to make room,
	// once it has agreed a version. It must complete its TLS handshake,
	// if any, and Tversion within HandshakeTimeout.
	Limits           *connlimit.Limits
	HandshakeTimeout time.Duration

	Log   *slog.Logger
	Trace func(conn string, in bool, f *Fcall) // protocol trace, if set

	pool     bufPool
	requests atomic.Uint64 // requests decoded, all connections

	limOnce sync.Once
	lim     *connlimit.Limits

	mu    sync.Mutex
	conns map[*conn]struct{}
	lns   map[net.Listener]struct{}
	done  bool
}

// Requests is how many requests the server has decoded since it was
// made, on all its connections.
func (s *Server) Requests() uint64 { return s.requests.Load() }

func (s *Server) msize() uint32 {
	if s.Msize == 0 {
		return DefaultMsize
	}
	return max(s.Msize, MinMsize)
}

// limits is s.Limits, or limits of the defaults made once.
func (s *Server) limits() *connlimit.Limits {
	s.limOnce.Do(func() {
		s.lim = s.Limits
		if s.lim == nil {
			s.lim = new(connlimit.Limits)
		}
	})
	return s.lim
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Serve accepts connections on l until ctx is done or Close is called.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return net.ErrClosed
	}
	if s.lns == nil {
		s.lns = make(map[net.Listener]struct{})
	}
	s.lns[l] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.lns, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if temporary(err) {
				// As net/http does: back off 5ms, doubling to 1s,
				// and try again; running out of descriptors must
				// not end the listener.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("9p accept", "addr", l.Addr().String(), "err", err, "retry", delay)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return nil
				}
				continue
			}
			return fmt.Errorf("styx: accept on %s: %w", l.Addr(), err)
		}
		delay = 0
		t, ok := s.limits().Admit(nc)
		if !ok {
			nc.Close()
			continue
		}
		go s.serveConn(ctx, nc, t)
	}
}

// temporary reports whether an accept error is worth a retry: a
// timeout, a connection aborted before it was accepted, or too many
// open files (EMFILE, ENFILE).
func temporary(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close stops all listeners and ends every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.done = true
	for l := range s.lns {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.cancel(errors.New("server closed"))
		c.nc.Close()
	}
	return nil
}

// ConnInfo describes the connection a request arrived on.
type ConnInfo struct {
	Conn   net.Conn
	Remote string
}

type connInfoKey struct{}

// ConnInfoFrom returns the connection of a request's context, or nil.
func ConnInfoFrom(ctx context.Context) *ConnInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*ConnInfo)
	return ci
}

// conn is the state of one client connection.
//
// Lock order: wmu before mu.
type conn struct {
	srv    *Server
	nc     net.Conn
	name   string
	ctx    context.Context
	cancel context.CancelCauseFunc
	log    *slog.Logger
	ticket *connlimit.Ticket // its admission by Serve, or nil

	slots   chan struct{}       // one per request in flight
	flushes chan struct{}       // one per Tflush in flight
	mem     *semaphore.Weighted // large frames and read buffers
	memMax  int64
	wg      sync.WaitGroup // requests in flight

	wmu  sync.Mutex // serializes writes to nc
	wbuf []byte     // guarded by wmu: small replies are built here
	// pend, guarded by wmu, holds replies of requests run on the
	// reading goroutine while more requests wait in its buffer: they
	// go out in one write with the next reply, or when the buffer is
	// drained (a client that sends a clunk and a walk together gets
	// both answers in one write, not two).
	pend []byte

	mu    sync.Mutex
	msize uint32          // guarded by mu
	fids  map[uint32]*fid // guarded by mu
	tags  map[uint16]*req // guarded by mu
}

// ServeConn serves one connection until it fails, the client hangs up or
// ctx is done. It closes nc.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	s.serveConn(ctx, nc, nil)
}

// serveConn serves nc, admitted by t (nil if it was not counted).
func (s *Server) serveConn(ctx context.Context, nc net.Conn, t *connlimit.Ticket) {
	defer t.Release()
	name := nc.RemoteAddr().String()
	if name == "" || name == "@" {
		name = "unix"
	}
	sizeSendBuffer(nc, s.msize())
	ci := &ConnInfo{Conn: nc, Remote: name}
	cctx, cancel := context.WithCancelCause(context.WithValue(ctx, connInfoKey{}, ci))
	inflight := s.MaxInflight
	if inflight <= 0 {
		inflight = DefaultMaxInflight
	}
	mem := s.ConnMemory
	if mem <= 0 {
		mem = DefaultConnMemory
	}
	// Room for two buffers of the largest frame, so that a frame held
	// by the read loop never starves a read's reply buffer.
	mem = max(mem, 2*int64(s.pool.size(int(s.msize()))))
	c := &conn{
		srv: s, nc: nc, name: name, ctx: cctx, cancel: cancel, ticket: t,
		log:     s.logger().With("conn", name),
		slots:   make(chan struct{}, inflight),
		flushes: make(chan struct{}, maxFlushes),
		mem:     semaphore.NewWeighted(mem),
		memMax:  mem,
		msize:   s.msize(),
		fids:    make(map[uint32]*fid),
		tags:    make(map[uint16]*req),
	}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(cctx, func() { nc.Close() })
	err := c.readLoop()
	cancel(err)
	stop()
	nc.Close()
	c.wg.Wait()
	c.clunkAll()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
		c.log.Info("9p connection ended", "err", err)
	}
}

func (c *conn) getMsize() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msize
}

// readLoop reads frames and starts their handlers until the connection
// fails. Backpressure: it blocks on a free request slot and on memory for
// large frames, and does not read the socket meanwhile.
func (c *conn) readLoop() error {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	timeout := c.srv.FrameTimeout
	if timeout <= 0 {
		timeout = DefaultFrameTimeout
	}
	hs := c.srv.HandshakeTimeout
	if hs <= 0 {
		hs = DefaultHandshakeTimeout
	}
	// Until a version is negotiated the connection lives on one
	// deadline, which also bounds a TLS handshake (it happens in the
	// first Read), and its frames are small.
	versioned := false
	c.nc.SetReadDeadline(time.Now().Add(hs))
	var hdr [4]byte
	deadline := true
	for {
		if deadline && versioned {
			c.nc.SetReadDeadline(time.Time{})
			deadline = false
		}
		if !frameReady(br) {
			c.flushPending() // before waiting for the client
		}
		if _, err := br.ReadByte(); err != nil {
			if !versioned && errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("no Tversion within %v: %w", hs, err)
			}
			return err
		}
		br.UnreadByte()
		if br.Buffered() < 4 && !deadline {
			c.nc.SetReadDeadline(time.Now().Add(timeout))
			deadline = true
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("reading frame size: %w", err)
		}
		size := binary.LittleEndian.Uint32(hdr[:])
		msize := c.getMsize()
		if !versioned {
			msize = min(msize, smallFrame)
		}
		if size < 7 {
			return fmt.Errorf("bad frame: size %d below 7", size)
		}
		if size > msize {
			return fmt.Errorf("bad frame: size %d above msize %d", size, msize)
		}
		var held int64
		if size > smallFrame {
			held = int64(c.srv.pool.size(int(size))) // the buffer's whole capacity
			if !c.mem.TryAcquire(held) {
				c.flushPending() // held replies must not wait on the budget
				if err := c.mem.Acquire(c.ctx, held); err != nil {
					return err
				}
			}
			if deadline && versioned {
				// The wait for memory was the server's, not the
				// client's: the frame's time starts again.
				c.nc.SetReadDeadline(time.Now().Add(timeout))
			}
		}
		bp := c.srv.pool.get(int(size))
		buf := *bp
		copy(buf, hdr[:])
		if !deadline && br.Buffered() < int(size)-4 {
			c.nc.SetReadDeadline(time.Now().Add(timeout))
			deadline = true
		}
		if err := readFull(br, c.nc, buf[4:]); err != nil {
			c.srv.pool.put(bp)
			c.mem.Release(held)
			return fmt.Errorf("reading frame of %d bytes: %w", size, err)
		}
		r := &req{c: c, buf: bp, held: held}
		if err := r.fc.Unmarshal(buf); err != nil {
			tag := binary.LittleEndian.Uint16(buf[5:])
			typ := buf[4]
			r.release()
			c.writeError(tag, fmt.Sprintf("malformed %s: %v", typeName(typ), err))
			continue
		}
		c.srv.requests.Add(1)
		if c.srv.Trace != nil {
			c.srv.Trace(c.name, true, &r.fc)
		}
		if r.fc.Type != Tversion && !versioned {
			tag := r.fc.Tag
			r.release()
			c.writeError(tag, string(plan9.ErrNoVersion))
			continue
		}
		switch r.fc.Type {
		case Tversion:
			// Handled in line: it aborts everything in flight.
			if c.version(r) && !versioned {
				versioned = true
				c.ticket.Established()
			}
			continue
		case Tflush:
			c.flushPending() // the flushed request's reply may be held
			select {
			case c.flushes <- struct{}{}:
			case <-c.ctx.Done():
				r.release()
				return context.Cause(c.ctx)
			}
			go c.flush(r)
			continue
		}
		select {
		case c.slots <- struct{}{}:
		default:
			c.flushPending() // held replies must not wait for a slot
			select {
			case c.slots <- struct{}{}:
			case <-c.ctx.Done():
				r.release()
				return context.Cause(c.ctx)
			}
		}
		r.slot = true
		c.mu.Lock()
		if _, dup := c.tags[r.fc.Tag]; dup || r.fc.Tag == NoTag {
			c.mu.Unlock()
			tag := r.fc.Tag
			r.release()
			c.writeError(tag, string(plan9.ErrDupTag))
			continue
		}
		r.ctx, r.cancel = context.WithCancel(c.ctx)
		r.done = make(chan struct{})
		c.tags[r.fc.Tag] = r
		c.mu.Unlock()
		c.wg.Add(1)
		if c.inline(&r.fc) {
			r.batch = frameReady(br)
			c.handle(r)
		} else {
			go c.handle(r)
		}
	}
}

// maxInlineRead is the largest read run on the reading goroutine.
const maxInlineRead = 16 << 10

// inline reports whether request f may run on the reading goroutine: a
// walk, open, small read, stat or clunk of a fid whose File is Inline,
// or of no fid at all (its reply is an error). A large read gets a
// goroutine all the same, so that pipelined reads copy in parallel.
func (c *conn) inline(f *Fcall) bool {
	switch f.Type {
	case Twalk, Topen, Tstat, Tclunk:
	case Tread:
		if f.Count > maxInlineRead {
			return false
		}
	default:
		return false
	}
	c.mu.Lock()
	x := c.fids[f.Fid]
	c.mu.Unlock()
	if x == nil {
		return true
	}
	if !x.mu.TryLock() { // a request is busy with the fid (an open, say)
		return false
	}
	file := x.file
	x.mu.Unlock()
	in, ok := file.(Inline)
	return ok && in.Inline()
}

// version handles Tversion: it aborts all requests, clunks all fids and
// negotiates msize and version. It reports whether a version was agreed.
func (c *conn) version(r *req) bool {
	defer r.release()
	tag, cmsize, cver := r.fc.Tag, r.fc.Msize, r.fc.Version
	c.mu.Lock()
	for _, o := range c.tags {
		o.flushed = true
		o.cancel()
	}
	c.mu.Unlock()
	c.wg.Wait()
	c.clunkAll()
	if cmsize < MinMsize {
		c.writeError(tag, fmt.Sprintf("msize %d too small (minimum %d)", cmsize, MinMsize))
		return false
	}
	msize := min(cmsize, c.srv.msize())
	ver := "unknown"
	if cver == Version || strings.HasPrefix(cver, Version+".") {
		ver = Version
		c.mu.Lock()
		c.msize = msize
		c.mu.Unlock()
	}
	c.send(&Fcall{Type: Rversion, Tag: tag, Msize: msize, Version: ver})
	return ver == Version
}

// flush handles Tflush: the flushed request's context is cancelled, its
// reply suppressed, and the Rflush sent after it has finished.
func (c *conn) flush(r *req) {
	defer func() { <-c.flushes }()
	defer r.release()
	c.mu.Lock()
	o := c.tags[r.fc.Oldtag]
	if o != nil {
		o.flushed = true
		o.cancel()
	}
	c.mu.Unlock()
	if o != nil {
		<-o.done
	}
	c.send(&Fcall{Type: Rflush, Tag: r.fc.Tag})
}

func (c *conn) clunkAll() {
	c.mu.Lock()
	fids := c.fids
	c.fids = make(map[uint32]*fid)
	c.mu.Unlock()
	for _, f := range fids {
		f.decref()
	}
}

// send writes a reply built in the connection's write buffer.
func (c *conn) send(f *Fcall) {
	if c.srv.Trace != nil {
		c.srv.Trace(c.name, false, f)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeLocked(c.marshalLocked(f))
}

// marshalLocked builds reply f in the connection's write buffer, keeping
// the buffer for the next reply unless it grew past 64 KiB. c.wmu is held.
func (c *conn) marshalLocked(f *Fcall) []byte {
	b, err := f.Append(c.wbuf[:0])
	if err != nil {
		b, _ = (&Fcall{Type: Rerror, Tag: f.Tag, Ename: "reply too large"}).Append(c.wbuf[:0])
	}
	if cap(b) <= 64<<10 {
		c.wbuf = b
	}
	return b
}

// writeLocked writes the pending replies and b. c.wmu is held.
func (c *conn) writeLocked(b []byte) {
	var err error
	if len(c.pend) > 0 {
		bufs := net.Buffers{c.pend, b}
		_, err = writeVector(c.nc, bufs)
		c.pend = c.pend[:0]
	} else {
		_, err = c.nc.Write(b)
	}
	if err != nil {
		c.cancel(fmt.Errorf("writing reply: %w", err))
	}
}

// frameReady reports whether br holds a whole frame, to be read
// without waiting for the client.
func frameReady(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	h, _ := br.Peek(4)
	return br.Buffered() >= int(binary.LittleEndian.Uint32(h))
}

// maxPend bounds the replies held in conn.pend.
const maxPend = 32 << 10

// holdLocked keeps b to go out with the next write, or writes it now
// with what is held if that would pass maxPend. c.wmu is held.
func (c *conn) holdLocked(b []byte) {
	if len(c.pend)+len(b) > maxPend {
		c.writeLocked(b)
		return
	}
	c.pend = append(c.pend, b...)
}

// flushPending writes the replies held, if any.
func (c *conn) flushPending() {
	c.wmu.Lock()
	if len(c.pend) > 0 {
		c.writeLocked(nil)
	}
	c.wmu.Unlock()
}

func (c *conn) writeError(tag uint16, ename string) {
	c.send(&Fcall{Type: Rerror, Tag: tag, Ename: trimErr(ename)})
}

func trimErr(s string) string {
	if len(s) < plan9.ErrMax {
		return s
	}
	return plan9.Errstr(errors.New(s))
}
