package styx

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/plan9"
)

// A Client is one 9P2000 connection to a server. It is safe for concurrent
// use: many goroutines may have requests in flight on it, each with its own
// tag. Cancelling a request's context sends a Tflush.
type Client struct {
	nc    net.Conn
	msize uint32
	pool  bufPool

	wmu sync.Mutex // serializes writes to nc
	// posts, guarded by wmu, holds requests posted (post) and not yet
	// written: they go out in one write with the next request, or
	// after postDelay if none comes (postt).
	posts []byte
	postt *time.Timer

	mu      sync.Mutex
	calls   map[uint16]*call // guarded by mu
	nexttag uint16           // guarded by mu
	err     error            // guarded by mu: set once the connection is dead
	tagfree *sync.Cond       // signalled when a tag is freed

	// reader is held by the goroutine reading replies: there is no
	// reading goroutine of the client's own; a caller waiting for its
	// reply reads for everyone while no other caller does (libmux's
	// election, as 9fans.net/go/plan9/client), so a lone caller reads
	// its own reply with no hand-off between threads. br is read only
	// by the holder.
	reader chan struct{}
	br     *bufio.Reader

	nextfid atomic.Uint32
	done    chan struct{}

	// OnClose, if set before the connection fails, is called once with the
	// reason. Importers use it to reconnect.
	OnClose func(error)
}

type call struct {
	done     chan struct{}
	rbuf     []byte // Rread data lands here directly, if set
	reply    Fcall
	frame    *[]byte // backing of reply, returned to the pool by the caller
	err      error
	flushing bool // the tag stays reserved until the Rflush arrives
	posted   bool // no one waits for the reply (post): it is dropped as it comes
}

// ClientOption configures NewClient.
type ClientOption func(*clientConfig)

type clientConfig struct{ msize uint32 }

// WithMsize asks for msize (default DefaultMsize).
func WithMsize(n uint32) ClientOption { return func(c *clientConfig) { c.msize = n } }

// Dial connects to a dial string (tcp!host!port, unix!/path) and
// negotiates the version.
func Dial(ctx context.Context, addr string, opts ...ClientOption) (*Client, error) {
	nc, err := plan9.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(ctx, nc, opts...)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return c, nil
}

// NewClient negotiates the version on nc and starts the client. The
// client owns nc from then on.
func NewClient(ctx context.Context, nc net.Conn, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{msize: DefaultMsize}
	for _, o := range opts {
		o(&cfg)
	}
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	b, _ := (&Fcall{Type: Tversion, Tag: NoTag, Msize: cfg.msize, Version: Version}).Bytes()
	_, err := nc.Write(b)
	var rx Fcall
	br := bufio.NewReaderSize(nc, 64<<10)
	if err == nil {
		var frame []byte
		frame, err = readFrame(br, 1<<16)
		if err == nil {
			err = rx.Unmarshal(frame)
		}
	}
	stop()
	nc.SetDeadline(noDeadline)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("version: %w", err)
	}
	switch {
	case rx.Type == Rerror:
		return nil, fmt.Errorf("version: %w", plan9.Error(rx.Ename))
	case rx.Type != Rversion:
		return nil, fmt.Errorf("version: unexpected %s", typeName(rx.Type))
	case rx.Version != Version:
		return nil, fmt.Errorf("version: server speaks %q, not %q", rx.Version, Version)
	case rx.Msize < MinMsize || rx.Msize > cfg.msize:
		return nil, fmt.Errorf("version: server offered bad msize %d", rx.Msize)
	}
	sizeSendBuffer(nc, rx.Msize)
	c := &Client{nc: nc, msize: rx.Msize, calls: make(map[uint16]*call), done: make(chan struct{}),
		reader: make(chan struct{}, 1), br: br}
	c.tagfree = sync.NewCond(&c.mu)
	return c, nil
}

// Msize is the negotiated message size.
func (c *Client) Msize() uint32 { return c.msize }

