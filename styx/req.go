package styx

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"cheshire/plan9"
)

// req is one request in flight.
type req struct {
	c      *conn
	fc     Fcall
	buf    *[]byte // the frame; fc's Data and Stat alias it
	held   int64   // bytes of c.mem held for the frame
	slot   bool    // holds a c.slots entry
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	flushed bool   // guarded by c.mu: reply must be suppressed
	undo    func() // run instead of the reply when flushed
	holds   []*fid // fid references dropped just before the reply
}

// hold keeps a reference to f until r is answered. It is dropped before
// the reply is written, so that a Tclunk the client sends on receiving it
// finds itself holding the last reference and can report the File's clunk
// error (a file that commits at clunk depends on this).
func (r *req) hold(f *fid) { r.holds = append(r.holds, f) }

// release returns the frame buffer, memory and slot of r.
func (r *req) release() {
	if r.buf != nil {
		r.c.srv.pool.put(r.buf)
		r.buf = nil
	}
	if r.held > 0 {
		r.c.mem.Release(r.held)
		r.held = 0
	}
	if r.slot {
		<-r.c.slots
		r.slot = false
	}
}

// finish sends the reply b (nil: f marshalled) unless r was flushed, and
// retires the tag. The tag leaves the table while the write lock is held, so
// a Tflush that finds no tag sends its Rflush after this reply.
func (r *req) finish(f *Fcall, b []byte) {
	c := r.c
	for _, h := range r.holds {
		h.decref()
	}
	r.holds = nil
	if f != nil && c.srv.Trace != nil {
		c.srv.Trace(c.name, false, f)
	}
	c.wmu.Lock()
	c.mu.Lock()
	flushed := r.flushed
	delete(c.tags, r.fc.Tag)
	c.mu.Unlock()
	if !flushed {
		if b == nil {
			b = c.marshalLocked(f)
		}
		c.writeLocked(b)
	}
	c.wmu.Unlock()
	if flushed && r.undo != nil {
		r.undo()
	}
	r.cancel()
	r.release()
	close(r.done)
	c.wg.Done()
}

func (r *req) respond(f *Fcall) {
	f.Tag = r.fc.Tag
	r.finish(f, nil)
}

func (r *req) error(err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = plan9.ErrInterrupted
	}
	r.respond(&Fcall{Type: Rerror, Ename: plan9.Errstr(err)})
}

// fid is one fid of a connection. The table holds a reference, and each
// request using it holds one; the File is clunked when the last drops.
type fid struct {
	num  uint32
	refs atomic.Int32

	mu      sync.Mutex
	file    File   // guarded by mu
	opened  bool   // guarded by mu
	mode    uint8  // guarded by mu
	removed bool   // guarded by mu
	dirents []Dir  // guarded by mu: directory snapshot taken at offset 0
	dirnext int    // guarded by mu: next entry of dirents to send
	diroff  uint64 // guarded by mu: offset the next directory read must use
}

func newFid(num uint32, f File) *fid {
	x := &fid{num: num, file: f}
	x.refs.Store(1)
	return x
}

// decref drops a reference; the last one clunks the File, and its error
// (a commit-at-clunk file may refuse what was written) is returned.
func (f *fid) decref() error {
	if f.refs.Add(-1) != 0 {
		return nil
	}
	f.mu.Lock()
	file, rclose := f.file, f.opened && f.mode&ORCLOSE != 0 && !f.removed
	f.file = nil
	f.mu.Unlock()
	if file == nil {
		return nil
	}
	var err error
	if rclose {
		err = file.Remove(context.Background())
	}
	if cerr := file.Clunk(); cerr != nil {
		err = cerr
	}
	return err
}

func (f *fid) get() (File, bool, uint8) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.file, f.opened, f.mode
}

func (c *conn) lookup(num uint32) (*fid, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fids[num]
	if f == nil {
		return nil, plan9.ErrUnknownFid
	}
	f.refs.Add(1)
	return f, nil
}

// insert adds a new fid; it fails if num is in use.
func (c *conn) insert(num uint32, file File) (*fid, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.fids[num]; ok || num == NoFid {
		return nil, plan9.ErrDupFid
	}
	f := newFid(num, file)
	c.fids[num] = f
	return f, nil
}

// drop removes num from the table and returns it with the table's
// reference, which the caller must drop.
func (c *conn) drop(num uint32) *fid {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fids[num]
	delete(c.fids, num)
	return f
}

func (c *conn) dropIf(num uint32, f *fid) {
	c.mu.Lock()
	if c.fids[num] == f {
		delete(c.fids, num)
	} else {
		f = nil
	}
	c.mu.Unlock()
	if f != nil {
		f.decref()
	}
}

