package fusemount

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cheshire/styx"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fsys is the state shared by the nodes of one mount.
type fsys struct {
	c            *styx.Client
	uid, gid     uint32
	attrTimeout  time.Duration
	entryTimeout time.Duration
	blksize      uint32
	log          *slog.Logger
	attrWait     func() // Options.attrWait

	// nodes holds the live nodes by identity (the key the bridge
	// deduplicates on), so that a lookup of a known file returns its
	// node rather than a new one the bridge would throw away.
	mu    sync.Mutex
	nodes map[fs.StableAttr]*node
}

// A node is a file or directory of the server. It keeps one unopened fid
// for the file, walked when first needed and clunked when the kernel
// forgets the node; open files walk their own clone of it.
type node struct {
	fs.Inode
	fsys   *fsys
	key    fs.StableAttr
	isRoot bool
	st     *nodeState
}

// nodeState is the mutable part of a node. It is separate so that a
// cleanup attached to the node can release the fid without keeping the
// node alive.
type nodeState struct {
	// rd is held shared by each cached read in flight and exclusively
	// while attributes of the node are put in a reply. The kernel shrinks
	// a file to a short read's end only if no attributes of it arrived
	// while the read was in flight; otherwise it pads the read with NUL
	// bytes up to the length it was told (see handle.Read).
	rd sync.RWMutex

	mu  sync.Mutex
	ref *fidRef // nil: walk from the parent when next needed

	seen bool   // vers is set
	vers uint32 // qid.vers at the last stat

	// The page cache is valid for this version of the file.
	cacheOK    bool
	cacheVers  uint32
	cacheLen   uint64
	cacheMtime uint32

	// The file read short of its stat length at this version: it is
	// synthetic, and opens of it use direct I/O.
	short     bool
	shortVers uint32

	// 9P2000 has no ctime and no link count: ctime is the last time
	// this mount changed the file's metadata (zero: never), and
	// unlinked is set once this mount has removed the file (cleared if
	// a name leads to it again).
	ctime    time.Time
	unlinked bool
}

// touchCtime records a change of the file's metadata made now.
func (s *nodeState) touchCtime() {
	s.mu.Lock()
	s.ctime = time.Now()
	s.mu.Unlock()
}

// setUnlinked records whether the file has lost its name.
func (s *nodeState) setUnlinked(u bool) {
	s.mu.Lock()
	s.unlinked = u
	if u {
		s.ctime = time.Now()
	}
	s.mu.Unlock()
}

// meta returns the recorded ctime and whether the file was unlinked.
func (s *nodeState) meta() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctime, s.unlinked
}

// A fidRef counts the users of a node's fid: the node itself and each
// request using it. The fid is clunked when the count drops to zero.
type fidRef struct {
	fid  *styx.Fid
	refs atomic.Int32
}

func newFidRef(f *styx.Fid) *fidRef {
	r := &fidRef{fid: f}
	r.refs.Store(1)
	return r
}

func (r *fidRef) put() {
	if r.refs.Add(-1) == 0 {
		clunk(r.fid)
	}
}

// clunk clunks f in the background: clunks never fail in a way that
// matters to the caller, and must not block FORGET or a reply.
func clunk(f *styx.Fid) {
	go f.Clunk(context.Background())
}

// acquire returns the node's fid with a reference for the caller, or nil.
func (s *nodeState) acquire() *fidRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ref != nil {
		s.ref.refs.Add(1)
	}
	return s.ref
}

// set makes f the node's fid, dropping the one it had.
func (s *nodeState) set(f *styx.Fid) {
	s.mu.Lock()
	old := s.ref
	s.ref = newFidRef(f)
	s.mu.Unlock()
	if old != nil {
		old.put()
	}
}

// drop forgets the node's fid if it is still r.
func (s *nodeState) drop(r *fidRef) {
	s.mu.Lock()
	if s.ref != r {
		s.mu.Unlock()
		return
	}
	s.ref = nil
	s.mu.Unlock()
	r.put()
}

// release forgets the node's fid.
func (s *nodeState) release() {
	s.mu.Lock()
	old := s.ref
	s.ref = nil
	s.mu.Unlock()
	if old != nil {
		old.put()
	}
}

// observe records the version of d and reports whether it changed since
// the previous observation.
func (s *nodeState) observe(d *styx.Dir) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = s.seen && s.vers != d.Qid.Vers
	s.seen = true
	s.vers = d.Qid.Vers
	return changed
}

