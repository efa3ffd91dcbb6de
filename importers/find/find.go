// Package find is #find, discovery on walk: a tree in which a walk to a
// path this node does not hold looks the path up in the DHT (the nodes
// that announce sha1(path + salt), which is what exporters do for every
// path they export to all keys), imports it from the first holder that
// answers, by the key that holder proves, and goes on walking there. So
// with '#find' mounted at /net/find, `ls /net/find/projects/x` lists the
// export /projects/x of whichever node announces it, with no import made
// beforehand.
//
// A walk goes name by name through FUSE, so /projects must be a
// directory when only /projects/x is exported: exporters announce each
// parent of an export with a final slash ("/projects/") as well, and a
// name no node holds is a directory when something is announced below
// it, else not found. Lookups are cached: holders found for a minute
// (TTL), paths found held by none for ten seconds (NegTTL); a holder
// that does not answer is skipped and the next one tried.
package find

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/module"
	"cheshire/plan9"
	"cheshire/styx"
)

// Defaults of Options.
const (
	DefaultTTL        = time.Minute
	DefaultNegTTL     = 10 * time.Second
	DefaultMaxEntries = 1024
	DefaultMaxHolders = 8
	DefaultAttempt    = 5 * time.Second
)

// Options configure a Finder.
type Options struct {
	// Find returns the dial strings (tls!HOST!PORT) of the nodes that
	// announce path, best first.
	Find func(ctx context.Context, path string) ([]string, error)
	// Probe returns the key (z-base-32) of the node at addr.
	Probe func(ctx context.Context, addr string) (string, error)
	// Import imports path from the node holding key, trying addr first;
	// with wait it returns only once the path is reached (or not).
	Import func(ctx context.Context, key, addr, path string, wait bool) (styx.File, error)
	// Self is this node's key: a holder with it is skipped.
	Self string
	// TTL and NegTTL are how long a path's holder, and a path held by
	// none, are remembered (defaults if zero).
	TTL, NegTTL time.Duration
	// MaxEntries bounds the paths remembered; MaxHolders the holders
	// tried for one path; Attempt one holder's probe and import
	// (defaults if zero).
	MaxEntries, MaxHolders int
	Attempt                time.Duration
	// Now is the clock (time.Now if nil); Log gets lookups (none if nil).
	Now func() time.Time
	Log *slog.Logger
}

// A Finder is the #find tree. It implements styx.Attacher.
type Finder struct {
	o Options

	mu    sync.Mutex
	cache map[string]*entry  // guarded by mu: by path
	dirs  map[string]dirMark // guarded by mu: by path, whether something is announced below it

	lookups, found, skipped atomic.Uint64
}

// dirMark is what a lookup of a path's parent announce ("PATH/") gave.
type dirMark struct {
	below   bool
	expires time.Time
}

// An entry is what a lookup of one path gave: a holder, or none.
type entry struct {
	done    chan struct{} // closed when the lookup ends
	expires time.Time     // set before done is closed
	key     string        // the holder's key; "" if none was found
	addr    string        // where it answered
	root    styx.File     // an import of the path from it, held while the entry lives
}

