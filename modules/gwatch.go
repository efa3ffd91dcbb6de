package modules

import (
	"context"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/module"
	"cheshire/ns"
	"cheshire/styx"
)

// Watches of a module's files (ns.Watcher): the gate sees every create,
// write, remove and wstat that reaches the instance through it, and
// publishes each that succeeded to the hub of the tree it was made in
// (one per aname, and per namespace for a module that serves each
// namespace a tree of its own). A write is told at each write call,
// with the qid.vers a stat gives after it, and once more at the clunk
// of a fid written to or truncated, with the version then: a file that
// commits at clunk (a zone, a config) changes only there, and a
// truncation with nothing written after is told only there. A watch's
// queue folds consecutive writes of one file into one line, so a cp of
// a big file is a line or a few, not one per 8 KiB. An instance that
// changes its files by itself tells through module.Env's Changed.

// hubKey names one tree of a module.
type hubKey struct {
	aname string
	ns    *ns.Namespace // nil unless the module serves each namespace its own tree
}

// watchState is a module's hubs. watched counts subscriptions, so that
// an operation of a module no one watches costs one atomic load.
type watchState struct {
	mu   sync.Mutex
	hubs map[hubKey]*ns.Hub // guarded by mu
}

// hub returns the hub of key, made if make is set (else nil if none).
func (d *managed) hub(key hubKey, make bool) *ns.Hub {
	d.watch.mu.Lock()
	defer d.watch.mu.Unlock()
	h := d.watch.hubs[key]
	if h == nil && make {
		if d.watch.hubs == nil {
			d.watch.hubs = map[hubKey]*ns.Hub{}
		}
		h = new(ns.Hub)
		d.watch.hubs[key] = h
	}
	return h
}

// hubKey is the key of f's tree under inst (nil: the running one).
func (f *gfile) hubKey(inst module.Instance) hubKey {
	if inst == nil {
		if r := f.m.live.Load(); r != nil {
			inst = r.inst
		}
	}
	k := hubKey{aname: f.aname}
	if _, ok := inst.(module.NamespaceInstance); ok {
		k.ns = f.ns
	}
	return k
}

// publish tells e (paths of the module's tree) to the watchers of f's
// tree.
func (f *gfile) publish(inst module.Instance, e ns.Event) {
	if f.m.watched.Load() == 0 {
		return
	}
	if h := f.m.hub(f.hubKey(inst), false); h != nil {
		h.Publish(e)
	}
}

// at is the path of f's file, or of name in it.
func (f *gfile) at(name ...string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return path.Join(append([]string{pathOf(f.names)}, name...)...)
}

var _ ns.Watcher = (*gfile)(nil)

// Watch implements ns.Watcher: p is below f's file, and so are the
// paths of the events emitted.
func (f *gfile) Watch(ctx context.Context, p string, recursive bool, emit func(ns.Event)) (func(), error) {
	base := f.at()
	h := f.m.hub(f.hubKey(nil), true)
	sub := emit
	if base != "/" {
		sub = func(e ns.Event) {
			e.Path = strings.TrimPrefix(e.Path, base)
			if e.New != "" {
				e.New = strings.TrimPrefix(e.New, base)
			}
			emit(e)
		}
	}
	stop := h.Watch(path.Join(base, p), recursive, sub)
	f.m.watched.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			f.m.watched.Add(-1)
		})
	}, nil
}

// selfChanged is module.Env's Changed for an instance of d: a change the
// instance made by itself, in its tree of aname "". A write's version
// is a stat's, as the node's owner.
func (d *managed) selfChanged(op, p, newPath string) {
	if d.watched.Load() == 0 {
		return
	}
	h := d.hub(hubKey{}, false)
	if h == nil {
		return
	}
	e := ns.Event{Op: op, Path: path.Clean("/" + p)}
	if newPath != "" {
		e.New = path.Clean("/" + newPath)
	}
	if op == "write" {
		r := d.tryAcquire()
		if r == nil {
			return // stopping: the change is not served
		}
		e.Vers, _ = statVers(r, nil, d.mgr.owner, "", styx.SplitPath(e.Path))
		r.release()
	}
	h.Publish(e)
}

// versOf is the qid.vers that a stat of file gives now (it may differ
// from its Qid's: synth mixes a content version into stat's).
func versOf(ctx context.Context, file styx.File) uint32 {
	if d, err := file.Stat(ctx); err == nil {
		return d.Qid.Vers
	}
	return file.Qid().Vers
}

// freshVers is the qid.vers of f's path in r's instance, looked at anew
// (f's own file is clunked); ok is false if it is not there (removed).
func (f *gfile) freshVers(r *incarnation) (vers uint32, ok bool) {
	f.mu.Lock()
	names := slices.Clone(f.names)
	f.mu.Unlock()
	var n *ns.Namespace
	if _, ok := r.inst.(module.NamespaceInstance); ok {
		n = f.ns
	}
	return statVers(r, n, f.uname, f.aname, names)
}

// statVers is the qid.vers of names in r's instance (its tree for n, if
// it serves each namespace its own), attached as uname with aname.
func statVers(r *incarnation, n *ns.Namespace, uname, aname string, names []string) (vers uint32, ok bool) {
	ctx, cancel := context.WithTimeout(r.ctx, clunkStatTimeout)
	defer cancel()
	a := styx.Attacher(r.inst)
	if pn, ok := r.inst.(module.NamespaceInstance); ok && n != nil {
		a = pn.ForNamespace(n)
	}
	root, err := a.Attach(ctx, uname, aname, nil)
	if err != nil {
		return 0, false
	}
	nf, err := styx.WalkFile(ctx, root, names)
	root.Clunk()
	if err != nil {
		return 0, false
	}
	defer nf.Clunk()
	return versOf(ctx, nf), true
}

// clunkStatTimeout bounds the look at a file's version after its clunk.
const clunkStatTimeout = 5 * time.Second
