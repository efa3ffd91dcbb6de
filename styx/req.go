package styx

import (
	"context"
	"errors"

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
	batch   bool   // run on the reading goroutine with more requests read: hold the reply (conn.pend)
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
		if r.batch {
			c.holdLocked(b)
		} else {
			c.writeLocked(b)
		}
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
	c.respondNewFid(r, r.fc.Afid, file, Rauth)
}

// respondNewFid puts file in the table as fid num and replies with its
// qid; a flush of r takes it out again.
func (c *conn) respondNewFid(r *req, num uint32, file File, typ uint8) {
	f, err := c.insert(num, file)
	if err != nil {
		file.Clunk()
		r.error(err)
		return
	}
	r.undo = func() { c.dropIf(num, f) }
	r.respond(&Fcall{Type: typ, Qid: file.Qid()})
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
	c.respondNewFid(r, r.fc.Fid, file, Rattach)
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