// New returns a Finder.
func New(o Options) *Finder {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.NegTTL == 0 {
		o.NegTTL = DefaultNegTTL
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxHolders == 0 {
		o.MaxHolders = DefaultMaxHolders
	}
	if o.Attempt == 0 {
		o.Attempt = DefaultAttempt
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Finder{o: o, cache: map[string]*entry{}, dirs: map[string]dirMark{}}
}

// Attach implements styx.Attacher: the root of the discovery tree.
func (f *Finder) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return &dir{f: f, path: "/"}, nil
}

// Stats are a Finder's counts.
type Stats struct {
	Lookups uint64 // DHT lookups made (cache misses)
	Found   uint64 // lookups that found a holder that answered
	Skipped uint64 // holders that did not answer, or failed the import
	Cached  int    // paths remembered now
}

// Stats returns the counts.
func (f *Finder) Stats() Stats {
	f.mu.Lock()
	n := len(f.cache)
	f.mu.Unlock()
	return Stats{Lookups: f.lookups.Load(), Found: f.found.Load(), Skipped: f.skipped.Load(), Cached: n}
}

// Close drops every cached import.
func (f *Finder) Close() error {
	f.mu.Lock()
	old := f.cache
	f.cache = map[string]*entry{}
	f.dirs = map[string]dirMark{}
	f.mu.Unlock()
	for _, e := range old {
		e.release()
	}
	return nil
}

// release clunks the entry's import once its lookup is over.
func (e *entry) release() {
	go func() {
		<-e.done
		if e.root != nil {
			e.root.Clunk()
		}
	}()
}

// holder returns the holder of p: from the cache, or by a lookup (one at
// a time per path; others wait for it). It returns "" for a path held by
// none. A failed DHT lookup is not remembered.
func (f *Finder) holder(ctx context.Context, p string) (key, addr string, err error) {
	for {
		now := f.o.Now()
		f.mu.Lock()
		e := f.cache[p]
		if e != nil {
			select {
			case <-e.done:
				if now.After(e.expires) {
					delete(f.cache, p)
					e.release()
					e = nil
				}
			default:
			}
		}
		mine := e == nil
		if mine {
			f.evictLocked(now)
			e = &entry{done: make(chan struct{})}
			f.cache[p] = e
		}
		f.mu.Unlock()
		if mine {
			err := f.lookup(ctx, p, e)
			if err != nil {
				f.mu.Lock()
				if f.cache[p] == e {
					delete(f.cache, p)
				}
				f.mu.Unlock()
			}
			close(e.done)
			return e.key, e.addr, err
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-e.done:
		}
		if !e.expires.IsZero() {
			return e.key, e.addr, nil
		}
		// That lookup failed: try our own.
	}
}

// below reports whether some node announces a path below p (its
// advertiser announces "p/" for each export under p), remembered for
// TTL, or NegTTL when none does.
func (f *Finder) below(ctx context.Context, p string) (bool, error) {
	now := f.o.Now()
	f.mu.Lock()
	m, ok := f.dirs[p]
	f.mu.Unlock()
	if ok && !now.After(m.expires) {
		return m.below, nil
	}
	f.lookups.Add(1)
	addrs, err := f.o.Find(ctx, strings.TrimSuffix(p, "/")+"/")
	if err != nil {
		return false, fmt.Errorf("find %s/: %w", p, err)
	}
	m = dirMark{below: len(addrs) > 0, expires: now.Add(f.o.NegTTL)}
	if m.below {
		m.expires = now.Add(f.o.TTL)
	}
	f.mu.Lock()
	if len(f.dirs) >= f.o.MaxEntries {
		for k, v := range f.dirs {
			if now.After(v.expires) {
				delete(f.dirs, k)
			}
		}
		if len(f.dirs) >= f.o.MaxEntries {
			clear(f.dirs)
		}
	}
	f.dirs[p] = m
	f.mu.Unlock()
	return m.below, nil
}

// forget drops what is remembered of p.
func (f *Finder) forget(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.cache[p]; e != nil {
		select {
		case <-e.done:
			delete(f.cache, p)
			e.release()
		default:
		}
	}
}

// evictLocked makes room for one more entry: expired ones go, and at the
// bound the one that expires first.
func (f *Finder) evictLocked(now time.Time) {
	if len(f.cache) < f.o.MaxEntries {
		return
	}
	var first string
	var at time.Time
	for p, e := range f.cache {
		select {
		case <-e.done:
		default:
			continue // a lookup under way
		}
		if now.After(e.expires) {
			delete(f.cache, p)
			e.release()
			continue
		}
		if first == "" || e.expires.Before(at) {
			first, at = p, e.expires
		}
	}
	if len(f.cache) >= f.o.MaxEntries && first != "" {
		f.cache[first].release()
		delete(f.cache, first)
	}
}

// lookup finds p's holders in the DHT and keeps the first that answers.
func (f *Finder) lookup(ctx context.Context, p string, e *entry) error {
	f.lookups.Add(1)
	addrs, err := f.o.Find(ctx, p)
	if err != nil {
		f.o.Log.Info("find: lookup", "path", p, "err", err)
		return fmt.Errorf("find %s: %w", p, err)
	}
	if len(addrs) > f.o.MaxHolders {
		addrs = addrs[:f.o.MaxHolders]
	}
	for _, a := range addrs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		key, root, err := f.try(ctx, a, p)
		if err != nil {
			f.skipped.Add(1)
			f.o.Log.Info("find: holder skipped", "path", p, "addr", a, "err", err)
			continue
		}
		if root == nil {
			continue // ourselves
		}
		f.found.Add(1)
		e.key, e.addr, e.root = key, a, root
		e.expires = f.o.Now().Add(f.o.TTL)
		f.o.Log.Info("find: found", "path", p, "key", key, "addr", a)
		return nil
	}
	e.expires = f.o.Now().Add(f.o.NegTTL)
	return nil
}

