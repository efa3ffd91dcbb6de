package modules

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"

	"cheshire/module"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/styx"
)

// The files of a module as a namespace holds them: gfile, one fid's
// file, bound to the running instance and bound again after a restart
// or a reload (see gate.go).
//
// Reads of a package's files are bounded: none is served past the file's
// stat length (looked at again when a read would pass it, as files grow)
// nor past the module's read limit (maxread), in offset or in bytes read
// through one fid, so a file that declares a huge length or ignores
// offsets cannot stream without end.

// gfile is one fid's file of a module.
type gfile struct {
	m            *managed
	ns           *ns.Namespace
	uname, aname string

	// mu guards the fields below: Read, Write and Stat of one fid may
	// come at once, and any of them may bind the file to a new instance.
	mu     sync.Mutex
	names  []string // walked from the attach root
	opened bool
	mode   uint8
	gen    uint64    // the instance f belongs to
	f      styx.File // nil until bound
	qid    styx.Qid  // f's last qid, or a made-up one before binding
	length int64     // the stat length at the last look; -1 before the first read
	served int64     // bytes read through this fid
	dirty  bool      // written or truncated through this fid: its clunk may commit
}

var (
	_ styx.File       = (*gfile)(nil)
	_ ns.Availability = (*gfile)(nil)
)

// Available implements ns.Availability: a stopped module's files
// disappear from directory listings.
func (f *gfile) Available() bool { return f.m.available() }

// bindLocked makes f a file of inst, walking and opening it again if it
// belonged to an earlier instance. Called with f.mu held.
func (f *gfile) bindLocked(ctx context.Context, inst module.Instance, gen uint64) error {
	if f.f != nil && f.gen == gen {
		return nil
	}
	a := styx.Attacher(inst)
	if pn, ok := inst.(module.NamespaceInstance); ok && f.ns != nil {
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

// enter acquires the module and binds f to its instance. It returns the
// bound file, a context for the call that also ends when the instance
// stops, and the call, whose done the caller must call when it returns.
func (f *gfile) enter(ctx context.Context) (context.Context, styx.File, call, error) {
	r, err := f.m.acquire(ctx)
	if err != nil {
		return nil, nil, call{}, err
	}
	f.mu.Lock()
	err = f.bindLocked(ctx, r.inst, r.gen)
	file := f.f
	f.mu.Unlock()
	if err != nil {
		r.release()
		return nil, nil, call{}, err
	}
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(r.ctx, func() { cancel(plan9.ErrModuleStopped) })
	return cctx, file, call{r: r, stop: stop, cancel: cancel}, nil
}

// A call is one operation admitted by enter.
type call struct {
	r      *incarnation
	stop   func() bool
	cancel context.CancelCauseFunc
}

func (c call) done() {
	c.stop()
	c.cancel(nil)
	c.r.release()
}

// callErr is the error of a call that returned err under ctx (from
// enter): "module stopped…" if the instance stopped under it.
func (f *gfile) callErr(ctx context.Context, err error) error {
	if err == nil || context.Cause(ctx) != plan9.ErrModuleStopped {
		return err
	}
	return f.m.stoppedErr()
}

// Inline implements styx.Inline: a file bound to the running instance
// of its module, whose own file never blocks. A module starting,
// reloading or stopped may make a call wait, or bind the file anew, so
// then the call gets a goroutine of its own.
func (f *gfile) Inline() bool {
	r := f.m.live.Load()
	if r == nil || !f.mu.TryLock() {
		return false
	}
	file, gen := f.f, f.gen
	f.mu.Unlock()
	if file == nil || gen != r.gen {
		return false
	}
	in, ok := file.(styx.Inline)
	return ok && in.Inline()
}

func (f *gfile) Qid() styx.Qid {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		h := fnv.New64a()
		h.Write([]byte(f.m.name + "\x00" + f.aname + pathOf(f.names)))
		return styx.Qid{Type: styx.QTDIR, Path: h.Sum64()}
	}
	return f.qid
}

// child is a new gfile for the file nf of the same instance, at names
// below f.
func (f *gfile) child(nf styx.File, names ...string) *gfile {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &gfile{m: f.m, ns: f.ns, uname: f.uname, aname: f.aname,
		names: append(slices.Clip(f.names), names...), gen: f.gen, f: nf, qid: nf.Qid(), length: -1}
}

func (f *gfile) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer c.done()
	qids, nf, err := file.Walk(ctx, names)
	if nf == nil || len(qids) < len(names) {
		return qids, nil, f.callErr(ctx, err)
	}
	return qids, f.child(nf, names...), f.callErr(ctx, err)
}

func (f *gfile) Open(ctx context.Context, mode uint8) (uint32, error) {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer c.done()
	iou, err := file.Open(ctx, mode)
	if err == nil {
		f.mu.Lock()
		f.opened, f.mode, f.qid = true, mode, file.Qid()
		f.dirty = f.dirty || mode&styx.OTRUNC != 0
		f.mu.Unlock()
	}
	return iou, f.callErr(ctx, err)
}

func (f *gfile) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer c.done()
	nf, iou, err := file.Create(ctx, name, perm, mode)
	if err != nil {
		return nil, 0, f.callErr(ctx, err)
	}
	// The directory's fid becomes the new file's (styx.File.Create).
	w := f.child(nf, name)
	w.opened, w.mode, w.dirty = true, mode, mode&styx.OTRUNC != 0
	if f.m.watched.Load() > 0 {
		f.publish(c.r.inst, ns.Event{Op: "create", Path: w.at()})
	}
	return w, iou, nil
}

