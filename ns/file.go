package ns

import (
	"context"
	"path"

	"cheshire/plan9"
	"cheshire/styx"
)

// errNoCreate is Plan 9's answer to a create in a union with no -c member.
const errNoCreate = plan9.Error("mounted directory forbids creation")

// file is one fid's view of a namespace chan; it implements styx.File.
// Each file handed out (newFile) holds a reference to its namespace
// until its Clunk, so that a namespace no fid uses can be dropped.
type file struct {
	ns     *Namespace
	c      *chn
	opened bool
	held   bool // holds a reference to ns, given back at Clunk
}

// newFile is a file of c in ns that holds a reference to ns.
func newFile(ns *Namespace, c *chn, opened bool) *file {
	ns.mgr.hold(ns)
	return &file{ns: ns, c: c, opened: opened, held: true}
}

var _ styx.File = (*file)(nil)

// target is the chan that file I/O goes to: a non-union chan, or the
// first member of a union.
func (f *file) target() *chn {
	c := f.c
	for c.union != nil {
		c = c.union[0].c
	}
	return c
}

func (f *file) Qid() styx.Qid { return f.c.Qid() }

// Inline implements styx.Inline for a file that is not a directory and
// whose device's file never blocks. A directory's walk may cross into
// any mount (a remote one among them) and its read gathers a union, so
// those get a goroutine of their own.
func (f *file) Inline() bool {
	if f.c.union != nil || f.c.isDir() {
		return false
	}
	in, ok := f.c.file.(styx.Inline)
	return ok && in.Inline()
}

func (f *file) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	qids, nc, err := f.ns.walk(ctx, f.c, names)
	if nc == nil {
		return qids, nil, err
	}
	return qids, newFile(f.ns, nc, false), nil
}

func (f *file) Open(ctx context.Context, mode uint8) (uint32, error) {
	if f.c.union != nil && f.c.isDir() {
		// Members are opened when the directory is read.
		f.opened = true
		return 0, nil
	}
	iou, err := f.target().file.Open(ctx, mode)
	if err == nil {
		f.opened = true
	}
	return iou, err
}

func (f *file) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	dir := f.c
	if dir.union != nil {
		dir = nil
		for _, m := range f.c.union {
			if m.create {
				dir = m.c
				break
			}
		}
		if dir == nil {
			return nil, 0, errNoCreate
		}
		for dir.union != nil {
			dir = dir.union[0].c
		}
	}
	_, cl, err := dir.file.Walk(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	nf, iou, err := cl.Create(ctx, name, perm, mode)
	cl.Clunk()
	if err != nil {
		return nil, 0, err
	}
	nc := &chn{dev: dir.dev, file: nf, qid: nf.Qid(), path: path.Join(f.c.path, name), dpath: path.Join(dir.dpath, name)}
	return newFile(f.ns, nc, true), iou, nil
}

func (f *file) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return f.target().file.Read(ctx, p, off)
}

func (f *file) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return f.target().file.Write(ctx, p, off)
}

func (f *file) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	if f.c.union == nil {
		ds, err := f.c.file.ReadDir(ctx)
		out := ds[:0]
		for _, d := range ds {
			if f.ns != nil && f.ns.hidden(f.c.dev, d.Qid.Path) {
				continue
			}
			d.Qid = f.c.dev.qid(d.Qid)
			out = append(out, d)
		}
		return out, err
	}
	seen := map[string]bool{}
	var out []styx.Dir
	var firstErr error
	for _, m := range f.c.union {
		ds, err := readDirChan(ctx, f.ns, m.c)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, d := range ds {
			if !seen[d.Name] {
				seen[d.Name] = true
				out = append(out, d)
			}
		}
	}
	if out == nil && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// readDirChan lists the directory c, opening a clone of it.
func readDirChan(ctx context.Context, ns *Namespace, c *chn) ([]styx.Dir, error) {
	if !c.isDir() {
		return nil, nil
	}
	cl, err := c.clone(ctx, c.path)
	if err != nil {
		return nil, err
	}
	defer cl.clunk()
	f := &file{ns: ns, c: cl}
	if _, err := f.Open(ctx, styx.OREAD); err != nil {
		return nil, err
	}
	return f.ReadDir(ctx)
}

func (f *file) Stat(ctx context.Context) (styx.Dir, error) {
	t := f.target()
	d, err := t.file.Stat(ctx)
	if err != nil {
		return d, err
	}
	d.Qid = f.c.Qid()
	if f.c.union != nil || f.c.path == "/" {
		d.Name = path.Base(f.c.path)
	}
	return d, nil
}

func (f *file) Wstat(ctx context.Context, d styx.Dir) error {
	if d.Qid != (styx.Qid{Type: ^uint8(0), Vers: ^uint32(0), Path: ^uint64(0)}) {
		// Clients see remapped qids; the device must not.
		d.Qid = styx.NullDir().Qid
	}
	return f.target().file.Wstat(ctx, d)
}

func (f *file) Remove(ctx context.Context) error {
	if f.c.union != nil {
		return plan9.ErrPerm
	}
	return f.c.file.Remove(ctx)
}

func (f *file) Clunk() error {
	err := f.c.clunk()
	if f.held {
		f.held = false
		f.ns.mgr.release(f.ns)
	}
	return err
}

// An Availability is a mounted file (the root a server attached) that
// can say it is not there for now: the root of a stopped module, say.
type Availability interface {
	Available() bool
}

// hidden reports whether the entry of dev with qid path p is a mount
// point all of whose members are unavailable; directory listings leave
// such entries out, so a stopped module's mount point disappears.
func (ns *Namespace) hidden(dev *device, p uint64) bool {
	ns.mu.Lock()
	es := ns.table[mountKey{dev, p}]
	ns.mu.Unlock()
	if len(es) == 0 {
		return false
	}
	for _, e := range es {
		a, ok := e.src.file.(Availability)
		if !ok || a.Available() {
			return false
		}
	}
	return true
}
