package sdk

import (
	"bytes"
	"context"
	"io"
	"strings"
	"time"
)

// A Node is a file or directory of a tree: a *Dir or a *FileNode.
type Node interface {
	// Info describes the node.
	Info() Info
	base() *node
}

type node struct {
	name    string
	mode    uint32
	mtime   time.Time
	version uint32
}

func (n *node) base() *node { return n }

// Name returns the node's name.
func (n *node) Name() string { return n.name }

// Touch records a change of the node's content: its version goes up and
// its mtime becomes now, so that clients caching it read it again.
func (n *node) Touch() {
	n.version++
	n.mtime = time.Now()
}

// SetMtime sets the node's modification time, and SetVersion its
// version, for nodes that mirror something else (a file they render).
func (n *node) SetMtime(t time.Time) { n.mtime = t }

// SetVersion sets the node's version: see SetMtime.
func (n *node) SetVersion(v uint32) { n.version = v }

func (n *node) info() Info {
	return Info{Name: n.name, Mode: n.mode, Mtime: n.mtime, Version: n.version}
}

// A Dir is a directory of a tree. Its children are those added with Add,
// then those its generator lists (SetGen), fresh at each lookup. A Dir is
// itself an FS (and a CreateFS and RemoveFS) serving the tree below it,
// so the root of a tree can be given to Serve.
type Dir struct {
	node
	children []Node
	gen      func(ctx context.Context) ([]Node, error)
	lookup   func(ctx context.Context, name string) (Node, error)
	create   func(ctx context.Context, name string, perm uint32) (Node, error)
	remove   func(ctx context.Context, name string) error
}

// NewDir returns a directory with permissions perm and the given
// children. The root of a tree is conventionally named "/".
func NewDir(name string, perm uint32, children ...Node) *Dir {
	d := &Dir{node: node{name: name, mode: DMDIR | perm&0777, mtime: time.Now()}}
	d.Add(children...)
	return d
}

// Info describes d.
func (d *Dir) Info() Info { return d.info() }

// Add adds children to d, replacing any of the same name, and returns d.
func (d *Dir) Add(children ...Node) *Dir {
	for _, c := range children {
		d.Drop(c.base().name)
		d.children = append(d.children, c)
	}
	return d
}

// Drop drops the child called name that was added with Add, if any.
func (d *Dir) Drop(name string) {
	for i, c := range d.children {
		if c.base().name == name {
			d.children = append(d.children[:i], d.children[i+1:]...)
			return
		}
	}
}

// SetGen makes gen list the generated children of d. It is called at
// every directory read, and at every lookup of a name that is not a child
// added with Add unless a lookup function is set (SetLookup).
func (d *Dir) SetGen(gen func(ctx context.Context) ([]Node, error)) { d.gen = gen }

// SetLookup makes lookup find a generated child by name (nil and
// ErrNotFound, or any error, if there is none), for directories whose
// generator is costly to run at every walk.
func (d *Dir) SetLookup(lookup func(ctx context.Context, name string) (Node, error)) {
	d.lookup = lookup
}

// SetCreate lets clients create files in d: create makes the file name
// with perm (DMDIR set for a directory) and returns its node, which the
// tree then opens. Without it, create is prohibited. The node returned
// must be found afterwards by lookups (added with Add or generated).
func (d *Dir) SetCreate(create func(ctx context.Context, name string, perm uint32) (Node, error)) {
	d.create = create
}

// SetRemove lets clients remove children of d: remove is called with the
// child's name and, when it succeeds, a child added with Add is dropped.
// Without it, remove is prohibited.
func (d *Dir) SetRemove(remove func(ctx context.Context, name string) error) { d.remove = remove }

