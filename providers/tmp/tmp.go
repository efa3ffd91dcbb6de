// Package tmp serves an in-memory file system, mounted at /tmp: files and
// directories that users create, read, write, truncate, rename and remove,
// with Plan 9 permission checks. Its contents do not survive a restart.
package tmp

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// DefaultMaxBytes bounds the data held by an FS made with New.
const DefaultMaxBytes = 4 << 30

// MaxName is the longest file name, in bytes, as on Linux (NAME_MAX).
const MaxName = 255

// ErrNameTooLong is the error for a name longer than MaxName: the C
// library's text for ENAMETOOLONG, which plan9.Errno and the Linux 9P
// client map back to it.
const ErrNameTooLong plan9.Error = "File name too long"

// FS is an in-memory file tree; it implements styx.Attacher.
type FS struct {
	mu       sync.RWMutex
	root     *node
	nextPath uint64 // guarded by mu
	used     int64  // guarded by mu: bytes of file data held
	maxBytes int64
	now      func() time.Time
}

type node struct {
	name     string
	parent   *node // root's parent is itself
	qid      styx.Qid
	mode     uint32
	uid, gid string
	muid     string
	mtime    uint32
	atime    uint32
	data     fileData
	children map[string]*node
	// sorted holds the children in the order of their names, made by
	// the first listing after a change (nil: to be made); a listing of
	// a large directory sorted it every time (20% of the CPU of listing
	// 10,000), and then looked each name up again.
	sorted  atomic.Pointer[[]*node]
	removed bool
	opens   int // fids open on the node; a removed node keeps its data while any are
}

// Option configures New.
type Option func(*FS)

// WithMaxBytes bounds the file data held (ENOSPC beyond).
func WithMaxBytes(n int64) Option { return func(f *FS) { f.maxBytes = n } }

// WithClock sets the clock used for modification times.
func WithClock(now func() time.Time) Option { return func(f *FS) { f.now = now } }

// New returns an empty tree whose root is owned by owner, mode 0777 with
// the sticky-less Plan 9 semantics (anyone may create in it).
func New(owner string, opts ...Option) *FS {
	fs := &FS{maxBytes: DefaultMaxBytes, now: time.Now}
	for _, o := range opts {
		o(fs)
	}
	t := uint32(fs.now().Unix())
	fs.root = &node{name: "/", qid: styx.Qid{Type: styx.QTDIR, Path: 0}, mode: styx.DMDIR | 0777,
		uid: owner, gid: owner, muid: owner, mtime: t, atime: t, children: map[string]*node{}}
	fs.root.parent = fs.root
	fs.nextPath = 1
	return fs
}

// Attach implements styx.Attacher.
func (fs *FS) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return &file{fs: fs, n: fs.root, user: uname}, nil
}

func member(user, group string) bool { return user == group }

// release drops the data of a removed node once no fid is open on it.
func (fs *FS) release(n *node) {
	if n.removed && n.opens == 0 {
		fs.used -= n.data.size
		n.data = fileData{}
	}
}

func (fs *FS) allowed(n *node, user string, want uint8) bool {
	return plan9.Allowed(n.mode, n.uid, n.gid, user, member, want)
}

func (n *node) dir(now uint32) styx.Dir {
	d := styx.Dir{Qid: n.qid, Mode: n.mode, Atime: n.atime, Mtime: n.mtime, Name: n.name,
		Uid: n.uid, Gid: n.gid, Muid: n.muid}
	if n.mode&styx.DMDIR == 0 {
		d.Length = uint64(n.data.size)
	}
	return d
}

// file is one fid's view of a node.
type file struct {
	fs   *FS
	n    *node
	user string
	mode uint8
	open bool // counted in n.opens
}

var _ styx.File = (*file)(nil)

// Inline implements styx.Inline: everything is in memory.
func (f *file) Inline() bool { return true }

func (f *file) Qid() styx.Qid {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	return f.n.qid
}

func (f *file) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	fs := f.fs
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n := f.n
	qids := make([]styx.Qid, 0, len(names))
	for _, name := range names {
		if n.mode&styx.DMDIR == 0 {
			return qids, nil, plan9.ErrNotDir
		}
		if !fs.allowed(n, f.user, plan9.OEXEC) {
			return qids, nil, plan9.ErrPerm
		}
		var next *node
		if len(name) > MaxName {
			return qids, nil, ErrNameTooLong
		}
		if name == ".." {
			next = n.parent
		} else if next = n.children[name]; next == nil {
			return qids, nil, plan9.ErrNotFound
		}
		n = next
		qids = append(qids, n.qid)
	}
	return qids, &file{fs: fs, n: n, user: f.user}, nil
}