// try probes the node at addr for its key and imports p from it; a nil
// root with no error is this node itself.
func (f *Finder) try(ctx context.Context, addr, p string) (string, styx.File, error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Attempt)
	defer cancel()
	key, err := f.o.Probe(ctx, addr)
	if err != nil {
		return "", nil, err
	}
	if key == f.o.Self {
		return key, nil, nil
	}
	root, err := f.o.Import(ctx, key, addr, p, true)
	return key, root, err
}

// dir is a directory of the discovery tree that no node was found to
// hold: its path, and nothing in it.
type dir struct {
	f    *Finder
	path string
}

var _ styx.File = (*dir)(nil)

func qidOf(p string) styx.Qid {
	h := fnv.New64a()
	h.Write([]byte(p))
	return styx.Qid{Type: styx.QTDIR, Path: h.Sum64()}
}

// Qid implements styx.File.
func (d *dir) Qid() styx.Qid { return qidOf(d.path) }

// Walk implements styx.File: name by name, each path is looked up; the
// first one some node holds is imported from it and the rest of the
// walk goes on there.
func (d *dir) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	cur := d.path
	var qids []styx.Qid
	for i, name := range names {
		if name == ".." {
			cur = path.Dir(cur)
			qids = append(qids, qidOf(cur))
			continue
		}
		cur = path.Join(cur, name)
		key, addr, err := d.f.holder(ctx, cur)
		if err != nil {
			// The DHT cannot be asked (or the walk was flushed): asking
			// it again below would fail the same way.
			return qids, nil, err
		}
		if key == "" {
			below, err := d.f.below(ctx, cur)
			if err == nil && !below {
				err = fmt.Errorf("%s: %w (no node announces it)", cur, plan9.ErrNotFound)
			}
			if err != nil {
				return qids, nil, err
			}
			qids = append(qids, qidOf(cur))
			continue
		}
		rq, nf, err := d.f.walkAt(ctx, key, addr, cur, names[i+1:])
		if len(rq) == 0 {
			d.f.forget(cur) // the holder went: look again next time
		}
		qids = append(qids, rq...)
		if nf == nil {
			if err == nil {
				err = plan9.ErrNotFound
			}
			return qids, nil, err
		}
		return qids, nf, nil
	}
	return qids, &dir{f: d.f, path: cur}, nil
}

// walkAt walks rest from the root of p imported from key, and returns
// the qids of p and of rest, and the file reached, holding an import of
// its own (so it outlives the cache's).
func (f *Finder) walkAt(ctx context.Context, key, addr, p string, rest []string) ([]styx.Qid, styx.File, error) {
	root, err := f.o.Import(ctx, key, addr, p, false)
	if err != nil {
		return nil, nil, err
	}
	_, top, err := root.Walk(ctx, nil)
	if err != nil {
		root.Clunk()
		return nil, nil, err
	}
	h := &held{root: root, f: f, key: key, addr: addr, p: p}
	qids := []styx.Qid{top.Qid()}
	if len(rest) == 0 {
		h.File = top
		return qids, h, nil
	}
	rq, nf, err := top.Walk(ctx, rest)
	top.Clunk()
	qids = append(qids, rq...)
	if nf == nil || len(rq) < len(rest) {
		if nf != nil {
			nf.Clunk()
		}
		root.Clunk()
		return qids, nil, err
	}
	h.File = nf
	return qids, h, nil
}

// Open implements styx.File.
func (d *dir) Open(ctx context.Context, mode uint8) (uint32, error) {
	if mode&3 != styx.OREAD {
		return 0, plan9.ErrPerm
	}
	return 0, nil
}

// Create implements styx.File.
func (d *dir) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	return nil, 0, errors.New("find: create prohibited: the tree shows what other nodes hold")
}

