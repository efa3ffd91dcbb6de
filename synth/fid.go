package synth

import (
	"context"
	"errors"
	"io"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// fid is the styx.File of one fid: a node of the tree as seen by a user.
// The engine orders Open and Create before Read and Write, and Clunk after
// every other call, so mode, h and excl need no lock of their own.
type fid struct {
	srv  *Server
	user string
	n    Node
	h    Handle // the open of a File
	excl bool   // this fid holds the node's DMEXCL open
}

var _ styx.File = (*fid)(nil)

func (f *fid) ctx(ctx context.Context) context.Context { return withReq(ctx, f.srv, f.user) }

// Qid returns the node's current qid.
func (f *fid) Qid() styx.Qid { return f.n.base().qid() }

// Walk walks names from f's node. Each step needs exec permission on the
// directory it starts from; ".." from the root stays at the root.
func (f *fid) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	ctx = f.ctx(ctx)
	n := f.n
	qids := make([]styx.Qid, 0, len(names))
	for i, name := range names {
		d, ok := n.(*Dir)
		if !ok {
			return qids, nil, plan9.ErrWalkNoDir
		}
		if !f.srv.allowed(d, f.user, styx.OEXEC) {
			return qids, nil, plan9.ErrPerm
		}
		var err error
		if name == ".." {
			n, err = f.srv.parentOf(d)
		} else {
			n, err = d.lookup(ctx, name)
		}
		if err != nil {
			return qids, nil, err
		}
		if m, ok := n.(*Dir); ok && m.mount != nil {
			return f.cross(ctx, m, qids, names[i+1:])
		}
		qids = append(qids, n.base().qid())
	}
	return qids, &fid{srv: f.srv, user: f.user, n: n}, nil
}

// cross finishes a walk that reached the mount m: it attaches to its
// server and walks the rest of the names there. The server's files are
// given qid paths of f's server (see qidSpace).
func (f *fid) cross(ctx context.Context, m *Dir, qids []styx.Qid, rest []string) ([]styx.Qid, styx.File, error) {
	a, err := m.mount.Attach(ctx, f.user, "", nil)
	if err != nil {
		return qids, nil, err
	}
	root := mountFile{a, m.space(f.srv)}
	qids = append(qids, root.Qid())
	if len(rest) == 0 {
		return qids, root, nil
	}
	more, nf, err := root.Walk(ctx, rest)
	root.Clunk()
	qids = append(qids, more...)
	if len(more) < len(rest) {
		return qids, nil, err
	}
	return qids, nf, nil
}

// parentOf returns the parent of d; the root is its own parent.
func (s *Server) parentOf(d *Dir) (Node, error) {
	if d == s.root {
		return d, nil
	}
	d.mu.Lock()
	p := d.parent
	d.mu.Unlock()
	if p == nil {
		return nil, plan9.ErrNotFound
	}
	return p, nil
}

// Open checks permission for mode and opens the node.
func (f *fid) Open(ctx context.Context, mode uint8) (uint32, error) {
	return 0, f.open(f.ctx(ctx), mode, true)
}

// open opens f's node; check says whether to check permission on it (a
// file just created is opened without).
func (f *fid) open(ctx context.Context, mode uint8, check bool) error {
	b := f.n.base()
	a := b.attrs(f.srv)
	if check && !allowedAttrs(f.srv, a, f.user, mode) {
		return plan9.ErrPerm
	}
	if mode&styx.ORCLOSE != 0 {
		if _, err := f.removeHook(a); err != nil {
			return err
		}
	}
	file, ok := f.n.(*File)
	if !ok {
		return nil
	}
	if a.mode&styx.DMEXCL != 0 {
		b.mu.Lock()
		busy := b.excl
		b.excl = true
		b.mu.Unlock()
		if busy {
			return plan9.ErrFileInUse
		}
		f.excl = true
	}
	h, err := file.h.Open(ctx, mode&^styx.ORCLOSE)
	if err == nil && h == nil {
		err = plan9.ErrBadUse
	}
	if err != nil {
		f.releaseExcl()
		return err
	}
	f.h = h
	return nil
}

func (f *fid) releaseExcl() {
	if !f.excl {
		return
	}
	b := f.n.base()
	b.mu.Lock()
	b.excl = false
	b.mu.Unlock()
	f.excl = false
}