func (c *conn) handle(r *req) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("9p handler panic", "msg", r.fc.String(), "panic", p)
			r.error(plan9.ErrIO)
		}
	}()
	switch r.fc.Type {
	case Tauth:
		c.auth(r)
	case Tattach:
		c.attach(r)
	case Twalk:
		c.walk(r)
	case Topen:
		c.open(r)
	case Tcreate:
		c.create(r)
	case Tread:
		c.read(r)
	case Twrite:
		c.write(r)
	case Tclunk:
		f := c.drop(r.fc.Fid)
		if f == nil {
			r.error(plan9.ErrUnknownFid)
			return
		}
		if err := f.decref(); err != nil {
			r.error(err)
			return
		}
		r.respond(&Fcall{Type: Rclunk})
	case Tremove:
		c.remove(r)
	case Tstat:
		c.stat(r)
	case Twstat:
		c.wstat(r)
	default:
		r.error(errors.New("bad message type " + typeName(r.fc.Type)))
	}
}

func (c *conn) auth(r *req) {
	if c.srv.Auth == nil {
		r.error(errors.New("authentication not required"))
		return
	}
	file, err := c.srv.Auth.Auth(r.ctx, r.fc.Uname, r.fc.Aname)
	if err != nil {
		r.error(err)
		return
	}
	f, err := c.insert(r.fc.Afid, file)
	if err != nil {
		file.Clunk()
		r.error(err)
		return
	}
	r.undo = func() { c.dropIf(r.fc.Afid, f) }
	r.respond(&Fcall{Type: Rauth, Qid: file.Qid()})
}

func (c *conn) attach(r *req) {
	var auth File
	if r.fc.Afid != NoFid {
		af, err := c.lookup(r.fc.Afid)
		if err != nil {
			r.error(err)
			return
		}
		r.hold(af)
		auth, _, _ = af.get()
		if auth == nil || auth.Qid().Type&QTAUTH == 0 {
			r.error(errors.New("not an authentication fid"))
			return
		}
	}
	c.mu.Lock()
	_, inuse := c.fids[r.fc.Fid]
	c.mu.Unlock()
	if inuse {
		r.error(plan9.ErrDupFid)
		return
	}
	file, err := c.srv.Attacher.Attach(r.ctx, r.fc.Uname, r.fc.Aname, auth)
	if err != nil {
		r.error(err)
		return
	}
	f, err := c.insert(r.fc.Fid, file)
	if err != nil {
		file.Clunk()
		r.error(err)
		return
	}
	r.undo = func() { c.dropIf(r.fc.Fid, f) }
	r.respond(&Fcall{Type: Rattach, Qid: file.Qid()})
}

func (c *conn) walk(r *req) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	file, opened, _ := f.get()
	if file == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	if opened {
		r.error(errors.New("cannot walk an open fid"))
		return
	}
	if r.fc.Newfid != r.fc.Fid {
		c.mu.Lock()
		_, inuse := c.fids[r.fc.Newfid]
		c.mu.Unlock()
		if inuse {
			r.error(plan9.ErrDupFid)
			return
		}
	}
	if len(r.fc.Wname) > 0 && file.Qid().Type&QTDIR == 0 {
		r.error(plan9.ErrNotDir)
		return
	}
	for _, n := range r.fc.Wname {
		if n == "" || n == "." || containsSlash(n) {
			r.error(plan9.ErrBadName)
			return
		}
	}
	qids, nf, err := file.Walk(r.ctx, r.fc.Wname)
	if len(qids) < len(r.fc.Wname) || (err != nil && len(r.fc.Wname) == 0) {
		if nf != nil {
			nf.Clunk()
		}
		if len(qids) == 0 {
			if err == nil {
				err = plan9.ErrNotFound
			}
			r.error(err)
			return
		}
		r.respond(&Fcall{Type: Rwalk, Wqid: qids[:min(len(qids), len(r.fc.Wname))]})
		return
	}
	if nf == nil {
		r.error(plan9.ErrNotFound)
		return
	}
	if r.fc.Newfid == r.fc.Fid {
		f.mu.Lock()
		old := f.file
		f.file = nf
		f.mu.Unlock()
		old.Clunk()
	} else {
		g, err := c.insert(r.fc.Newfid, nf)
		if err != nil {
			nf.Clunk()
			r.error(err)
			return
		}
		r.undo = func() { c.dropIf(r.fc.Newfid, g) }
	}
	r.respond(&Fcall{Type: Rwalk, Wqid: qids})
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

func (c *conn) iounit(n uint32) uint32 {
	max := c.getMsize() - IOHdrSz
	if n == 0 || n > max {
		return max
	}
	return n
}