// Done is closed when the connection has failed or been closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection; requests in flight fail.
func (c *Client) Close() error {
	c.fail(plan9.ErrHungup)
	return nil
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	calls := c.calls
	c.calls = make(map[uint16]*call)
	c.tagfree.Broadcast()
	// Calls are ended under mu, as readOne ends them, so that each
	// done is closed once.
	for _, cl := range calls {
		if !isClosed(cl.done) {
			cl.err = err
			close(cl.done)
		}
	}
	c.mu.Unlock()
	c.nc.Close()
	close(c.done)
	if c.OnClose != nil {
		c.OnClose(err)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// sizeSendBuffer makes the send buffer of a unix socket hold two
// messages of msize, so that a 1 MiB Rread or Twrite goes out in one
// write(2) and is taken in one read(2), rather than in pieces of the
// default 208 KiB with a wakeup for each (first reads through a FUSE
// mount: 1.07 GB/s from 0.79, median of 5, BENCHMARKS.md). The kernel
// caps it at net.core.wmem_max (208 KiB unless raised); kernel memory
// is taken only while the peer lags. TCP tunes its own buffers.
func sizeSendBuffer(nc net.Conn, msize uint32) {
	if uc, ok := nc.(*net.UnixConn); ok {
		uc.SetWriteBuffer(2 * int(msize))
	}
}

func readFrame(br *bufio.Reader, msize uint32) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint32(hdr[:])
	if size < 7 || size > msize {
		return nil, fmt.Errorf("bad frame size %d", size)
	}
	b := make([]byte, size)
	copy(b, hdr[:])
	_, err := io.ReadFull(br, b[4:])
	return b, err
}

// await waits until done is closed, or stop is (nil: never), reading
// replies itself whenever no other goroutine is reading them.
func (c *Client) await(stop <-chan struct{}, done chan struct{}) {
	select {
	case <-done:
	case <-stop:
	case c.reader <- struct{}{}:
		for !isClosed(done) && !isClosed(stop) && c.readOne() {
		}
		<-c.reader
	}
}

// readOne reads one reply and ends its call. It reports false, the
// connection failed, if it cannot.
func (c *Client) readOne() bool {
	br := c.br
	var hdr [7]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
		return false
	}
	size := binary.LittleEndian.Uint32(hdr[:])
	typ := hdr[4]
	tag := binary.LittleEndian.Uint16(hdr[5:])
	if size < 7 || size > c.msize {
		c.fail(fmt.Errorf("%w: bad frame size %d from server", plan9.ErrHungup, size))
		return false
	}
	c.mu.Lock()
	cl := c.calls[tag]
	c.mu.Unlock()
	if cl == nil {
		c.fail(fmt.Errorf("%w: reply with unknown tag %d", plan9.ErrHungup, tag))
		return false
	}
	if typ == Rread && cl.rbuf != nil && size >= 11 {
		var cnt [4]byte
		if _, err := io.ReadFull(br, cnt[:]); err != nil {
			c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
			return false
		}
		n := binary.LittleEndian.Uint32(cnt[:])
		if int64(n) > int64(len(cl.rbuf)) || n+11 != size {
			c.fail(fmt.Errorf("%w: Rread of %d bytes for a read of %d", plan9.ErrHungup, n, len(cl.rbuf)))
			return false
		}
		if err := readFull(br, c.nc, cl.rbuf[:n]); err != nil {
			c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
			return false
		}
		cl.reply = Fcall{Type: Rread, Tag: tag, Data: cl.rbuf[:n]}
	} else {
		bp := c.pool.get(int(size))
		copy(*bp, hdr[:])
		if err := readFull(br, c.nc, (*bp)[7:]); err != nil {
			c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
			return false
		}
		if err := cl.reply.Unmarshal(*bp); err != nil {
			c.fail(fmt.Errorf("%w: malformed %s from server: %v", plan9.ErrHungup, typeName(typ), err))
			return false
		}
		cl.frame = bp
		if cl.posted {
			cl.release(c)
		}
	}
	c.mu.Lock()
	if c.err != nil {
		// Closed meanwhile: fail has ended cl already.
		c.mu.Unlock()
		return false
	}
	if !cl.flushing {
		delete(c.calls, tag)
		c.tagfree.Signal()
	}
	close(cl.done)
	c.mu.Unlock()
	return true
}