// writableParent returns the parent of f's node (attributes a) if the node
// is not the root, is still in the tree, and f's user may write the parent:
// what both remove and rename need.
func (f *fid) writableParent(a attrs) (*Dir, error) {
	if f.n == Node(f.srv.root) {
		return nil, plan9.ErrPerm
	}
	p := a.parent
	if p == nil {
		return nil, plan9.ErrNotFound
	}
	if !f.srv.allowed(p, f.user, styx.OWRITE) {
		return nil, plan9.ErrPerm
	}
	return p, nil
}

// removeHook checks that f's user may remove f's node, whose attributes
// are a, and returns the parent's remove hook.
func (f *fid) removeHook(a attrs) (func(context.Context, string) error, error) {
	p, err := f.writableParent(a)
	if err != nil {
		return nil, err
	}
	_, remove, _ := p.hooks()
	if remove == nil {
		return nil, plan9.ErrRemove
	}
	return remove, nil
}

// Create makes name in f's directory through its create hook and opens
// it with mode.
func (f *fid) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	ctx = f.ctx(ctx)
	d, ok := f.n.(*Dir)
	if !ok {
		return nil, 0, plan9.ErrNotDir
	}
	a := d.attrs(f.srv)
	if !allowedAttrs(f.srv, a, f.user, styx.OWRITE) {
		return nil, 0, plan9.ErrPerm
	}
	create, _, _ := d.hooks()
	if create == nil {
		return nil, 0, plan9.ErrCreate
	}
	if perm&styx.DMDIR != 0 && (writeMode(mode) || mode&styx.OTRUNC != 0) {
		return nil, 0, plan9.ErrIsDir
	}
	if _, err := d.lookup(ctx, name); err == nil {
		return nil, 0, plan9.ErrExist
	}
	n, err := create(ctx, name, perm, mode)
	if err != nil {
		return nil, 0, err
	}
	if n == nil {
		return nil, 0, plan9.ErrCreate
	}
	b := n.base()
	b.mu.Lock()
	if b.parent == nil {
		b.name = name
	}
	if b.uid == "" {
		b.uid = f.user
		if b.gid == "" {
			b.gid = a.gid
		}
	}
	added := b.parent == d
	b.mu.Unlock()
	if !added {
		if err := d.Add(n); err != nil {
			return nil, 0, err
		}
	}
	nf := &fid{srv: f.srv, user: f.user, n: n}
	if err := nf.open(ctx, mode, false); err != nil {
		return nil, 0, err
	}
	return nf, 0, nil
}

// Read reads the open file.
func (f *fid) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if f.h == nil {
		return 0, plan9.ErrBadUse
	}
	n, err := f.h.Read(f.ctx(ctx), p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// ReadDir lists the directory.
func (f *fid) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	ctx = f.ctx(ctx)
	d, ok := f.n.(*Dir)
	if !ok {
		return nil, plan9.ErrNotDir
	}
	kids, err := d.children(ctx)
	if err != nil {
		return nil, err
	}
	ds := make([]styx.Dir, len(kids))
	for i, k := range kids {
		ds[i] = f.srv.stat(ctx, k)
	}
	return ds, nil
}

// Write writes to the open file; a write that takes bytes bumps the
// qid version and mtime.
func (f *fid) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if f.h == nil {
		return 0, plan9.ErrBadUse
	}
	n, err := f.h.Write(f.ctx(ctx), p, off)
	if n > 0 || err == nil {
		f.n.base().touch()
	}
	return n, err
}

// Stat returns the node's directory entry.
func (f *fid) Stat(ctx context.Context) (styx.Dir, error) {
	d := f.srv.stat(f.ctx(ctx), f.n)
	if l, ok := f.h.(lengther); ok {
		// An open handle may know better (an event reader's own length).
		d.Length = uint64(max(0, l.Length(ctx)))
	}
	return d, nil
}

// stat makes the directory entry of n.
func (s *Server) stat(ctx context.Context, n Node) styx.Dir {
	a := n.base().attrs(s)
	var length uint64
	if file, ok := n.(*File); ok {
		if cs, ok := file.h.(contentStater); ok {
			l, v := cs.contentStat(ctx)
			length, a.qid.Vers = uint64(max(0, l)), a.qid.Vers^v
		} else {
			if l, ok := file.h.(lengther); ok {
				length = uint64(max(0, l.Length(ctx)))
			}
			if v, ok := file.h.(versioner); ok {
				a.qid.Vers ^= v.Version(ctx)
			}
		}
	}
	mt := uint32(a.mtime.Unix())
	return styx.Dir{Qid: a.qid, Mode: a.mode, Atime: mt, Mtime: mt, Length: length,
		Name: a.name, Uid: a.uid, Gid: a.gid, Muid: a.uid}
}