func (c *conn) open(r *req) { c.onFid(r, (*conn).openLocked) }

// onFid looks up r's fid, holds it for r, and replies with what op
// makes of it. The reply is sent after op has returned (and released
// f.mu): it drops r's hold on f, and if a Tclunk has meanwhile dropped
// the table's, that is the last reference, whose decref takes f.mu.
func (c *conn) onFid(r *req, op func(c *conn, r *req, f *fid) (*Fcall, error)) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	rx, err := op(c, r, f)
	if err != nil {
		r.error(err)
		return
	}
	r.respond(rx)
}

func (c *conn) openLocked(r *req, f *fid) (*Fcall, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		return nil, plan9.ErrUnknownFid
	}
	if f.opened {
		return nil, plan9.ErrFidOpen
	}
	q := f.file.Qid()
	if q.Type&QTDIR != 0 && (r.fc.Mode&3 == OWRITE || r.fc.Mode&3 == ORDWR || r.fc.Mode&OTRUNC != 0) {
		return nil, plan9.ErrIsDir
	}
	iou, err := f.file.Open(r.ctx, r.fc.Mode)
	if err != nil {
		return nil, err
	}
	f.opened, f.mode = true, r.fc.Mode
	f.dirents, f.dirnext, f.diroff = nil, 0, 0
	return &Fcall{Type: Ropen, Qid: f.file.Qid(), Iounit: c.iounit(iou)}, nil
}

func (c *conn) create(r *req) { c.onFid(r, (*conn).createLocked) }

func (c *conn) createLocked(r *req, f *fid) (*Fcall, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		return nil, plan9.ErrUnknownFid
	}
	if f.opened {
		return nil, plan9.ErrFidOpen
	}
	if f.file.Qid().Type&QTDIR == 0 {
		return nil, plan9.ErrNotDir
	}
	if n := r.fc.Name; n == "" || n == "." || n == ".." || containsSlash(n) {
		return nil, plan9.ErrBadName
	}
	nf, iou, err := f.file.Create(r.ctx, r.fc.Name, r.fc.Perm, r.fc.Mode)
	if err != nil {
		return nil, err
	}
	old := f.file
	f.file, f.opened, f.mode = nf, true, r.fc.Mode
	f.dirents, f.dirnext, f.diroff = nil, 0, 0
	old.Clunk()
	return &Fcall{Type: Rcreate, Qid: nf.Qid(), Iounit: c.iounit(iou)}, nil
}

func readable(mode uint8) bool { m := mode & 3; return m == OREAD || m == ORDWR || m == OEXEC }
func writable(mode uint8) bool { m := mode & 3; return m == OWRITE || m == ORDWR }

func (c *conn) read(r *req) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	file, opened, mode := f.get()
	if file == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	if !opened {
		r.error(plan9.ErrNotOpen)
		return
	}
	if !readable(mode) {
		r.error(plan9.ErrBadUse)
		return
	}
	count := min(r.fc.Count, c.getMsize()-IOHdrSz)
	if int64(r.fc.Offset) < 0 {
		r.error(plan9.ErrBadOffset)
		return
	}
	if file.Qid().Type&QTDIR != 0 {
		c.readDir(r, f, count)
		return
	}
	need := int64(11 + count)
	var held int64
	if need > smallFrame {
		cost := int64(c.srv.pool.size(int(need))) // the buffer's whole capacity
		if err := c.mem.Acquire(r.ctx, cost); err != nil {
			r.error(err)
			return
		}
		held = cost
	}
	bp := c.srv.pool.get(int(need))
	buf := *bp
	n, err := file.Read(r.ctx, buf[11:need], int64(r.fc.Offset))
	if err != nil && (n == 0 || !errors.Is(err, io.EOF)) && !errors.Is(err, io.EOF) {
		c.srv.pool.put(bp)
		c.mem.Release(held)
		r.error(err)
		return
	}
	n = max(0, min(n, int(count)))
	binary.LittleEndian.PutUint32(buf, uint32(11+n))
	buf[4] = Rread
	binary.LittleEndian.PutUint16(buf[5:], r.fc.Tag)
	binary.LittleEndian.PutUint32(buf[7:], uint32(n))
	if c.srv.Trace != nil {
		c.srv.Trace(c.name, false, &Fcall{Type: Rread, Tag: r.fc.Tag, Data: buf[11 : 11+n]})
	}
	r.finish(nil, buf[:11+n])
	c.srv.pool.put(bp)
	c.mem.Release(held)
}

