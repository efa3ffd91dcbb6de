package styx

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"

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

	mu      sync.Mutex
	calls   map[uint16]*call // guarded by mu
	nexttag uint16           // guarded by mu
	err     error            // guarded by mu: set once the connection is dead
	tagfree *sync.Cond       // signalled when a tag is freed

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
	c := &Client{nc: nc, msize: rx.Msize, calls: make(map[uint16]*call), done: make(chan struct{})}
	c.tagfree = sync.NewCond(&c.mu)
	go c.readLoop(br)
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
	// Calls are ended under mu, as readLoop ends them, so that each
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

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
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

func (c *Client) readLoop(br *bufio.Reader) {
	var hdr [7]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
			return
		}
		size := binary.LittleEndian.Uint32(hdr[:])
		typ := hdr[4]
		tag := binary.LittleEndian.Uint16(hdr[5:])
		if size < 7 || size > c.msize {
			c.fail(fmt.Errorf("%w: bad frame size %d from server", plan9.ErrHungup, size))
			return
		}
		c.mu.Lock()
		cl := c.calls[tag]
		c.mu.Unlock()
		if cl == nil {
			c.fail(fmt.Errorf("%w: reply with unknown tag %d", plan9.ErrHungup, tag))
			return
		}
		if typ == Rread && cl.rbuf != nil && size >= 11 {
			var cnt [4]byte
			if _, err := io.ReadFull(br, cnt[:]); err != nil {
				c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
				return
			}
			n := binary.LittleEndian.Uint32(cnt[:])
			if int64(n) > int64(len(cl.rbuf)) || n+11 != size {
				c.fail(fmt.Errorf("%w: Rread of %d bytes for a read of %d", plan9.ErrHungup, n, len(cl.rbuf)))
				return
			}
			if _, err := io.ReadFull(br, cl.rbuf[:n]); err != nil {
				c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
				return
			}
			cl.reply = Fcall{Type: Rread, Tag: tag, Data: cl.rbuf[:n]}
		} else {
			bp := c.pool.get(int(size))
			copy(*bp, hdr[:])
			if _, err := io.ReadFull(br, (*bp)[7:]); err != nil {
				c.fail(fmt.Errorf("%w: %v", plan9.ErrHungup, err))
				return
			}
			if err := cl.reply.Unmarshal(*bp); err != nil {
				c.fail(fmt.Errorf("%w: malformed %s from server: %v", plan9.ErrHungup, typeName(typ), err))
				return
			}
			cl.frame = bp
		}
		c.mu.Lock()
		if c.err != nil {
			// Closed meanwhile: fail has ended cl already.
			c.mu.Unlock()
			return
		}
		if !cl.flushing {
			delete(c.calls, tag)
			c.tagfree.Signal()
		}
		close(cl.done)
		c.mu.Unlock()
	}
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