// keepCache reports whether the page cache, if any, still holds the file
// described by d, and records d as the version the cache now holds.
func (s *nodeState) keepCache(d *styx.Dir) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.cacheOK && s.cacheVers == d.Qid.Vers && s.cacheLen == d.Length && s.cacheMtime == d.Mtime
	s.cacheOK, s.cacheVers, s.cacheLen, s.cacheMtime = true, d.Qid.Vers, d.Length, d.Mtime
	return keep
}

// readShort records that the file, at version vers, ended before its
// stat length.
func (s *nodeState) readShort(vers uint32) {
	s.mu.Lock()
	s.short, s.shortVers = true, vers
	s.mu.Unlock()
}

// isShort reports whether the file at version vers is known to end before
// its stat length.
func (s *nodeState) isShort(vers uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.short && s.shortVers == vers
}

func (s *nodeState) invalidateCache() {
	s.mu.Lock()
	s.cacheOK = false
	s.mu.Unlock()
}

// newNode makes a node for key; fid, if not nil, becomes its fid.
func (f *fsys) newNode(key fs.StableAttr, fid *styx.Fid) *node {
	n := &node{fsys: f, key: key, st: &nodeState{}}
	if fid != nil {
		n.st.ref = newFidRef(fid)
	}
	// A node the bridge discards (it already had one for the file) is
	// never forgotten: clunk its fid when it is collected.
	runtime.AddCleanup(n, func(s *nodeState) { s.release() }, n.st)
	return n
}

// nodeFor returns the inode for the file d in the directory parent,
// reusing the live node for the file if there is one. fid, if not nil, is
// a fresh unopened fid for the file and becomes the node's. It returns
// nil if d is parent itself (a server loop).
func (f *fsys) nodeFor(ctx context.Context, parent *node, d *styx.Dir, fid *styx.Fid) *fs.Inode {
	key := stableAttr(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.nodes[key]; n != nil {
		if n == parent {
			if fid != nil {
				clunk(fid)
			}
			return nil
		}
		if fid != nil {
			n.st.set(fid)
		}
		n.st.setUnlinked(false) // reached by a name
		return n.EmbeddedInode()
	}
	n := f.newNode(key, fid)
	f.nodes[key] = n
	return parent.NewInode(ctx, n, key)
}

var (
	_ fs.InodeEmbedder      = (*node)(nil)
	_ fs.NodeOnForgetter    = (*node)(nil)
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
)

// OnForget drops the node's fid once the kernel has forgotten the node.
func (n *node) OnForget() {
	if n.isRoot {
		return
	}
	f := n.fsys
	f.mu.Lock()
	if f.nodes[n.key] == n {
		delete(f.nodes, n.key)
	}
	f.mu.Unlock()
	n.st.release()
}

// ref returns the node's fid, walking it from the parent's if the node
// has none, with a reference the caller must put.
func (n *node) ref(ctx context.Context) (*fidRef, syscall.Errno) {
	if r := n.st.acquire(); r != nil {
		return r, 0
	}
	name, parent := n.Parent()
	if parent == nil {
		return nil, syscall.ESTALE
	}
	pn, ok := parent.Operations().(*node)
	if !ok {
		return nil, syscall.ESTALE
	}
	pr, errno := pn.ref(ctx)
	if errno != 0 {
		return nil, errno
	}
	qids, fid, err := pr.fid.Walk(ctx, name)
	pr.put()
	if err != nil {
		return nil, toErrno(err)
	}
	if len(qids) != 1 || stableAttrOf(qids[0]) != n.key {
		// The name now refers to another file.
		clunk(fid)
		return nil, syscall.ESTALE
	}
	n.st.mu.Lock()
	if n.st.ref == nil {
		n.st.ref = newFidRef(fid)
		fid = nil
	}
	r := n.st.ref
	r.refs.Add(1)
	n.st.mu.Unlock()
	if fid != nil {
		clunk(fid)
	}
	return r, 0
}

// stat returns the node's directory entry, through the open file fh if
// it is one of ours.
func (n *node) stat(ctx context.Context, fh fs.FileHandle) (styx.Dir, syscall.Errno) {
	if h, ok := fh.(*handle); ok {
		h.mu.RLock()
		defer h.mu.RUnlock()
		if h.fid != nil {
			d, err := h.fid.Stat(ctx)
			return d, toErrno(err)
		}
	}
	for try := 0; ; try++ {
		r, errno := n.ref(ctx)
		if errno != 0 {
			return styx.Dir{}, errno
		}
		d, err := r.fid.Stat(ctx)
		if err == nil || ctx.Err() != nil || try > 0 || n.isRoot {
			r.put()
			return d, toErrno(err)
		}
		// The fid may have gone stale (the file was removed, or the
		// server restarted it): walk a new one from the parent once.
		n.st.drop(r)
		r.put()
	}
}

// Getattr stats the file.
func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.lockAttrs(n.st)
	defer n.st.rd.Unlock()
	d, errno := n.stat(ctx, fh)
	if errno != 0 {
		return errno
	}
	n.fillAttrOut(out, &d)
	return 0
}