// allocTag reserves a free tag for cl, waiting while all are in use.
func (c *Client) allocTag(cl *call) (uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.err != nil {
			return 0, c.err
		}
		if len(c.calls) < int(NoTag) {
			break
		}
		c.tagfree.Wait()
	}
	for {
		t := c.nexttag
		c.nexttag++
		if c.nexttag == NoTag {
			c.nexttag = 0
		}
		if _, used := c.calls[t]; !used {
			c.calls[t] = cl
			return t, nil
		}
	}
}

func (c *Client) freeTag(tag uint16) {
	c.mu.Lock()
	delete(c.calls, tag)
	c.tagfree.Signal()
	c.mu.Unlock()
}

// postDelay is the longest a posted request waits for another to go
// out with.
const postDelay = time.Millisecond

// send writes tx; Twrite data goes out as a second vector, uncopied.
func (c *Client) send(tx *Fcall) error { return c.sendPost(tx, false) }

// sendPost writes tx, with the posted requests held; if hold, tx is
// held itself, to go out with the next request.
func (c *Client) sendPost(tx *Fcall, hold bool) error {
	var bufs net.Buffers
	var bp *[]byte
	if tx.Type == Twrite {
		var h [23]byte
		binary.LittleEndian.PutUint32(h[:], uint32(23+len(tx.Data)))
		h[4] = Twrite
		binary.LittleEndian.PutUint16(h[5:], tx.Tag)
		binary.LittleEndian.PutUint32(h[7:], tx.Fid)
		binary.LittleEndian.PutUint64(h[11:], tx.Offset)
		binary.LittleEndian.PutUint32(h[19:], uint32(len(tx.Data)))
		bufs = net.Buffers{h[:], tx.Data}
	} else {
		bp = c.pool.get(0)
		b, err := tx.Append((*bp)[:0])
		if err != nil {
			c.pool.put(bp)
			return err
		}
		*bp = b
		bufs = net.Buffers{b}
	}
	c.wmu.Lock()
	if hold && bp != nil && len(c.posts)+len(*bp) <= 4<<10 {
		if len(c.posts) == 0 {
			if c.postt == nil {
				c.postt = time.AfterFunc(postDelay, c.writePosts)
			} else {
				c.postt.Reset(postDelay)
			}
		}
		c.posts = append(c.posts, *bp...)
		c.wmu.Unlock()
		c.pool.put(bp)
		return nil
	}
	if len(c.posts) > 0 {
		bufs = append(net.Buffers{c.posts}, bufs...)
	}
	_, err := writeVector(c.nc, bufs)
	c.posts = c.posts[:0]
	c.wmu.Unlock()
	if bp != nil {
		c.pool.put(bp)
	}
	if err != nil {
		c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
		return plan9.ErrHungup
	}
	return nil
}

// writePosts writes the posted requests held, if no request has taken
// them along meanwhile.
func (c *Client) writePosts() {
	c.wmu.Lock()
	var err error
	if len(c.posts) > 0 {
		_, err = c.nc.Write(c.posts)
		c.posts = c.posts[:0]
	}
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
	}
}