// send writes tx; Twrite data goes out as a second vector, uncopied.
func (c *Client) send(tx *Fcall) error {
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
	_, err := bufs.WriteTo(c.nc)
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
	select {
	case <-cl.done:
	case <-ctx.Done():
		c.flush(tag, cl)
		if cl.err == nil && isClosed(cl.done) {
			break
		}
		return nil, ctx.Err()
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

func (cl *call) release(c *Client) {
	if cl.frame != nil {
		c.pool.put(cl.frame)
		cl.frame = nil
	}
}

// flush sends Tflush for tag and waits for the Rflush; the old tag stays
// reserved until then, as the protocol requires.
func (c *Client) flush(tag uint16, cl *call) {
	c.mu.Lock()
	if c.calls[tag] == cl {
		cl.flushing = true
	}
	c.mu.Unlock()
	fc := &call{done: make(chan struct{})}
	ftag, err := c.allocTag(fc)
	if err == nil {
		if err = c.send(&Fcall{Type: Tflush, Tag: ftag, Oldtag: tag}); err == nil {
			<-fc.done
			fc.release(c)
		} else {
			c.freeTag(ftag)
		}
	}
	c.mu.Lock()
	if c.calls[tag] == cl {
		delete(c.calls, tag)
		c.tagfree.Signal()
	}
	c.mu.Unlock()
}

func (c *Client) newFid() uint32 {
	for {
		n := c.nextfid.Add(1) - 1
		if n != NoFid {
			return n
		}
	}
}

// A Fid is a client's handle on a file of the server.
type Fid struct {
	c      *Client
	num    uint32
	qid    Qid
	iounit uint32
	mode   uint8
	opened bool
}

// Client returns the connection of f.
func (f *Fid) Client() *Client { return f.c }

// Qid is the qid of the file f refers to.
func (f *Fid) Qid() Qid { return f.qid }

// Iounit is the largest I/O an open fid does in one message.
func (f *Fid) Iounit() uint32 { return f.iounit }

// Mode is the open mode of f.
func (f *Fid) Mode() uint8 { return f.mode }

// Auth starts authentication as uname; the returned fid is read and
// written by the authentication protocol.
func (c *Client) Auth(ctx context.Context, uname, aname string) (*Fid, error) {
	n := c.newFid()
	cl, err := c.rpc(ctx, &Fcall{Type: Tauth, Afid: n, Uname: uname, Aname: aname}, nil)
	if err != nil {
		return nil, err
	}
	defer cl.release(c)
	return &Fid{c: c, num: n, qid: cl.reply.Qid, iounit: c.msize - IOHdrSz, opened: true, mode: ORDWR}, nil
}

// Attach attaches to the tree aname as uname; afid may be nil.
func (c *Client) Attach(ctx context.Context, afid *Fid, uname, aname string) (*Fid, error) {
	n := c.newFid()
	a := NoFid
	if afid != nil {
		a = afid.num
	}
	cl, err := c.rpc(ctx, &Fcall{Type: Tattach, Fid: n, Afid: a, Uname: uname, Aname: aname}, nil)
	if err != nil {
		return nil, err
	}
	defer cl.release(c)
	return &Fid{c: c, num: n, qid: cl.reply.Qid}, nil
}

// Walk walks names (any number; sent 16 at a time) to a new fid. It
// returns the qids walked; if the walk stopped early, the new fid is nil
// and err says why.
func (f *Fid) Walk(ctx context.Context, names ...string) ([]Qid, *Fid, error) {
	from := f
	var qids []Qid
	for first := true; first || len(names) > 0; first = false {
		k := min(len(names), MaxWalk)
		n := f.c.newFid()
		cl, err := f.c.rpc(ctx, &Fcall{Type: Twalk, Fid: from.num, Newfid: n, Wname: names[:k]}, nil)
		if err != nil {
			if from != f {
				from.Clunk(context.WithoutCancel(ctx))
			}
			return qids, nil, err
		}
		wq := append([]Qid(nil), cl.reply.Wqid...)
		cl.release(f.c)
		qids = append(qids, wq...)
		if len(wq) < k {
			if from != f {
				from.Clunk(context.WithoutCancel(ctx))
			}
			return qids, nil, plan9.ErrNotFound
		}
		nf := &Fid{c: f.c, num: n, qid: from.qid}
		if k > 0 {
			nf.qid = wq[k-1]
		}
		if from != f {
			from.Clunk(context.WithoutCancel(ctx))
		}
		from = nf
		names = names[k:]
	}
	return qids, from, nil
}

// WalkPath walks a slash-separated path relative to f.
func (f *Fid) WalkPath(ctx context.Context, path string) (*Fid, error) {
	_, nf, err := f.Walk(ctx, SplitPath(path)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nf, nil
}

// SplitPath splits a slash-separated path into names, dropping empty and
// "." elements.
func SplitPath(p string) []string {
	var names []string
	for _, n := range strings.Split(p, "/") {
		if n != "" && n != "." {
			names = append(names, n)
		}
	}
	return names
}

func (f *Fid) setOpen(q Qid, iounit uint32, mode uint8) {
	f.qid = q
	f.iounit = iounit
	if f.iounit == 0 || f.iounit > f.c.msize-IOHdrSz {
		f.iounit = f.c.msize - IOHdrSz
	}
	f.mode = mode
	f.opened = true
}

// Open opens f for I/O.
func (f *Fid) Open(ctx context.Context, mode uint8) error {
	cl, err := f.c.rpc(ctx, &Fcall{Type: Topen, Fid: f.num, Mode: mode}, nil)
	if err != nil {
		return err
	}
	defer cl.release(f.c)
	f.setOpen(cl.reply.Qid, cl.reply.Iounit, mode)
	return nil
}

// Create creates name in the directory f and opens it; f then refers to
// the new file.
func (f *Fid) Create(ctx context.Context, name string, perm uint32, mode uint8) error {
	cl, err := f.c.rpc(ctx, &Fcall{Type: Tcreate, Fid: f.num, Name: name, Perm: perm, Mode: mode}, nil)
	if err != nil {
		return err
	}
	defer cl.release(f.c)
	f.setOpen(cl.reply.Qid, cl.reply.Iounit, mode)
	return nil
}

// ReadOnce sends one Tread of at most iounit bytes.
func (f *Fid) ReadOnce(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) > int(f.iounit) && f.iounit > 0 {
		p = p[:f.iounit]
	}
	cl, err := f.c.rpc(ctx, &Fcall{Type: Tread, Fid: f.num, Offset: uint64(off), Count: uint32(len(p))}, p)
	if err != nil {
		return 0, err
	}
	n := len(cl.reply.Data)
	if cl.frame != nil { // not read in place
		copy(p, cl.reply.Data)
	}
	cl.release(f.c)
	return n, nil
}

// depth is how many Treads or Twrites ReadAt and WriteAt keep in flight.
const depth = 8

// ReadAt fills p from off with up to 8 Treads in flight. It returns fewer
// bytes than len(p) only at end of file (io.EOF) or on error.
func (f *Fid) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	iou := int(f.iounit)
	if iou <= 0 {
		iou = int(f.c.msize - IOHdrSz)
	}
	if len(p) <= iou {
		n, err := f.ReadOnce(ctx, p, off)
		if err == nil && n < len(p) {
			err = io.EOF
		}
		return n, err
	}
	type result struct {
		n   int
		err error
	}
	chunks := (len(p) + iou - 1) / iou
	res := make([]result, chunks)
	sem := make(chan struct{}, depth)
	var wg sync.WaitGroup
	for i := 0; i < chunks; i++ {
		lo, hi := i*iou, min((i+1)*iou, len(p))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, err := f.ReadOnce(ctx, p[lo:hi], off+int64(lo))
			res[i] = result{n, err}
		}()
	}
	wg.Wait()
	total := 0
	for i, r := range res {
		total += r.n
		if r.err != nil {
			return total, r.err
		}
		if r.n < min((i+1)*iou, len(p))-i*iou {
			return total, io.EOF
		}
	}
	return total, nil
}

