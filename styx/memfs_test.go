package styx_test

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"cheshire/plan9"
	"cheshire/styx"
)

// memFS is the file tree styx's own tests serve: directories and files
// in memory that the single user creates, reads, writes, truncates,
// renames and removes, with no permission checks and a pinned clock
// (every time is memTime). It implements styx.Attacher, and each of its
// files styx.File. A test may set max, the longest a file may grow,
// before serving it.
type memFS struct {
	max    int64        // bytes a file may hold; set before use
	wstats atomic.Int64 // calls of Wstat, for tests of the engine's checks

	mu       sync.RWMutex
	root     *memNode
	nextPath uint64 // guarded by mu
}

// memTime is the atime and mtime of every file of a memFS.
const memTime = 1700000000

// memNode is one file or directory; its fields are guarded by memFS.mu.
type memNode struct {
	name     string
	parent   *memNode // root's parent is itself
	qid      styx.Qid
	mode     uint32
	uid      string
	data     []byte
	children map[string]*memNode // nil for a file
}

// newMemFS returns an empty tree whose root, mode 0777, is owner's.
func newMemFS(owner string) *memFS {
	fs := &memFS{max: 64 << 20, nextPath: 1}
	fs.root = &memNode{name: "/", qid: styx.Qid{Type: styx.QTDIR}, mode: styx.DMDIR | 0777,
		uid: owner, children: map[string]*memNode{}}
	fs.root.parent = fs.root
	return fs
}

func (fs *memFS) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return &memFile{fs: fs, n: fs.root}, nil
}

// memFile is one fid's view of a node.
type memFile struct {
	fs *memFS
	n  *memNode
}

var _ styx.File = (*memFile)(nil)

func (n *memNode) dir() styx.Dir {
	return styx.Dir{Qid: n.qid, Mode: n.mode, Atime: memTime, Mtime: memTime, Length: uint64(len(n.data)),
		Name: n.name, Uid: n.uid, Gid: n.uid, Muid: n.uid}
}

func (f *memFile) Qid() styx.Qid {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	return f.n.qid
}

func (f *memFile) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	n := f.n
	var qids []styx.Qid
	for _, name := range names {
		if n.children == nil {
			return qids, nil, plan9.ErrNotDir
		}
		next := n.parent
		if name != ".." {
			if next = n.children[name]; next == nil {
				return qids, nil, plan9.ErrNotFound
			}
		}
		n = next
		qids = append(qids, n.qid)
	}
	return qids, &memFile{fs: f.fs, n: n}, nil
}

func (f *memFile) Open(ctx context.Context, mode uint8) (uint32, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if mode&styx.OTRUNC != 0 && f.n.children == nil {
		f.n.data = nil
		f.n.qid.Vers++
	}
	return 0, nil
}

func (f *memFile) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := f.n
	if _, ok := d.children[name]; ok {
		return nil, 0, plan9.ErrExist
	}
	n := &memNode{name: name, parent: d, mode: perm, uid: d.uid, qid: styx.Qid{Path: fs.nextPath}}
	if perm&styx.DMDIR != 0 {
		if mode&3 != styx.OREAD || mode&styx.OTRUNC != 0 {
			return nil, 0, plan9.ErrIsDir
		}
		n.qid.Type = styx.QTDIR
		n.children = map[string]*memNode{}
	}
	fs.nextPath++
	d.children[name] = n
	d.qid.Vers++
	return &memFile{fs: fs, n: n}, 0, nil
}

func (f *memFile) Read(ctx context.Context, p []byte, off int64) (int, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	if off >= int64(len(f.n.data)) {
		return 0, nil
	}
	return copy(p, f.n.data[off:]), nil
}

func (f *memFile) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	ds := make([]styx.Dir, 0, len(f.n.children))
	for _, c := range f.n.children {
		ds = append(ds, c.dir())
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
	return ds, nil
}

func (f *memFile) Write(ctx context.Context, p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	end := off + int64(len(p))
	if end > f.fs.max || end < off {
		return 0, plan9.ErrTooBig
	}
	n := f.n
	if end > int64(len(n.data)) {
		n.data = append(n.data, make([]byte, end-int64(len(n.data)))...)
	}
	copy(n.data[off:], p)
	n.qid.Vers++
	return len(p), nil
}

func (f *memFile) Stat(ctx context.Context) (styx.Dir, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	return f.n.dir(), nil
}

// Wstat renames within the directory, truncates and changes the mode;
// other fields are ignored.
func (f *memFile) Wstat(ctx context.Context, d styx.Dir) error {
	fs := f.fs
	fs.wstats.Add(1)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := f.n
	if d.Name != "" && d.Name != n.name {
		if n == fs.root {
			return plan9.ErrPerm
		}
		if _, ok := n.parent.children[d.Name]; ok {
			return plan9.ErrExist
		}
	}
	if d.Length != ^uint64(0) && d.Length > uint64(fs.max) {
		return plan9.ErrTooBig
	}
	if d.Name != "" && d.Name != n.name {
		delete(n.parent.children, n.name)
		n.name = d.Name
		n.parent.children[n.name] = n
	}
	if d.Length != ^uint64(0) && n.children == nil {
		n.data = append(n.data[:min(int64(len(n.data)), int64(d.Length))], make([]byte, max(0, int64(d.Length)-int64(len(n.data))))...)
		n.qid.Vers++
	}
	if d.Mode != ^uint32(0) {
		n.mode = n.mode&styx.DMDIR | d.Mode&^styx.DMDIR
	}
	return nil
}

func (f *memFile) Remove(ctx context.Context) error {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := f.n
	switch {
	case n == fs.root:
		return plan9.ErrPerm
	case n.parent.children[n.name] != n:
		return plan9.ErrNotFound
	case len(n.children) > 0:
		return plan9.ErrNotEmpty
	}
	delete(n.parent.children, n.name)
	n.parent.qid.Vers++
	return nil
}

func (f *memFile) Clunk() error { return nil }

// newMemFSMax is newMemFS with files of at most max bytes.
func newMemFSMax(owner string, max int64) *memFS {
	fs := newMemFS(owner)
	fs.max = max
	return fs
}