// readDir serves a directory read from the snapshot taken at offset 0.
func (c *conn) readDir(r *req, f *fid, count uint32) {
	// The reply is held until it is written, as a file read's buffer is:
	// it counts against the connection's memory the same way.
	if need := int64(11 + count); need > smallFrame {
		if err := c.mem.Acquire(r.ctx, need); err != nil {
			r.error(err)
			return
		}
		defer c.mem.Release(need)
	}
	f.mu.Lock()
	if r.fc.Offset == 0 {
		ds, err := f.file.ReadDir(r.ctx)
		if err != nil {
			f.mu.Unlock()
			r.error(err)
			return
		}
		f.dirents, f.dirnext, f.diroff = ds, 0, 0
	} else if r.fc.Offset != f.diroff {
		f.mu.Unlock()
		r.error(plan9.ErrBadOffset)
		return
	}
	data := make([]byte, 0, min(int(count), 64<<10))
	i := f.dirnext
	for ; i < len(f.dirents); i++ {
		d := &f.dirents[i]
		if len(data)+d.Size() > int(count) {
			break
		}
		data = d.Append(data)
	}
	if i == f.dirnext && i < len(f.dirents) {
		f.mu.Unlock()
		r.error(errors.New("read count too small for a directory entry"))
		return
	}
	f.dirnext = i
	f.diroff += uint64(len(data))
	f.mu.Unlock()
	r.respond(&Fcall{Type: Rread, Data: data})
}

func (c *conn) write(r *req) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	file, opened, mode := f.get()
	if file == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	if !opened {
		r.error(plan9.ErrNotOpen)
		return
	}
	if !writable(mode) {
		r.error(plan9.ErrBadUse)
		return
	}
	if file.Qid().Type&QTDIR != 0 {
		r.error(plan9.ErrIsDir)
		return
	}
	if int64(r.fc.Offset) < 0 || int64(r.fc.Offset)+int64(len(r.fc.Data)) < 0 {
		r.error(plan9.ErrBadOffset)
		return
	}
	n, err := file.Write(r.ctx, r.fc.Data, int64(r.fc.Offset))
	if err != nil && n == 0 {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rwrite, Count: uint32(n)})
}

func (c *conn) remove(r *req) {
	f := c.drop(r.fc.Fid)
	if f == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	f.mu.Lock()
	file := f.file
	f.mu.Unlock()
	var err error
	if file == nil {
		err = plan9.ErrUnknownFid
	} else {
		err = file.Remove(r.ctx)
		if err == nil {
			f.mu.Lock()
			f.removed = true
			f.mu.Unlock()
		}
	}
	f.decref()
	if err != nil {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rremove})
}

func (c *conn) stat(r *req) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	file, _, _ := f.get()
	if file == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	d, err := file.Stat(r.ctx)
	if err != nil {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rstat, Stat: d.Bytes()})
}

func (c *conn) wstat(r *req) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	d, err := UnmarshalDir(r.fc.Stat)
	if err != nil {
		r.error(errors.New("bad stat in wstat: " + err.Error()))
		return
	}
	file, _, _ := f.get()
	if file == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	if d.Name != "" && (d.Name == "." || d.Name == ".." || containsSlash(d.Name)) {
		r.error(plan9.ErrBadName)
		return
	}
	if err := checkFixed(r.ctx, file, &d); err != nil {
		r.error(err)
		return
	}
	if err := file.Wstat(r.ctx, d); err != nil {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rwstat})
}

// checkFixed checks that d, the entry of a Twstat of file, leaves alone
// what no wstat may change. Type, dev and each part of the qid must be
// "don't touch" (~0) or equal the file's, else plan9.ErrWstat; a mode
// other than ~0 must keep the DMDIR bit of the file's qid type, else
// plan9.ErrConvert. The file's Stat is called only when d names a type,
// dev or qid.
func checkFixed(ctx context.Context, file File, d *Dir) error {
	if d.Mode != ^uint32(0) && (d.Mode&DMDIR != 0) != (file.Qid().Type&QTDIR != 0) {
		return plan9.ErrConvert
	}
	null := NullDir()
	if d.Type == null.Type && d.Dev == null.Dev && d.Qid == null.Qid {
		return nil
	}
	cur, err := file.Stat(ctx)
	if err != nil {
		return err
	}
	if d.Type != null.Type && d.Type != cur.Type ||
		d.Dev != null.Dev && d.Dev != cur.Dev ||
		d.Qid.Type != null.Qid.Type && d.Qid.Type != cur.Qid.Type ||
		d.Qid.Vers != null.Qid.Vers && d.Qid.Vers != cur.Qid.Vers ||
		d.Qid.Path != null.Qid.Path && d.Qid.Path != cur.Qid.Path {
		return plan9.ErrWstat
	}
	return nil
}