func (d *Dir) child(ctx context.Context, name string) (Node, error) {
	for _, c := range d.children {
		if c.base().name == name {
			return c, nil
		}
	}
	switch {
	case d.lookup != nil:
		n, err := d.lookup(ctx, name)
		if err == nil && n == nil {
			err = ErrNotFound
		}
		return n, err
	case d.gen != nil:
		made, err := d.gen(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range made {
			if c.base().name == name {
				return c, nil
			}
		}
	}
	return nil, ErrNotFound
}

// walk finds the node at path below d and its parent directory.
func (d *Dir) walk(ctx context.Context, path string) (Node, *Dir, error) {
	var n Node = d
	parent := d
	for path != "" {
		var name string
		if i := strings.IndexByte(path, '/'); i >= 0 {
			name, path = path[:i], path[i+1:]
		} else {
			name, path = path, ""
		}
		if name == "" {
			continue
		}
		dir, ok := n.(*Dir)
		if !ok {
			return nil, nil, ErrNotDir
		}
		c, err := dir.child(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		n, parent = c, dir
	}
	return n, parent, nil
}

// Stat implements FS.
func (d *Dir) Stat(ctx context.Context, path string) (Info, error) {
	n, _, err := d.walk(ctx, path)
	if err != nil {
		return Info{}, err
	}
	return n.Info(), nil
}

// ReadDir implements FS.
func (d *Dir) ReadDir(ctx context.Context, path string) ([]Info, error) {
	n, _, err := d.walk(ctx, path)
	if err != nil {
		return nil, err
	}
	dir, ok := n.(*Dir)
	if !ok {
		return nil, ErrNotDir
	}
	infos := make([]Info, 0, len(dir.children))
	seen := make(map[string]bool, len(dir.children))
	for _, c := range dir.children {
		infos = append(infos, c.Info())
		seen[c.base().name] = true
	}
	if dir.gen != nil {
		made, err := dir.gen(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range made {
			if !seen[c.base().name] {
				infos = append(infos, c.Info())
				seen[c.base().name] = true
			}
		}
	}
	return infos, nil
}

// Open implements FS.
func (d *Dir) Open(ctx context.Context, path string, mode uint8) (File, error) {
	n, _, err := d.walk(ctx, path)
	if err != nil {
		return nil, err
	}
	f, ok := n.(*FileNode)
	if !ok {
		return nil, ErrIsDir
	}
	return f.open(ctx, mode)
}

// Create implements CreateFS.
func (d *Dir) Create(ctx context.Context, path string, perm uint32, mode uint8) (File, Info, error) {
	dirPath, name := splitPath(path)
	n, _, err := d.walk(ctx, dirPath)
	if err != nil {
		return nil, Info{}, err
	}
	dir, ok := n.(*Dir)
	if !ok {
		return nil, Info{}, ErrNotDir
	}
	if dir.create == nil {
		return nil, Info{}, ErrCreate
	}
	if _, err := dir.child(ctx, name); err == nil {
		return nil, Info{}, ErrExist
	}
	made, err := dir.create(ctx, name, perm)
	if err != nil {
		return nil, Info{}, err
	}
	if made == nil {
		return nil, Info{}, ErrCreate
	}
	fn, ok := made.(*FileNode)
	if !ok {
		return nil, made.Info(), nil
	}
	f, err := fn.open(ctx, mode)
	if err != nil {
		return nil, Info{}, err
	}
	return f, made.Info(), nil
}

// Remove implements RemoveFS.
func (d *Dir) Remove(ctx context.Context, path string) error {
	_, parent, err := d.walk(ctx, path)
	if err != nil {
		return err
	}
	_, name := splitPath(path)
	if name == "" {
		return ErrRemove
	}
	if parent.remove == nil {
		return ErrRemove
	}
	if err := parent.remove(ctx, name); err != nil {
		return err
	}
	parent.Drop(name)
	return nil
}

// splitPath splits "/a/b/c" into "/a/b" and "c"; "/" gives "/" and "".
func splitPath(path string) (dir, name string) {
	path = strings.TrimRight(path, "/")
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "/", path
	}
	if i == 0 {
		return "/", path[1:]
	}
	return path[:i], path[i+1:]
}

// A FileNode is a file of a tree. Its behaviour is its open function's.
type FileNode struct {
	node
	open func(ctx context.Context, mode uint8) (File, error)
	size func() int64
}

// NewFile returns a file whose opens are served by open, which gets the
// open mode (OREAD, OWRITE, ORDWR, with OTRUNC). Its size is 0, as for
// most synthetic files, unless set with SetSize.
func NewFile(name string, perm uint32, open func(ctx context.Context, mode uint8) (File, error)) *FileNode {
	return &FileNode{node: node{name: name, mode: perm &^ DMDIR, mtime: time.Now()}, open: open}
}

// Info describes f.
func (f *FileNode) Info() Info {
	in := f.info()
	if f.size != nil {
		in.Size = f.size()
	}
	return in
}

// SetSize makes size give the length f reports, and returns f.
func (f *FileNode) SetSize(size func() int64) *FileNode {
	f.size = size
	return f
}

func writeMode(mode uint8) bool { m := mode & 3; return m == OWRITE || m == ORDWR || mode&OTRUNC != 0 }
func readMode(mode uint8) bool  { return mode&3 != OWRITE }

// Static returns a read-only file of constant content.
func Static(name string, perm uint32, data []byte) *FileNode {
	data = bytes.Clone(data)
	f := Gen(name, perm, func(context.Context) ([]byte, error) { return data, nil })
	return f.SetSize(func() int64 { return int64(len(data)) })
}

// Gen returns a read-only file whose content get generates at each open;
// a reader crossing several reads sees that one version.
func Gen(name string, perm uint32, get func(ctx context.Context) ([]byte, error)) *FileNode {
	return NewFile(name, perm, func(ctx context.Context, mode uint8) (File, error) {
		if writeMode(mode) {
			return nil, ErrPerm
		}
		data, err := get(ctx)
		if err != nil {
			return nil, err
		}
		return &memFile{data: data}, nil
	})
}

// Ctl returns a control file: every write is passed to write as it comes
// (its error is the write's) and reads give what read generated at open
// (nothing if read is nil).
func Ctl(name string, perm uint32, read func(ctx context.Context) ([]byte, error), write func(ctx context.Context, data []byte) error) *FileNode {
	return NewFile(name, perm, func(ctx context.Context, mode uint8) (File, error) {
		if writeMode(mode) && write == nil {
			return nil, ErrPerm
		}
		c := &ctlFile{ctx: ctx, write: write}
		if readMode(mode) && read != nil {
			data, err := read(ctx)
			if err != nil {
				return nil, err
			}
			c.data = data
		}
		return c, nil
	})
}

// ReadWrite returns a file whose content is get's and is changed by set.
// Each open reads and writes its own copy: from empty if opened with
// OTRUNC, else from get. If it was written (or truncated), set is called
// once at close with the whole content, and its error is the close's.
func ReadWrite(name string, perm uint32, get func(ctx context.Context) ([]byte, error), set func(ctx context.Context, data []byte) error) *FileNode {
	return NewFile(name, perm, func(ctx context.Context, mode uint8) (File, error) {
		if writeMode(mode) && set == nil {
			return nil, ErrPerm
		}
		m := &memFile{ctx: ctx, set: set, writable: writeMode(mode)}
		if mode&OTRUNC != 0 {
			m.dirty = true
		} else {
			data, err := get(ctx)
			if err != nil {
				return nil, err
			}
			m.data = bytes.Clone(data)
		}
		return m, nil
	})
}

// Filter returns a file that transforms what is written to it: a client
// opens it, writes its input, and reads back f's output on the same open
// (the input is run through f at the first read after a write). Each open
// has its own input and output.
func Filter(name string, perm uint32, f func(ctx context.Context, in []byte) ([]byte, error)) *FileNode {
	return NewFile(name, perm, func(ctx context.Context, mode uint8) (File, error) {
		return &filterFile{ctx: ctx, f: f}, nil
	})
}

// MaxFileData bounds what a ReadWrite or Filter file holds per open.
const MaxFileData = 64 << 20

// memFile serves a copy of data; if set, writes change it and set
// commits it at close.
type memFile struct {
	ctx      context.Context
	data     []byte
	set      func(ctx context.Context, data []byte) error
	writable bool
	dirty    bool
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) { return readAt(m.data, p, off) }

// readAt reads data at off into p, with io.EOF when it reaches the end.
func readAt(data, p []byte, off int64) (int, error) {
	if off >= int64(len(data)) {
		return 0, io.EOF
	}
	n := copy(p, data[off:])
	if off+int64(n) == int64(len(data)) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if !m.writable || m.set == nil {
		return 0, ErrPerm
	}
	var err error
	m.data, err = writeAt(m.data, p, off)
	if err != nil {
		return 0, err
	}
	m.dirty = true
	return len(p), nil
}

func (m *memFile) Close() error {
	if m.dirty && m.set != nil {
		return m.set(m.ctx, m.data)
	}
	return nil
}

// writeAt writes p into data at off, growing it (with zeros) as needed.
func writeAt(data, p []byte, off int64) ([]byte, error) {
	end := off + int64(len(p))
	if off < 0 || end > MaxFileData {
		return data, ErrTooBig
	}
	if end > int64(len(data)) {
		data = append(data, make([]byte, end-int64(len(data)))...)
	}
	copy(data[off:], p)
	return data, nil
}

type ctlFile struct {
	ctx   context.Context
	data  []byte
	write func(ctx context.Context, data []byte) error
}

func (c *ctlFile) ReadAt(p []byte, off int64) (int, error) { return readAt(c.data, p, off) }

func (c *ctlFile) WriteAt(p []byte, off int64) (int, error) {
	if c.write == nil {
		return 0, ErrPerm
	}
	if err := c.write(c.ctx, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *ctlFile) Close() error { return nil }

type filterFile struct {
	ctx     context.Context
	f       func(ctx context.Context, in []byte) ([]byte, error)
	in, out []byte
	done    bool // out is f(in)
}

func (t *filterFile) WriteAt(p []byte, off int64) (int, error) {
	if t.done {
		// A write after the output was read starts a new input.
		t.in, t.out, t.done = nil, nil, false
	}
	var err error
	if t.in, err = writeAt(t.in, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (t *filterFile) ReadAt(p []byte, off int64) (int, error) {
	if !t.done {
		out, err := t.f(t.ctx, t.in)
		if err != nil {
			return 0, err
		}
		t.out, t.done = out, true
	}
	return readAt(t.out, p, off)
}

func (t *filterFile) Close() error { return nil }