func (n *node) fillAttrOut(out *fuse.AttrOut, d *styx.Dir) {
	n.fsys.fillAttr(&out.Attr, d, n.st)
	changed := n.st.observe(d)
	out.SetTimeout(n.fsys.attrTimeoutFor(d, changed))
}

// lockAttrs waits for the cached reads of s in flight and keeps others
// from starting until s.rd is unlocked.
func (f *fsys) lockAttrs(s *nodeState) {
	if s.rd.TryLock() {
		return
	}
	if f.attrWait != nil {
		f.attrWait()
	}
	s.rd.Lock()
}

// fillEntry fills out for the child c described by d.
func (f *fsys) fillEntry(c *fs.Inode, out *fuse.EntryOut, d *styx.Dir) {
	changed := false
	cn, ok := c.Operations().(*node)
	if ok {
		f.fillAttr(&out.Attr, d, cn.st)
	} else {
		f.fillAttr(&out.Attr, d, nil)
	}
	if ok {
		f.lockAttrs(cn.st)
		defer cn.st.rd.Unlock()
		changed = cn.st.observe(d)
	}
	out.SetEntryTimeout(f.entryTimeout)
	out.SetAttrTimeout(f.attrTimeoutFor(d, changed))
}

// Lookup walks to name.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r, errno := n.ref(ctx)
	if errno != 0 {
		return nil, errno
	}
	_, fid, err := r.fid.Walk(ctx, name)
	r.put()
	if err != nil {
		return nil, toErrno(err)
	}
	d, err := fid.Stat(ctx)
	if err != nil {
		clunk(fid)
		return nil, toErrno(err)
	}
	c := n.fsys.nodeFor(ctx, n, &d, fid)
	if c == nil {
		return nil, syscall.EIO
	}
	n.fsys.fillEntry(c, out, &d)
	return c, 0
}

// openMode maps open(2) flags to a 9P open mode.
func openMode(flags uint32) uint8 {
	var m uint8
	switch flags & syscall.O_ACCMODE {
	case syscall.O_WRONLY:
		m = styx.OWRITE
	case syscall.O_RDWR:
		m = styx.ORDWR
	default:
		m = styx.OREAD
	}
	if flags&syscall.O_TRUNC != 0 {
		m |= styx.OTRUNC
	}
	return m
}

// Open opens a clone of the node's fid.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	r, errno := n.ref(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	_, fid, err := r.fid.Walk(ctx)
	r.put()
	if err != nil {
		return nil, 0, toErrno(err)
	}
	if err := fid.Open(ctx, openMode(flags)); err != nil {
		clunk(fid)
		return nil, 0, toErrno(err)
	}
	h, fuseFlags := n.newHandle(ctx, fid, flags, nil)
	return h, fuseFlags, 0
}

// newHandle makes the handle of the open fid and chooses how the kernel
// caches its data. d is the file's stat if known.
func (n *node) newHandle(ctx context.Context, fid *styx.Fid, flags uint32, d *styx.Dir) (*handle, uint32) {
	h := &handle{n: n, fid: fid, append: flags&syscall.O_APPEND != 0, mode: openMode(flags) &^ (styx.OTRUNC | styx.ORCLOSE)}
	var err error
	if d == nil {
		d = new(styx.Dir)
		*d, err = fid.Stat(ctx)
	}
	h.vers, h.length = d.Qid.Vers, d.Length
	switch {
	case err != nil || d.Length == 0 || h.append || d.Mode&styx.DMAPPEND != 0 || n.st.isShort(d.Qid.Vers):
		// Synthetic (or empty) file, one that read short of its
		// length, an append-only file such as an event file, or
		// writes whose offset we choose: no page cache.
		h.direct = true
		n.st.invalidateCache()
		return h, fuse.FOPEN_DIRECT_IO
	case n.st.keepCache(d):
		return h, fuse.FOPEN_KEEP_CACHE
	}
	return h, 0
}