func (f *file) Open(ctx context.Context, mode uint8) (uint32, error) {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := f.n
	if n.removed {
		return 0, plan9.ErrNotFound
	}
	want := mode & 3
	if mode&plan9.OTRUNC != 0 && want == plan9.OREAD {
		want = plan9.OWRITE
	}
	if !fs.allowed(n, f.user, want) {
		return 0, plan9.ErrPerm
	}
	if mode&plan9.ORCLOSE != 0 && !fs.allowed(n.parent, f.user, plan9.OWRITE) {
		return 0, plan9.ErrPerm
	}
	if mode&plan9.OTRUNC != 0 && n.mode&(styx.DMDIR|styx.DMAPPEND) == 0 {
		fs.used -= n.data.size
		n.data = fileData{}
		n.touch(uint32(fs.now().Unix()), f.user)
	}
	f.mode = mode
	f.open = true
	n.opens++
	return 0, nil
}

func (n *node) touch(t uint32, user string) {
	n.mtime = t
	n.muid = user
	n.qid.Vers++
}

func (f *file) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := f.n
	if d.removed {
		return nil, 0, plan9.ErrNotFound
	}
	if !fs.allowed(d, f.user, plan9.OWRITE) {
		return nil, 0, plan9.ErrPerm
	}
	if len(name) > MaxName {
		return nil, 0, ErrNameTooLong
	}
	if _, ok := d.children[name]; ok {
		return nil, 0, plan9.ErrExist
	}
	if perm&(styx.DMAUTH|styx.DMMOUNT) != 0 {
		return nil, 0, plan9.ErrCreate
	}
	t := uint32(fs.now().Unix())
	n := &node{name: name, parent: d, uid: f.user, gid: d.gid, muid: f.user, mtime: t, atime: t, opens: 1}
	if perm&styx.DMDIR != 0 {
		if mode&3 != plan9.OREAD || mode&plan9.OTRUNC != 0 {
			return nil, 0, plan9.ErrIsDir
		}
		n.mode = perm&^0777 | perm&(d.mode&0777)
		n.children = map[string]*node{}
		n.qid.Type = styx.QTDIR
	} else {
		n.mode = perm&^0777 | perm&(^uint32(0666)|d.mode&0666)
		n.qid.Type = qidType(n.mode)
	}
	n.qid.Path = fs.nextPath
	fs.nextPath++
	d.children[name] = n
	d.sorted.Store(nil)
	d.touch(t, f.user)
	return &file{fs: fs, n: n, user: f.user, mode: mode, open: true}, 0, nil
}

func qidType(mode uint32) uint8 {
	t := styx.QTFILE
	if mode&styx.DMDIR != 0 {
		t |= styx.QTDIR
	}
	if mode&styx.DMAPPEND != 0 {
		t |= styx.QTAPPEND
	}
	if mode&styx.DMEXCL != 0 {
		t |= styx.QTEXCL
	}
	return t
}

func (f *file) Read(ctx context.Context, p []byte, off int64) (int, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	return f.n.data.readAt(p, off), nil
}

func (f *file) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	kids := f.n.sorted.Load()
	if kids == nil { // readers may race to make it: each makes the same
		ks := slices.SortedFunc(maps.Values(f.n.children), func(a, b *node) int { return strings.Compare(a.name, b.name) })
		kids = &ks
		f.n.sorted.Store(kids)
	}
	ds := make([]styx.Dir, len(*kids))
	for i, k := range *kids {
		ds[i] = k.dir(0)
	}
	return ds, nil
}

func (f *file) Write(ctx context.Context, p []byte, off int64) (int, error) {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := f.n
	if n.mode&styx.DMAPPEND != 0 {
		off = n.data.size
	}
	end := off + int64(len(p))
	if end > fs.maxBytes || end < off {
		return 0, plan9.ErrTooBig
	}
	if grow := end - n.data.size; grow > 0 {
		if fs.used+grow > fs.maxBytes {
			return 0, plan9.ErrNoSpace
		}
		fs.used += grow
	}
	n.data.writeAt(p, off)
	n.touch(uint32(fs.now().Unix()), f.user)
	return len(p), nil
}