// WriteOnce sends one Twrite of at most iounit bytes.
func (f *Fid) WriteOnce(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) > int(f.iounit) && f.iounit > 0 {
		p = p[:f.iounit]
	}
	cl, err := f.c.rpc(ctx, &Fcall{Type: Twrite, Fid: f.num, Offset: uint64(off), Data: p}, nil)
	if err != nil {
		return 0, err
	}
	n := int(cl.reply.Count)
	cl.release(f.c)
	if n > len(p) {
		return 0, fmt.Errorf("protocol botch: wrote %d of %d bytes", n, len(p))
	}
	return n, nil
}

// WriteAt writes all of p at off with up to 8 Twrites in flight.
func (f *Fid) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	iou := int(f.iounit)
	if iou <= 0 {
		iou = int(f.c.msize - IOHdrSz)
	}
	if len(p) <= iou {
		n, err := f.WriteOnce(ctx, p, off)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		return n, err
	}
	chunks := (len(p) + iou - 1) / iou
	ns := make([]int, chunks)
	errs := make([]error, chunks)
	sem := make(chan struct{}, depth)
	var wg sync.WaitGroup
	for i := 0; i < chunks; i++ {
		lo, hi := i*iou, min((i+1)*iou, len(p))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ns[i], errs[i] = f.WriteOnce(ctx, p[lo:hi], off+int64(lo))
		}()
	}
	wg.Wait()
	total := 0
	for i := range ns {
		total += ns[i]
		if errs[i] != nil {
			return total, errs[i]
		}
		if ns[i] < min((i+1)*iou, len(p))-i*iou {
			return total, io.ErrShortWrite
		}
	}
	return total, nil
}

// ReadAll reads the file from offset 0 to end of file, one Tread after
// another (synthetic files may not know their length).
func (f *Fid) ReadAll(ctx context.Context) ([]byte, error) {
	var out []byte
	buf := make([]byte, min(int(f.iounit), 64<<10))
	if len(buf) == 0 {
		buf = make([]byte, 8192)
	}
	for {
		n, err := f.ReadOnce(ctx, buf, int64(len(out)))
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
	}
}

// ReadDir reads the whole of the open directory f.
func (f *Fid) ReadDir(ctx context.Context) ([]Dir, error) {
	data, err := f.ReadAll(ctx)
	if err != nil {
		return nil, err
	}
	return UnmarshalDirs(data)
}

// Stat returns the directory entry of f.
func (f *Fid) Stat(ctx context.Context) (Dir, error) {
	cl, err := f.c.rpc(ctx, &Fcall{Type: Tstat, Fid: f.num}, nil)
	if err != nil {
		return Dir{}, err
	}
	defer cl.release(f.c)
	return UnmarshalDir(cl.reply.Stat)
}

// call sends tx and waits for a reply that carries nothing.
func (c *Client) call(ctx context.Context, tx *Fcall) error {
	cl, err := c.rpc(ctx, tx, nil)
	if err != nil {
		return err
	}
	cl.release(c)
	return nil
}

// Wstat changes the fields of d that are not "don't touch" (NullDir).
func (f *Fid) Wstat(ctx context.Context, d Dir) error {
	return f.c.call(ctx, &Fcall{Type: Twstat, Fid: f.num, Stat: d.Bytes()})
}

// Clunk forgets f. f must not be used afterwards.
func (f *Fid) Clunk(ctx context.Context) error {
	return f.c.call(ctx, &Fcall{Type: Tclunk, Fid: f.num})
}

// Remove removes the file and clunks f.
func (f *Fid) Remove(ctx context.Context) error {
	return f.c.call(ctx, &Fcall{Type: Tremove, Fid: f.num})
}