// Read implements styx.File.
func (d *dir) Read(ctx context.Context, p []byte, off int64) (int, error) { return 0, plan9.ErrIsDir }

// ReadDir implements styx.File: the names below this path that are
// known to be held now (from the cache).
func (d *dir) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	prefix := strings.TrimSuffix(d.path, "/") + "/"
	seen := map[string]bool{}
	var out []styx.Dir
	now := d.f.o.Now()
	d.f.mu.Lock()
	for p, e := range d.f.cache {
		select {
		case <-e.done:
		default:
			continue
		}
		if e.key == "" || now.After(e.expires) || !strings.HasPrefix(p, prefix) {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(p, prefix), "/")
		if !seen[name] {
			seen[name] = true
			out = append(out, dirEntry(path.Join(d.path, name)))
		}
	}
	d.f.mu.Unlock()
	return out, nil
}

func dirEntry(p string) styx.Dir {
	name := path.Base(p)
	if p == "/" {
		name = "/"
	}
	return styx.Dir{Qid: qidOf(p), Mode: styx.DMDIR | 0555, Name: name, Uid: "find", Gid: "find", Muid: "find"}
}

// Write implements styx.File.
func (d *dir) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrIsDir
}

// Stat implements styx.File.
func (d *dir) Stat(ctx context.Context) (styx.Dir, error) { return dirEntry(d.path), nil }

// Wstat implements styx.File.
func (d *dir) Wstat(ctx context.Context, st styx.Dir) error {
	return errors.New("find: wstat prohibited")
}

// Remove implements styx.File.
func (d *dir) Remove(ctx context.Context) error {
	return errors.New("find: remove prohibited")
}

// Clunk implements styx.File.
func (d *dir) Clunk() error { return nil }

// held is a file of an import that keeps the import (its root, one
// reference to the connection) until it is clunked; each file walked or
// created from it gets an import of its own.
type held struct {
	styx.File
	root         styx.File
	f            *Finder
	key, addr, p string
}

// hold wraps nf with an import of its own.
func (h *held) hold(ctx context.Context, nf styx.File) (styx.File, error) {
	root, err := h.f.o.Import(ctx, h.key, h.addr, h.p, false)
	if err != nil {
		nf.Clunk()
		return nil, err
	}
	return &held{File: nf, root: root, f: h.f, key: h.key, addr: h.addr, p: h.p}, nil
}

// Walk implements styx.File.
func (h *held) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	qids, nf, err := h.File.Walk(ctx, names)
	if nf == nil {
		return qids, nil, err
	}
	hf, err := h.hold(ctx, nf)
	if err != nil {
		return nil, nil, err
	}
	return qids, hf, nil
}

// Create implements styx.File.
func (h *held) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	nf, iounit, err := h.File.Create(ctx, name, perm, mode)
	if err != nil {
		return nil, 0, err
	}
	hf, err := h.hold(ctx, nf)
	if err != nil {
		return nil, 0, err
	}
	return hf, iounit, nil
}

// Clunk implements styx.File: the file, then its import.
func (h *held) Clunk() error {
	err := h.File.Clunk()
	h.root.Clunk()
	return err
}

// Module is #find as a module of the node: each start makes a Finder of
// o, and its stop drops the Finder's cached imports.
func Module(o Options, version string) module.Module { return &findModule{o: o, version: version} }

type findModule struct {
	o       Options
	version string
}

// Manifest implements module.Module. #find is mounted where the user
// wants it ('mount #find /net/find'), not by default: every walk in it
// may make the node look paths up and dial other nodes.
func (m *findModule) Manifest() module.Manifest {
	return module.Manifest{Name: "find", Version: m.version, Deps: []string{"dht"},
		Description: "discovery on walk: paths other nodes export, found through the DHT"}
}

// CheckConfig implements module.Module: #find has no settings.
func (m *findModule) CheckConfig(cfg module.Config) error {
	if len(cfg.Entries) > 0 {
		e := cfg.Entries[0]
		return e.Errorf("module find has no setting %q", e.Key)
	}
	return nil
}

// Start implements module.Module.
func (m *findModule) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	o := m.o
	if env.Log != nil {
		o.Log = env.Log
	}
	return findInstance{New(o)}, nil
}

type findInstance struct{ *Finder }

func (i findInstance) Stop(ctx context.Context) error { return i.Close() }