// Wstat changes what d asks, all checks first: mode and mtime by the
// owner, gid by the owner or the group's leader (the user of the group's
// name), name through the parent's rename hook, length through the
// handler's Truncate. Fields equal to the current values change nothing;
// uid and muid cannot be changed (muid is ignored, as v9fs sends one).
func (f *fid) Wstat(ctx context.Context, d styx.Dir) error {
	ctx = f.ctx(ctx)
	b := f.n.base()
	a := b.attrs(f.srv)
	owner := f.user == a.uid

	if d.Uid != "" && d.Uid != a.uid {
		return plan9.ErrPerm
	}
	newMode := a.mode
	if d.Mode != ^uint32(0) {
		newMode = a.mode&styx.DMDIR | d.Mode&modeBits
	}
	if newMode != a.mode && !owner {
		return plan9.ErrPerm
	}
	setMtime := d.Mtime != ^uint32(0) && d.Mtime != uint32(a.mtime.Unix())
	if setMtime && !owner {
		return plan9.ErrPerm
	}
	setGid := d.Gid != "" && d.Gid != a.gid
	if setGid && !owner && f.user != a.gid {
		return plan9.ErrPerm
	}

	var rename func(context.Context, string, string) error
	if d.Name != "" && d.Name != a.name {
		var err error
		if rename, err = f.renameHook(ctx, a, d.Name); err != nil {
			return err
		}
	}

	var trunc truncater
	if d.Length != ^uint64(0) {
		var err error
		if trunc, err = f.truncater(ctx, a, d.Length); err != nil {
			return err
		}
	}

	if trunc != nil {
		if err := trunc.Truncate(ctx, int64(d.Length)); err != nil {
			return err
		}
		b.touch()
	}
	if rename != nil {
		if err := rename(ctx, a.name, d.Name); err != nil {
			return err
		}
		a.parent.renameChild(f.n, a.name, d.Name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mode = newMode
	if setMtime {
		b.mtime = time.Unix(int64(d.Mtime), 0)
	}
	if setGid {
		b.gid = d.Gid
	}
	return nil
}

// renameHook checks that f's node, whose attributes are a, may be renamed
// to name, and returns the parent's rename hook.
func (f *fid) renameHook(ctx context.Context, a attrs, name string) (func(context.Context, string, string) error, error) {
	if !validName(name) {
		return nil, plan9.ErrBadName
	}
	p, err := f.writableParent(a)
	if err != nil {
		return nil, err
	}
	_, _, rename := p.hooks()
	if rename == nil {
		return nil, plan9.ErrWstat
	}
	if _, err := p.lookup(ctx, name); err == nil {
		return nil, plan9.ErrExist
	}
	return rename, nil
}

// truncater checks that f's node, whose attributes are a, may be given
// length size. It returns the Truncate to call, or nil when there is
// nothing to do.
func (f *fid) truncater(ctx context.Context, a attrs, size uint64) (truncater, error) {
	file, ok := f.n.(*File)
	if !ok {
		if size == 0 {
			return nil, nil
		}
		return nil, plan9.ErrPerm
	}
	t, ok := file.h.(truncater)
	if !ok {
		if l, ok := file.h.(lengther); ok && uint64(max(0, l.Length(ctx))) == size {
			return nil, nil
		}
		return nil, plan9.ErrPerm
	}
	if int64(size) < 0 || !allowedAttrs(f.srv, a, f.user, styx.OWRITE) {
		return nil, plan9.ErrPerm
	}
	return t, nil
}

// Remove removes the node through its parent's remove hook.
func (f *fid) Remove(ctx context.Context) error {
	ctx = f.ctx(ctx)
	a := f.n.base().attrs(f.srv)
	remove, err := f.removeHook(a)
	if err != nil {
		return err
	}
	if err := remove(ctx, a.name); err != nil {
		return err
	}
	a.parent.removeNode(f.n)
	return nil
}

// Clunk closes the open file, if any; the handle's error is the reply.
func (f *fid) Clunk() error {
	var err error
	if f.h != nil {
		err = f.h.Close(withReq(context.Background(), f.srv, f.user))
		f.h = nil
	}
	f.releaseExcl()
	return err
}

func writeMode(mode uint8) bool { m := mode & 3; return m == styx.OWRITE || m == styx.ORDWR }
func readMode(mode uint8) bool  { return mode&3 != styx.OWRITE }