// Create creates name and opens it.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	r, errno := n.ref(ctx)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer r.put()
	_, fid, err := r.fid.Walk(ctx)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	if err := fid.Create(ctx, name, mode&0777, openMode(flags)); err != nil {
		clunk(fid)
		errno := toErrno(err)
		if errno == syscall.EEXIST && flags&syscall.O_EXCL == 0 {
			// Created by someone else since the kernel looked: open it.
			return n.openExisting(ctx, r, name, flags, out)
		}
		return nil, nil, 0, errno
	}
	d, err := fid.Stat(ctx)
	if err != nil {
		now := uint32(time.Now().Unix())
		d = styx.Dir{Qid: fid.Qid(), Mode: mode & 0777, Atime: now, Mtime: now, Name: name}
	}
	return n.openedChild(ctx, fid, flags, &d, out)
}

// openedChild makes the inode of the child of n that the open fid refers
// to (with stat d) and its file handle; on failure it clunks fid.
func (n *node) openedChild(ctx context.Context, fid *styx.Fid, flags uint32, d *styx.Dir, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	c := n.fsys.nodeFor(ctx, n, d, nil)
	if c == nil {
		clunk(fid)
		return nil, nil, 0, syscall.EIO
	}
	n.fsys.fillEntry(c, out, d)
	cn := c.Operations().(*node)
	h, fuseFlags := cn.newHandle(ctx, fid, flags, d)
	return c, h, fuseFlags, 0
}

func (n *node) openExisting(ctx context.Context, r *fidRef, name string, flags uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	_, fid, err := r.fid.Walk(ctx, name)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	d, err := fid.Stat(ctx)
	if err != nil {
		clunk(fid)
		return nil, nil, 0, toErrno(err)
	}
	if isDir(&d) {
		clunk(fid)
		return nil, nil, 0, syscall.EISDIR
	}
	if err := fid.Open(ctx, openMode(flags)); err != nil {
		clunk(fid)
		return nil, nil, 0, toErrno(err)
	}
	return n.openedChild(ctx, fid, flags, &d, out)
}

// Mkdir creates the directory name.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r, errno := n.ref(ctx)
	if errno != 0 {
		return nil, errno
	}
	_, fid, err := r.fid.Walk(ctx)
	r.put()
	if err != nil {
		return nil, toErrno(err)
	}
	if err := fid.Create(ctx, name, styx.DMDIR|mode&0777, styx.OREAD); err != nil {
		clunk(fid)
		return nil, toErrno(err)
	}
	d, err := fid.Stat(ctx)
	if err != nil {
		now := uint32(time.Now().Unix())
		d = styx.Dir{Qid: fid.Qid(), Mode: styx.DMDIR | mode&0777, Atime: now, Mtime: now, Name: name}
	}
	clunk(fid)
	if !isDir(&d) {
		return nil, syscall.EIO
	}
	c := n.fsys.nodeFor(ctx, n, &d, nil)
	if c == nil {
		return nil, syscall.EIO
	}
	n.fsys.fillEntry(c, out, &d)
	return c, 0
}

// Unlink removes the file name.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name)
}

// Rmdir removes the directory name.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name)
}

func (n *node) remove(ctx context.Context, name string) syscall.Errno {
	r, errno := n.ref(ctx)
	if errno != 0 {
		return errno
	}
	_, fid, err := r.fid.Walk(ctx, name)
	r.put()
	if err != nil {
		return toErrno(err)
	}
	if err := fid.Remove(ctx); err != nil { // clunks fid, even on error
		return toErrno(err)
	}
	if c := n.GetChild(name); c != nil {
		if cn, ok := c.Operations().(*node); ok {
			cn.st.setUnlinked(true)
		}
	}
	return 0
}

// renameNoreplace is RENAME_NOREPLACE of renameat2(2).
const renameNoreplace = 0x1

