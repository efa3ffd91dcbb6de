package fusemount

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
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
	attrWait     func()  // Options.attrWait
	ra           *raPool // readahead buffers (readahead.go)

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
	}
	h.ra = newReadAhead(n.fsys.ra, &n.st.gen)
	if n.st.keepCache(d) {
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

// renameNoreplace is RENAME_NOREPLACE of renameat2(2).
const renameNoreplace = 0x1