// RPC sends tx and waits for its reply. An Rerror becomes a plan9.Error.
// If ctx is cancelled first, a Tflush is sent and RPC returns ctx.Err()
// once the server has answered it — unless the reply came first, in which
// case the request took effect and its reply is returned. rbuf, if set,
// receives Rread data directly. The caller must call release on the reply.
func (c *Client) rpc(ctx context.Context, tx *Fcall, rbuf []byte) (*call, error) {
	if tx.Type == Twrite && len(tx.Data)+IOHdrSz > int(c.msize) {
		return nil, fmt.Errorf("write of %d bytes exceeds msize %d", len(tx.Data), c.msize)
	}
	cl := &call{done: make(chan struct{}), rbuf: rbuf}
	tag, err := c.allocTag(cl)
	if err != nil {
		return nil, err
	}
	tx.Tag = tag
	if err := c.send(tx); err != nil {
		c.freeTag(tag)
		return nil, err
	}
	if ctx.Done() == nil {
		c.await(nil, cl.done)
	} else {
		f := &flushing{tag: tag, cl: cl, sent: make(chan struct{})}
		stop := context.AfterFunc(ctx, func() { c.sendFlush(f) })
		c.await(ctx.Done(), cl.done)
		stopped := stop()
		if stopped && !isClosed(cl.done) {
			// ctx is done, but its AfterFunc had not started: a
			// context closes Done before it runs its AfterFuncs, and
			// stop won that race. Flush here, as the AfterFunc would.
			c.sendFlush(f)
			stopped = false
		}
		if !stopped { // cancelled: a Tflush went out, or the reply came first
			<-f.sent
			if f.fc != nil {
				c.await(nil, f.fc.done)
				f.fc.release(c)
			}
			c.mu.Lock()
			if c.calls[tag] == cl {
				delete(c.calls, tag)
				c.tagfree.Signal()
			}
			c.mu.Unlock()
			if cl.err != nil || !isClosed(cl.done) {
				return nil, ctx.Err()
			}
		}
	}
	if cl.err != nil {
		return nil, cl.err
	}
	if cl.reply.Type == Rerror {
		e := plan9.Error(cl.reply.Ename)
		cl.release(c)
		return nil, e
	}
	if cl.reply.Type != tx.Type+1 {
		t := cl.reply.Type
		cl.release(c)
		return nil, fmt.Errorf("protocol botch: %s answered with %s", typeName(tx.Type), typeName(t))
	}
	return cl, nil
}

// post sends tx and returns once it is sent, not waiting for the
// reply, which the reading caller of the moment drops when it comes;
// its tag stays reserved until then. If hold, tx may wait up to
// postDelay to go out in one write with the next request.
func (c *Client) post(tx *Fcall, hold bool) error {
	cl := &call{done: make(chan struct{}), posted: true}
	tag, err := c.allocTag(cl)
	if err != nil {
		return err
	}
	tx.Tag = tag
	if err := c.sendPost(tx, hold); err != nil {
		c.freeTag(tag)
		return err
	}
	return nil
}

func (cl *call) release(c *Client) {
	if cl.frame != nil {
		c.pool.put(cl.frame)
		cl.frame = nil
	}
}

// flushing is the flush of a cancelled call.
type flushing struct {
	tag  uint16
	cl   *call
	fc   *call         // the Tflush's call, if one was sent
	sent chan struct{} // closed once fc is decided
}

// sendFlush sends a Tflush for f's call unless its reply is in; the
// old tag stays reserved until the Rflush, as the protocol requires.
// It runs on its own goroutine (context.AfterFunc), so that a caller
// blocked reading replies sees the Rflush arrive.
func (c *Client) sendFlush(f *flushing) {
	defer close(f.sent)
	c.mu.Lock()
	pending := c.calls[f.tag] == f.cl && !isClosed(f.cl.done)
	if pending {
		f.cl.flushing = true
	}
	c.mu.Unlock()
	if !pending {
		return
	}
	fc := &call{done: make(chan struct{})}
	ftag, err := c.allocTag(fc)
	if err != nil {
		return
	}
	if err := c.send(&Fcall{Type: Tflush, Tag: ftag, Oldtag: f.tag}); err != nil {
		c.freeTag(ftag)
		return
	}
	f.fc = fc
}

// depth is how many Treads or Twrites ReadAt and WriteAt keep in flight.
const depth = 8