// Rename renames name to newName within the directory, replacing a
// newName that exists as rename(2) does. 9P2000 renames only within a
// directory (Twstat of the name), so a move to another directory fails
// with EXDEV, which mv(1) answers by copying and removing.
//
// Replacing is not atomic: the old newName is first renamed out of the
// way, then name is renamed, then the old file is removed; if the second
// step fails the first is undone, so nothing is lost.
//
// A renamed file's ctime moves (see fillAttr).
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	errno := n.rename(ctx, name, newParent, newName, flags)
	if errno == 0 {
		if c := n.GetChild(name); c != nil {
			if cn, ok := c.Operations().(*node); ok {
				cn.st.touchCtime()
			}
		}
	}
	return errno
}

func (n *node) rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if newParent.EmbeddedInode() != n.EmbeddedInode() {
		return syscall.EXDEV
	}
	if flags&^renameNoreplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	if name == newName {
		return 0
	}
	r, errno := n.ref(ctx)
	if errno != 0 {
		return errno
	}
	defer r.put()
	_, src, err := r.fid.Walk(ctx, name)
	if err != nil {
		return toErrno(err)
	}
	defer clunk(src)
	_, dst, err := r.fid.Walk(ctx, newName)
	if err != nil {
		if errno := toErrno(err); errno != syscall.ENOENT {
			return errno
		}
		return toErrno(wstatName(ctx, src, newName))
	}
	removed := false
	defer func() {
		if !removed {
			clunk(dst)
		}
	}()
	if flags&renameNoreplace != 0 {
		return syscall.EEXIST
	}
	sq, dq := src.Qid(), dst.Qid()
	if sq.Path == dq.Path && sq.Type == dq.Type {
		return 0 // the same file
	}
	sdir, ddir := sq.Type&styx.QTDIR != 0, dq.Type&styx.QTDIR != 0
	switch {
	case sdir && !ddir:
		return syscall.ENOTDIR
	case !sdir && ddir:
		return syscall.EISDIR
	case ddir:
		empty, err := isEmptyDir(ctx, dst)
		if err != nil {
			return toErrno(err)
		}
		if !empty {
			return syscall.ENOTEMPTY
		}
	}
	tmp := tempName()
	if err := wstatName(ctx, dst, tmp); err != nil {
		return toErrno(err)
	}
	if err := wstatName(ctx, src, newName); err != nil {
		if err2 := wstatName(context.WithoutCancel(ctx), dst, newName); err2 != nil {
			n.fsys.log.Warn("fusemount: rename: cannot restore replaced file", "name", tmp, "to", newName, "err", err2)
		}
		return toErrno(err)
	}
	removed = true
	if err := dst.Remove(context.WithoutCancel(ctx)); err != nil {
		n.fsys.log.Warn("fusemount: rename: cannot remove replaced file", "name", tmp, "err", err)
	}
	return 0
}

func wstatName(ctx context.Context, fid *styx.Fid, name string) error {
	d := styx.NullDir()
	d.Name = name
	return fid.Wstat(ctx, d)
}

func tempName() string {
	var b [6]byte
	rand.Read(b[:])
	return ".cheshire-rename-" + hex.EncodeToString(b[:])
}

func isEmptyDir(ctx context.Context, dir *styx.Fid) (bool, error) {
	_, fid, err := dir.Walk(ctx)
	if err != nil {
		return false, err
	}
	defer clunk(fid)
	if err := fid.Open(ctx, styx.OREAD); err != nil {
		return false, err
	}
	b := make([]byte, 8192)
	n, err := fid.ReadOnce(ctx, b, 0)
	return n == 0, err
}

