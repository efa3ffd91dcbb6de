package modules

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"cheshire/ns"
	"cheshire/styx"
)

// The gate stands between the namespace and a module's instance. Every
// file of a module that a namespace holds is a gfile: it remembers the
// path it was walked by and, if open, its mode, so that when the instance
// is replaced (restart, reload) the next operation walks and opens the
// same file in the new instance. Operations while the module is stopped
// or failed fail at once with "module stopped"; operations during a
// reload wait for it; an operation in flight keeps the instance from
// being stopped until it returns (the drain), so a write that was
// answered is never lost to a reload.

// gate is the styx.Attacher registered as "#NAME" for one namespace.
type gate struct {
	m  *module
	ns *ns.Namespace // nil when attached from outside a namespace
}

func (g gate) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	f := &gfile{m: g.m, ns: g.ns, uname: uname, aname: aname}
	// A lazy module is not started by the attach (namespaces attach every
	// mount when they are made) but by the first real operation.
	if g.m.available() && !g.m.isLazyStopped() {
		inst, gen, err := g.m.acquire(ctx)
		if err != nil {
			return nil, err
		}
		defer g.m.release()
		if err := f.bindTo(ctx, inst, gen); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// gfile is one fid's file of a module.
type gfile struct {
	m            *module
	ns           *ns.Namespace
	uname, aname string
	names        []string // walked from the attach root
	opened       bool
	mode         uint8

	gen uint64    // the instance f belongs to
	f   styx.File // nil until bound
	qid styx.Qid  // f's last qid, or a made-up one before binding
}

var (
	_ styx.File       = (*gfile)(nil)
	_ ns.Availability = (*gfile)(nil)
)

// Available implements ns.Availability: a stopped module's files
// disappear from directory listings.
func (f *gfile) Available() bool { return f.m.available() }

// bindTo makes f a file of inst, walking and opening it again if it
// belonged to an earlier instance.
func (f *gfile) bindTo(ctx context.Context, inst Instance, gen uint64) error {
	if f.f != nil && f.gen == gen {
		return nil
	}
	a := styx.Attacher(inst)
	if pn, ok := inst.(NamespaceInstance); ok && f.ns != nil {
		a = pn.ForNamespace(f.ns)
	}
	root, err := a.Attach(ctx, f.uname, f.aname, nil)
	if err != nil {
		return f.rebindErr(err)
	}
	nf := root
	if len(f.names) > 0 {
		nf, err = styx.WalkFile(ctx, root, f.names)
		root.Clunk()
		if err != nil {
			return f.rebindErr(fmt.Errorf("%s: %w", pathOf(f.names), err))
		}
	}
	if f.opened {
		if _, err := nf.Open(ctx, f.mode&^(styx.OTRUNC|styx.ORCLOSE)); err != nil {
			nf.Clunk()
			return f.rebindErr(err)
		}
	}
	if f.f != nil {
		f.f.Clunk() // best effort: the old instance may be gone
	}
	f.f, f.gen, f.qid = nf, gen, nf.Qid()
	return nil
}

func (f *gfile) rebindErr(err error) error {
	if f.f == nil && f.gen == 0 {
		return err
	}
	return fmt.Errorf("module %s was restarted and this file could not be reopened: %w", f.m.name, err)
}

func pathOf(names []string) string { return "/" + strings.Join(names, "/") }

// enter acquires the module and binds f to its instance; the caller
// must call f.m.release when done.
func (f *gfile) enter(ctx context.Context) error {
	inst, gen, err := f.m.acquire(ctx)
	if err != nil {
		return err
	}
	if err := f.bindTo(ctx, inst, gen); err != nil {
		f.m.release()
		return err
	}
	return nil
}

func (f *gfile) Qid() styx.Qid {
	if f.f == nil {
		h := fnv.New64a()
		h.Write([]byte(f.m.name + "\x00" + f.aname + pathOf(f.names)))
		return styx.Qid{Type: styx.QTDIR, Path: h.Sum64()}
	}
	return f.qid
}

func (f *gfile) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	if err := f.enter(ctx); err != nil {
		return nil, nil, err
	}
	defer f.m.release()
	qids, nf, err := f.f.Walk(ctx, names)
	if nf == nil || len(qids) < len(names) {
		return qids, nil, err
	}
	w := &gfile{m: f.m, ns: f.ns, uname: f.uname, aname: f.aname,
		names: append(slices.Clip(f.names), names...), gen: f.gen, f: nf, qid: nf.Qid()}
	return qids, w, err
}

func (f *gfile) Open(ctx context.Context, mode uint8) (uint32, error) {
	if err := f.enter(ctx); err != nil {
		return 0, err
	}
	defer f.m.release()
	iou, err := f.f.Open(ctx, mode)
	if err == nil {
		f.opened, f.mode, f.qid = true, mode, f.f.Qid()
	}
	return iou, err
}

func (f *gfile) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	if err := f.enter(ctx); err != nil {
		return nil, 0, err
	}
	defer f.m.release()
	nf, iou, err := f.f.Create(ctx, name, perm, mode)
	if err != nil {
		return nil, 0, err
	}
	// The directory's fid becomes the new file's (styx.File.Create).
	w := &gfile{m: f.m, ns: f.ns, uname: f.uname, aname: f.aname,
		names: append(slices.Clip(f.names), name), opened: true, mode: mode, gen: f.gen, f: nf, qid: nf.Qid()}
	return w, iou, nil
}

func (f *gfile) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if err := f.enter(ctx); err != nil {
		return 0, err
	}
	defer f.m.release()
	return f.f.Read(ctx, p, off)
}

func (f *gfile) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	defer f.m.release()
	return f.f.ReadDir(ctx)
}

func (f *gfile) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if err := f.enter(ctx); err != nil {
		return 0, err
	}
	defer f.m.release()
	return f.f.Write(ctx, p, off)
}

func (f *gfile) Stat(ctx context.Context) (styx.Dir, error) {
	if err := f.enter(ctx); err != nil {
		return styx.Dir{}, err
	}
	defer f.m.release()
	d, err := f.f.Stat(ctx)
	if err == nil {
		f.qid = d.Qid
	}
	return d, err
}

func (f *gfile) Wstat(ctx context.Context, d styx.Dir) error {
	if err := f.enter(ctx); err != nil {
		return err
	}
	defer f.m.release()
	if err := f.f.Wstat(ctx, d); err != nil {
		return err
	}
	if d.Name != "" && len(f.names) > 0 {
		f.names = append(slices.Clip(f.names[:len(f.names)-1]), d.Name)
	}
	return nil
}

func (f *gfile) Remove(ctx context.Context) error {
	if err := f.enter(ctx); err != nil {
		return err
	}
	defer f.m.release()
	return f.f.Remove(ctx)
}

// Clunk clunks the underlying file if it belongs to the running
// instance; a file of a stopped or replaced instance is just dropped.
func (f *gfile) Clunk() error {
	if f.f == nil {
		return nil
	}
	_, gen, ok := f.m.tryAcquire()
	if !ok {
		return nil
	}
	defer f.m.release()
	if gen != f.gen {
		f.f.Clunk()
		return nil
	}
	return f.f.Clunk()
}
