// The client's fids: walk, open, create, read, write, stat and clunk
// on a Client's connection.

package styx

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"cheshire/plan9"
)

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

// ioSize is the most data one Tread or Twrite of f carries: its
// iounit, or what the msize allows.
func (f *Fid) ioSize() int {
	if f.iounit > 0 {
		return int(f.iounit)
	}
	return int(f.c.msize - IOHdrSz)
}

// ReadAt fills p from off with up to 8 Treads in flight. It returns fewer
// bytes than len(p) only at end of file (io.EOF) or on error.
func (f *Fid) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	iou := f.ioSize()
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
	iou := f.ioSize()
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
	chunk := min(int(f.iounit), 64<<10)
	if chunk == 0 {
		chunk = 8192
	}
	var out []byte
	for {
		// Read into out's own spare room: no copy.
		out = slices.Grow(out, chunk)
		n, err := f.ReadOnce(ctx, out[len(out):len(out)+chunk], int64(len(out)))
		out = out[:len(out)+n]
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

// Clunk forgets f. f must not be used afterwards. A fid not opened, or
// opened only to read, is clunked without waiting for the reply (its
// error, if any, is not told); one opened to write, or ORCLOSE, waits,
// since its clunk may commit or remove and say that it failed.
func (f *Fid) Clunk(ctx context.Context) error {
	if !f.opened || (f.mode&3 == OREAD && f.mode&ORCLOSE == 0) {
		// Nothing to commit, nothing to remove: the Tclunk goes out
		// and the caller goes on, a round trip saved (a stat is a walk
		// and a stat, not three trips). Fid numbers are not reused, so
		// the reply may come whenever. A fid never opened has done
		// nothing a server would undo at its clunk, so its Tclunk may
		// even wait to go out with the next request; an open one's
		// goes now (another client may be waiting for that close).
		return f.c.post(&Fcall{Type: Tclunk, Fid: f.num}, !f.opened)
	}
	return f.c.call(ctx, &Fcall{Type: Tclunk, Fid: f.num})
}

// Remove removes the file and clunks f.
func (f *Fid) Remove(ctx context.Context) error {
	return f.c.call(ctx, &Fcall{Type: Tremove, Fid: f.num})
}