// Setattr changes the length, permissions, mtime and atime with one
// Twstat, in whole seconds (9P2000's unit). 9P2000 has neither numeric
// owners nor setuid, setgid or sticky bits: a change of owner or group
// to other than the mounting user's (the owner every file shows), and a
// mode with any of those bits, fail with EPERM and change nothing. A
// successful change moves the ctime this mount reports.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if uid, ok := in.GetUID(); ok && uid != n.fsys.uid {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != n.fsys.gid {
		return syscall.EPERM
	}
	if mode, ok := in.GetMode(); ok && mode&^0777 != 0 {
		return syscall.EPERM
	}
	var fid *styx.Fid
	if h, ok := fh.(*handle); ok {
		h.mu.RLock()
		defer h.mu.RUnlock()
		fid = h.fid
	}
	if fid == nil {
		r, errno := n.ref(ctx)
		if errno != 0 {
			return errno
		}
		defer r.put()
		fid = r.fid
	}
	d, err := fid.Stat(ctx)
	if err != nil {
		return toErrno(err)
	}
	w := styx.NullDir()
	change, resize := false, false
	if size, ok := in.GetSize(); ok && size != d.Length {
		w.Length = size
		change, resize = true, true
	}
	if mode, ok := in.GetMode(); ok && mode&0777 != d.Mode&0777 {
		w.Mode = d.Mode&^0777 | mode&0777
		change = true
	}
	if mtime, ok := in.GetMTime(); ok && uint32(mtime.Unix()) != d.Mtime {
		w.Mtime = uint32(mtime.Unix())
		change = true
	}
	if atime, ok := in.GetATime(); ok && uint32(atime.Unix()) != d.Atime {
		w.Atime = uint32(atime.Unix())
		change = true
	}
	if change {
		if err := fid.Wstat(ctx, w); err != nil {
			return toErrno(err)
		}
		if resize {
			n.st.invalidateCache()
		}
		if d, err = fid.Stat(ctx); err != nil {
			return toErrno(err)
		}
	}
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_SIZE|fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		n.st.touchCtime()
	}
	n.fillAttrOut(out, &d)
	return 0
}

// Symlink fails: 9P2000 has no symbolic links. EPERM is what POSIX
// gives for a file system that does not support them.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Link fails: 9P2000 has no hard links.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Mknod makes regular files only (as create does); 9P2000 has no device
// files, FIFOs or sockets, so others fail with EPERM, as POSIX says for a
// file system that does not support the type.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, syscall.EPERM
	}
	c, fh, _, errno := n.Create(ctx, name, syscall.O_RDONLY|syscall.O_EXCL, mode&0777, out)
	if errno != 0 {
		return nil, errno
	}
	if h, ok := fh.(*handle); ok {
		h.Release(ctx)
	}
	return c, 0
}

// Statfs reports an empty file system: 9P does not tell sizes.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{Bsize: n.fsys.blksize, Frsize: n.fsys.blksize, NameLen: 255}
	return 0
}

// isDir reports whether d is a directory.
func isDir(d *styx.Dir) bool {
	return d.Mode&styx.DMDIR != 0 || d.Qid.Type&styx.QTDIR != 0
}

// ino is the inode number of the file with qid.path p.
func ino(p uint64) uint64 {
	i := p + 1
	if i == 0 || i == ^uint64(0) { // reserved by go-fuse
		i ^= 1 << 62
	}
	return i
}

func stableAttr(d *styx.Dir) fs.StableAttr {
	if isDir(d) {
		return fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino(d.Qid.Path)}
	}
	return fs.StableAttr{Mode: syscall.S_IFREG, Ino: ino(d.Qid.Path)}
}

func stableAttrOf(q styx.Qid) fs.StableAttr {
	return stableAttr(&styx.Dir{Qid: q})
}

// fillAttr fills a from d and, if not nil, the state st of its node.
// ctime is the mtime, or the time this mount last changed the file's
// metadata if that is later. Directories have one link (the convention
// for "the count of subdirectories is unknown"), files one, and a file
// this mount has removed none.
func (f *fsys) fillAttr(a *fuse.Attr, d *styx.Dir, st *nodeState) {
	key := stableAttr(d)
	*a = fuse.Attr{
		Ino:     key.Ino,
		Size:    d.Length,
		Blocks:  (d.Length + 511) / 512,
		Atime:   uint64(d.Atime),
		Mtime:   uint64(d.Mtime),
		Ctime:   uint64(d.Mtime),
		Mode:    key.Mode | d.Mode&0777,
		Nlink:   1,
		Owner:   fuse.Owner{Uid: f.uid, Gid: f.gid},
		Blksize: f.blksize,
	}
	if st == nil {
		return
	}
	ct, unlinked := st.meta()
	if ct.Unix() >= int64(d.Mtime) {
		a.Ctime, a.Ctimensec = uint64(ct.Unix()), uint32(ct.Nanosecond())
	}
	if unlinked {
		a.Nlink = 0
	}
}

// attrTimeoutFor is how long the kernel may trust the attributes d of a
// file whose version changed (or not) since last seen: not at all for
// files that change under us or whose length means nothing.
func (f *fsys) attrTimeoutFor(d *styx.Dir, changed bool) time.Duration {
	if changed || !isDir(d) && d.Length == 0 {
		return 0
	}
	return f.attrTimeout
}