func (f *file) Stat(ctx context.Context) (styx.Dir, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	return f.n.dir(0), nil
}

// Wstat implements rename (same directory), truncate, chmod, chgrp,
// mtime and atime. Don't-touch values are ignored, and so is muid (Linux
// v9fs sets it on rename); styx has refused changes to type, dev, qid
// and the DMDIR bit. All checks pass before anything changes. A
// removed file can still be changed through a fid open on it, but not
// renamed.
func (f *file) Wstat(ctx context.Context, d styx.Dir) error {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := f.n
	if n.removed && !f.open {
		return plan9.ErrNotFound
	}
	owner := f.user == n.uid
	if d.Uid != "" && d.Uid != n.uid {
		return plan9.ErrPerm
	}
	rename := d.Name != "" && d.Name != n.name
	if rename {
		if n == fs.root {
			return plan9.ErrPerm
		}
		if n.removed {
			return plan9.ErrNotFound
		}
		if len(d.Name) > MaxName {
			return ErrNameTooLong
		}
		if !fs.allowed(n.parent, f.user, plan9.OWRITE) {
			return plan9.ErrPerm
		}
		if _, ok := n.parent.children[d.Name]; ok {
			return plan9.ErrExist
		}
	}
	if d.Length != ^uint64(0) && d.Length > uint64(fs.maxBytes) {
		return plan9.ErrTooBig // no file can be that long
	}
	if d.Length != ^uint64(0) {
		if n.mode&styx.DMDIR != 0 {
			if d.Length != 0 {
				return plan9.ErrIsDir
			}
		} else if d.Length != uint64(n.data.size) {
			if !fs.allowed(n, f.user, plan9.OWRITE) {
				return plan9.ErrPerm
			}
			if grow := int64(d.Length) - n.data.size; grow > 0 && fs.used+grow > fs.maxBytes {
				return plan9.ErrNoSpace
			}
		}
	}
	if d.Mode != ^uint32(0) && d.Mode != n.mode && !owner {
		return plan9.ErrPerm
	}
	if d.Mtime != ^uint32(0) && d.Mtime != n.mtime && !owner {
		return plan9.ErrPerm
	}
	if d.Atime != ^uint32(0) && d.Atime != n.atime && !owner {
		return plan9.ErrPerm
	}
	if d.Gid != "" && d.Gid != n.gid && !owner {
		return plan9.ErrPerm
	}
	// Apply.
	if rename {
		delete(n.parent.children, n.name)
		n.name = d.Name
		n.parent.children[n.name] = n
		n.parent.sorted.Store(nil)
		n.parent.touch(uint32(fs.now().Unix()), f.user)
	}
	if d.Length != ^uint64(0) && n.mode&styx.DMDIR == 0 && d.Length != uint64(n.data.size) {
		l := int64(d.Length)
		fs.used += l - n.data.size
		n.data.truncate(l)
		n.touch(uint32(fs.now().Unix()), f.user)
	}
	if d.Mode != ^uint32(0) {
		n.mode = n.mode&styx.DMDIR | d.Mode&^styx.DMDIR
		n.qid.Type = qidType(n.mode)
	}
	if d.Mtime != ^uint32(0) {
		n.mtime = d.Mtime
	}
	if d.Atime != ^uint32(0) {
		n.atime = d.Atime
	}
	if d.Gid != "" {
		n.gid = d.Gid
	}
	return nil
}

func (f *file) Remove(ctx context.Context) error {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := f.n
	if n == fs.root {
		return plan9.ErrPerm
	}
	if n.removed {
		return plan9.ErrNotFound
	}
	if !fs.allowed(n.parent, f.user, plan9.OWRITE) {
		return plan9.ErrPerm
	}
	if len(n.children) > 0 {
		return plan9.ErrNotEmpty
	}
	delete(n.parent.children, n.name)
	n.parent.sorted.Store(nil)
	n.parent.touch(uint32(fs.now().Unix()), f.user)
	n.removed = true
	fs.release(n)
	return nil
}

// Clunk lets go of the data of a removed file when its last open fid
// goes.
func (f *file) Clunk() error {
	if !f.open {
		return nil
	}
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.open = false
	f.n.opens--
	fs.release(f.n)
	return nil
}