func (f *gfile) Read(ctx context.Context, p []byte, off int64) (int, error) {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer c.done()
	n, err := f.bound(ctx, file, len(p), off)
	if n == 0 || err != nil {
		return 0, f.callErr(ctx, err)
	}
	got, err := file.Read(ctx, p[:n], off)
	f.mu.Lock()
	f.served += int64(got)
	f.mu.Unlock()
	return got, f.callErr(ctx, err)
}

// bound is how much of a read of count bytes at off may be served.
func (f *gfile) bound(ctx context.Context, file styx.File, count int, off int64) (int, error) {
	limit := f.m.readLimit()
	if limit <= 0 {
		return count, nil
	}
	f.mu.Lock()
	served, length := f.served, f.length
	f.mu.Unlock()
	n := min(int64(count), limit-served, limit-off)
	if n <= 0 {
		return 0, nil
	}
	if length < 0 || length > 0 && off+n > length {
		d, err := file.Stat(ctx)
		if err != nil {
			return 0, err
		}
		length = int64(d.Length)
		f.mu.Lock()
		f.length = length
		f.mu.Unlock()
	}
	if length > 0 {
		n = min(n, length-off)
	}
	return int(max(n, 0)), nil
}

func (f *gfile) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer c.done()
	ds, err := file.ReadDir(ctx)
	return ds, f.callErr(ctx, err)
}

func (f *gfile) Write(ctx context.Context, p []byte, off int64) (int, error) {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer c.done()
	n, err := file.Write(ctx, p, off)
	if err == nil {
		f.mu.Lock()
		f.dirty = true
		f.mu.Unlock()
		if f.m.watched.Load() > 0 {
			f.publish(c.r.inst, ns.Event{Op: "write", Path: f.at(), Vers: versOf(ctx, file)})
		}
	}
	return n, f.callErr(ctx, err)
}

func (f *gfile) Stat(ctx context.Context) (styx.Dir, error) {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return styx.Dir{}, err
	}
	defer c.done()
	d, err := file.Stat(ctx)
	if err == nil {
		f.mu.Lock()
		f.qid = d.Qid
		f.mu.Unlock()
	}
	return d, f.callErr(ctx, err)
}

func (f *gfile) Wstat(ctx context.Context, d styx.Dir) error {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return err
	}
	defer c.done()
	if err := file.Wstat(ctx, d); err != nil {
		return f.callErr(ctx, err)
	}
	f.mu.Lock()
	old := f.names
	f.dirty = f.dirty || d.Length != ^uint64(0)
	renamed := d.Name != "" && len(f.names) > 0 && d.Name != f.names[len(f.names)-1]
	if d.Name != "" && len(f.names) > 0 {
		f.names = append(slices.Clip(f.names[:len(f.names)-1]), d.Name)
	}
	now := f.names
	f.mu.Unlock()
	if f.m.watched.Load() == 0 {
		return nil
	}
	if renamed {
		f.publish(c.r.inst, ns.Event{Op: "rename", Path: pathOf(old), New: pathOf(now)})
	}
	n := styx.NullDir()
	if d.Mode != n.Mode || d.Atime != n.Atime || d.Mtime != n.Mtime || d.Length != n.Length || d.Uid != n.Uid || d.Gid != n.Gid || d.Muid != n.Muid {
		f.publish(c.r.inst, ns.Event{Op: "wstat", Path: pathOf(now)})
	}
	return nil
}

func (f *gfile) Remove(ctx context.Context) error {
	ctx, file, c, err := f.enter(ctx)
	if err != nil {
		return err
	}
	defer c.done()
	if err := file.Remove(ctx); err != nil {
		return f.callErr(ctx, err)
	}
	if f.m.watched.Load() > 0 {
		f.publish(c.r.inst, ns.Event{Op: "remove", Path: f.at()})
	}
	return nil
}

// Clunk clunks the underlying file if it belongs to the running
// instance; a file of a replaced instance is clunked there, best effort.
// While the module does not run, the file is dropped unclunked, and what
// its clunk would have committed (a config written to it, applied at
// clunk) is lost: if it was written to or truncated, the clunk fails
// with "module stopped", so that `echo x >file` sees the error at close.
//
// BUG: the gate cannot tell a file that commits at clunk from one that
// applied each write as it came, so a clunk of any file written to
// while the module is stopped fails.
func (f *gfile) Clunk() error {
	f.mu.Lock()
	file, fgen, dirty := f.f, f.gen, f.dirty
	f.mu.Unlock()
	if file == nil {
		return nil
	}
	r := f.m.tryAcquire()
	if r == nil {
		if dirty {
			return f.m.stoppedErr()
		}
		return nil
	}
	defer r.release()
	if r.gen != fgen {
		file.Clunk()
		return nil
	}
	err := file.Clunk()
	if err == nil && dirty && f.m.watched.Load() > 0 {
		// What a file commits at clunk (a zone, a config) changes it
		// only now: tell the version it has now.
		if vers, ok := f.freshVers(r); ok {
			f.publish(r.inst, ns.Event{Op: "write", Path: f.at(), Vers: vers})
		}
	}
	return err
}
