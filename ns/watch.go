// Watches: /ns/watch, the events of a path of the namespace as lines.
//
// A watch maps the user's path through the mount table to the files of
// devices (each member of a union, and for a recursive watch what is
// mounted below the path too), subscribes to each device that can tell
// its changes (a Watcher: the module gate, a namespace file reached
// through an export) or relays from the node an import reaches, and
// maps the paths of the events back to the user's. Events go to a
// bounded queue per watch, read as lines.

package ns

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// Limits of watches.
const (
	// DefaultMaxWatches is how many watches one user may hold at once
	// (WithMaxWatches).
	DefaultMaxWatches = 64
	// WatchQueue is how many events a watch holds for its reader; past
	// it, events are dropped and counted (an "overflow N" line).
	WatchQueue = 1024
)

// An Event is one change of a watched file, or a note of the watch
// itself (lost, overflow). Its line is "create PATH", "write PATH VERS",
// "remove PATH", "rename OLD NEW", "wstat PATH", "lost PATH" or
// "overflow N"; paths are quoted as rc(1) does when they need it.
type Event struct {
	Op   string // create, write, remove, rename, wstat, lost, overflow
	Path string // absolute
	New  string // rename: the new path
	Vers uint32 // write: the file's qid.vers after the write
	N    int    // overflow: events dropped
}

// String is the event's line, without its newline.
func (e Event) String() string {
	switch e.Op {
	case "write":
		return "write " + plan9.Quote(e.Path) + " " + strconv.FormatUint(uint64(e.Vers), 10)
	case "rename":
		return "rename " + plan9.Quote(e.Path) + " " + plan9.Quote(e.New)
	case "overflow":
		return "overflow " + strconv.Itoa(e.N)
	}
	return e.Op + " " + plan9.Quote(e.Path)
}

// ParseEvent parses an event's line (its newline optional), as another
// node sends it.
func ParseEvent(line string) (Event, error) {
	words, err := plan9.Tokenize(strings.TrimSuffix(line, "\n"))
	if err != nil {
		return Event{}, fmt.Errorf("bad event %q: %w", line, err)
	}
	bad := func() (Event, error) { return Event{}, fmt.Errorf("bad event %q", line) }
	if len(words) < 2 {
		return bad()
	}
	e := Event{Op: words[0]}
	switch e.Op {
	case "create", "remove", "wstat", "lost":
		if len(words) != 2 {
			return bad()
		}
		e.Path = words[1]
	case "write":
		if len(words) != 3 {
			return bad()
		}
		v, err := strconv.ParseUint(words[2], 10, 32)
		if err != nil {
			return bad()
		}
		e.Path, e.Vers = words[1], uint32(v)
	case "rename":
		if len(words) != 3 {
			return bad()
		}
		e.Path, e.New = words[1], words[2]
	case "overflow":
		n, err := strconv.Atoi(words[1])
		if err != nil || n < 0 || len(words) != 2 {
			return bad()
		}
		e.N = n
		return e, nil
	default:
		return bad()
	}
	if !strings.HasPrefix(e.Path, "/") || e.Op == "rename" && !strings.HasPrefix(e.New, "/") {
		return bad()
	}
	e.Path = path.Clean(e.Path)
	if e.New != "" {
		e.New = path.Clean(e.New)
	}
	return e, nil
}

// A Watcher is a mounted device's file (what its server attached) that
// tells the changes of its tree: the module gate is one, and so is a
// namespace's file, the root of an export. Watch calls emit with each
// change at p (a path of the device's tree, "/" its root, as reached
// from this file) and, with recursive, anywhere below it; without, at
// p and its direct entries. Events' paths are in the same terms. emit
// must not block and may be called from several goroutines at once.
// stop ends the subscription; no emit call starts after it returns.
type Watcher interface {
	Watch(ctx context.Context, p string, recursive bool, emit func(Event)) (stop func(), err error)
}

// A Hub fans the events of one tree out to its watchers, each getting
// those at or below the path it watches. A file server that sees its
// changes (the module gate) publishes them to a Hub and implements
// Watcher with it. The zero Hub is ready to use.
type Hub struct {
	n    atomic.Int32 // subscribers, read without mu by Active
	mu   sync.RWMutex
	subs map[*hubSub]struct{} // guarded by mu
}

type hubSub struct {
	path      string
	recursive bool
	emit      func(Event)
}

// Active reports whether anyone watches, so that a publisher can skip
// making events no one would see.
func (h *Hub) Active() bool { return h.n.Load() > 0 }

// Watch calls emit with the events Published at p (and below it, as
// Watcher says) until stop is called.
func (h *Hub) Watch(p string, recursive bool, emit func(Event)) (stop func()) {
	s := &hubSub{path: path.Clean("/" + p), recursive: recursive, emit: emit}
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[*hubSub]struct{}{}
	}
	h.subs[s] = struct{}{}
	h.n.Add(1)
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.n.Add(-1)
			h.mu.Unlock()
		})
	}
}

// Publish gives e to the watchers of its paths.
func (h *Hub) Publish(e Event) {
	if !h.Active() {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs {
		if s.covers(e.Path) || e.Op == "rename" && s.covers(e.New) {
			s.emit(e)
		}
	}
}

func (s *hubSub) covers(p string) bool {
	if s.recursive {
		return under(p, s.path)
	}
	return p == s.path || path.Dir(p) == s.path && p != "/"
}

// under reports whether p is dir or below it.
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// rebase maps p, a path in terms where the watched file is from, to
// terms where it is to: from itself and what is below it, and, for a
// rename of the watched file itself, its siblings. ok is false for a
// path outside both.
func rebase(p, from, to string) (string, bool) {
	switch {
	case p == from:
		return to, true
	case under(p, from):
		return path.Join(to, strings.TrimPrefix(p, from)), true
	case from != "/" && to != "/" && path.Dir(p) == path.Dir(from):
		return path.Join(path.Dir(to), path.Base(p)), true
	}
	return "", false
}

// rebaseEvent maps e's paths with rebase; ok is false if none maps.
func rebaseEvent(e Event, from, to string) (Event, bool) {
	if e.Op == "overflow" {
		return e, true
	}
	p, ok := rebase(e.Path, from, to)
	if !ok && e.Op != "rename" {
		return e, false
	}
	if e.Op == "rename" {
		n, nok := rebase(e.New, from, to)
		if !ok && !nok {
			return e, false
		}
		if !ok {
			// Renamed in from a sibling: the new name is what is seen.
			return Event{Op: "create", Path: n}, true
		}
		if !nok {
			return Event{Op: "remove", Path: p}, true
		}
		e.New = n
	}
	e.Path = p
	return e, true
}

// WithMaxWatches sets how many watches one user may hold at once
// (DefaultMaxWatches if not set); a remote key's watches count as its
// user's, or as the key's when it is no user.
func WithMaxWatches(n int) Option { return func(m *Manager) { m.maxWatches = n } }

// takeWatch counts a watch of user, or fails at the cap.
func (m *Manager) takeWatch(user string) error {
	limit := m.maxWatches
	if limit == 0 {
		limit = DefaultMaxWatches
	}
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	if m.watches[user] >= limit {
		return fmt.Errorf("too many watches: at most %d per user", limit)
	}
	if m.watches == nil {
		m.watches = map[string]int{}
	}
	m.watches[user]++
	return nil
}

func (m *Manager) giveWatch(user string) {
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	if m.watches[user]--; m.watches[user] <= 0 {
		delete(m.watches, user)
	}
}

// Watch subscribes emit to the changes at the namespace path p (and
// below it with recursive), events' paths being paths of the
// namespace: the device (each member of a union) that p reaches, and
// for a recursive watch those mounted below p. A change made through
// another path of the same files (a bind elsewhere) is told with the
// path watched. p must exist and be readable by the namespace's user.
func (ns *Namespace) Watch(ctx context.Context, p string, recursive bool, emit func(Event)) (stop func(), err error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("watch: %q: path must be absolute", p)
	}
	p = path.Clean(p)
	c, err := ns.resolve(ctx, p, true)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	defer c.clunk()
	d, err := (&file{ns: ns, c: c}).Stat(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch: %s: %w", p, err)
	}
	if !plan9.Allowed(d.Mode, d.Uid, d.Gid, ns.user, nil, plan9.OREAD) {
		return nil, fmt.Errorf("watch: %s: %w", p, plan9.ErrPerm)
	}
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	n, err := ns.watchChan(ctx, c, p, recursive, emit, &stops)
	if err != nil {
		stopAll()
		return nil, err
	}
	if recursive {
		for _, below := range ns.mountsBelow(p) {
			bc, err := ns.resolve(ctx, below, true)
			if err != nil {
				continue // a mount point gone, or a node away: nothing to watch there now
			}
			k, err := ns.watchChan(ctx, bc, below, true, emit, &stops)
			bc.clunk()
			if err != nil {
				// What is mounted below is watched as far as it can be:
				// one node away must not refuse the whole watch.
				ns.mgr.log.Info("watch: not watched below", "user", ns.user, "path", below, "err", err)
				continue
			}
			n += k
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("watch: %s: %w: no device below it tells its changes", p, plan9.ErrNotSupported)
	}
	return stopAll, nil
}

// watchChan subscribes to the devices of c, reached as user path p, and
// returns how many it subscribed to.
func (ns *Namespace) watchChan(ctx context.Context, c *chn, p string, recursive bool, emit func(Event), stops *[]func()) (int, error) {
	if c.union != nil {
		n := 0
		for _, m := range c.union {
			k, err := ns.watchChan(ctx, m.c, p, recursive, emit, stops)
			if err != nil {
				return n, err
			}
			n += k
		}
		return n, nil
	}
	dev := c.dev
	if dev.imported {
		stop, err := ns.relay(ctx, dev, c.dpath, p, recursive, emit)
		if err != nil {
			return 0, err
		}
		*stops = append(*stops, stop)
		return 1, nil
	}
	w, ok := dev.root.(Watcher)
	if !ok {
		return 0, nil
	}
	base := c.dpath
	stop, err := w.Watch(ctx, base, recursive, func(e Event) {
		if e, ok := rebaseEvent(e, base, p); ok {
			emit(e)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("watch: %s: %w", p, err)
	}
	*stops = append(*stops, stop)
	return 1, nil
}

// mountsBelow lists the mount points strictly below p, each once.
func (ns *Namespace) mountsBelow(p string) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range ns.Commands() {
		if len(c.Args) < 2 {
			continue
		}
		old := c.Args[1]
		if c.Op == "import" {
			old = c.Args[len(c.Args)-1]
		}
		old = path.Clean(old)
		if old != p && under(old, p) && !seen[old] {
			seen[old] = true
			out = append(out, old)
		}
	}
	return out
}

// Watch implements Watcher for a namespace's file used as a device (an
// export's root in a remote key's view): the watch is made in the
// file's own namespace.
func (f *file) Watch(ctx context.Context, p string, recursive bool, emit func(Event)) (func(), error) {
	base := f.c.path
	full := path.Join(base, p)
	return f.ns.Watch(ctx, full, recursive, func(e Event) {
		if e, ok := rebaseEvent(e, base, "/"); ok {
			emit(e)
		} else if e.Op == "lost" {
			emit(Event{Op: "lost", Path: "/"})
		}
	})
}

// Watch implements Watcher: an export read-only is watched as it is.
func (r readOnly) Watch(ctx context.Context, p string, recursive bool, emit func(Event)) (func(), error) {
	w, ok := r.File.(Watcher)
	if !ok {
		return nil, plan9.ErrNotSupported
	}
	return w.Watch(ctx, p, recursive, emit)
}

// A watch is one open of a watch file: written once with "watch PATH
// [recursive]", then read as lines of events.
type watch struct {
	m    *Manager
	ns   *Namespace
	user string                          // counted against for the cap
	prep func(ctx context.Context) error // before the watch is made (a view refreshes its exports)

	mu      sync.Mutex
	started bool          // guarded by mu
	closed  bool          // guarded by mu
	q       []Event       // guarded by mu: not read yet; an overflow event may end it, past WatchQueue
	part    []byte        // guarded by mu: the rest of a line a short read cut
	wake    chan struct{} // guarded by mu: closed when q gets an event
	stop    func()        // guarded by mu
}

func newWatch(m *Manager, ns *Namespace, user string) *watch {
	return &watch{m: m, ns: ns, user: user, wake: make(chan struct{})}
}

// watchCmds is the ctl table of a watch file.
var watchCmds = []synth.Cmd{{Name: "watch", Min: 1, Max: 2, Usage: "watch PATH [recursive]"}}

// write starts the watch a line names.
func (w *watch) write(ctx context.Context, data []byte) (int, error) {
	_, args, err := synth.ParseCtl(string(data), watchCmds)
	if err != nil {
		return 0, err
	}
	recursive := false
	if len(args) == 2 {
		if args[1] != "recursive" {
			return 0, fmt.Errorf("bad watch option %q: want recursive", args[1])
		}
		recursive = true
	}
	w.mu.Lock()
	if w.started || w.closed {
		w.mu.Unlock()
		return 0, errors.New("watch: already watching: open the file again for another")
	}
	w.started = true
	w.mu.Unlock()
	fail := func(err error) (int, error) {
		w.mu.Lock()
		w.started = false
		w.mu.Unlock()
		return 0, err
	}
	if err := w.m.takeWatch(w.user); err != nil {
		return fail(fmt.Errorf("watch: %w", err))
	}
	if w.prep != nil {
		if err := w.prep(ctx); err != nil {
			w.m.giveWatch(w.user)
			return fail(err)
		}
	}
	stop, err := w.ns.Watch(ctx, args[0], recursive, w.emit)
	if err != nil {
		w.m.giveWatch(w.user)
		return fail(err)
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		stop()
		w.m.giveWatch(w.user)
		return 0, plan9.ErrHungup
	}
	w.stop = stop
	w.mu.Unlock()
	return len(data), nil
}

// emit queues e: a write right after a write of the same path replaces
// it (a cp of a big file is one line when the reader lags), and an
// event past the queue's room is counted in an overflow event at its
// end, so the reader keeps its place and learns how many it missed.
func (w *watch) emit(e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	dropped := 1
	if e.Op == "overflow" {
		dropped = e.N // told by a node relayed
	}
	if n := len(w.q); n > 0 {
		last := &w.q[n-1]
		switch {
		case last.Op == "overflow":
			last.N += dropped
			return
		case e.Op == "write" && last.Op == "write" && last.Path == e.Path:
			last.Vers = e.Vers
			return
		case n >= WatchQueue:
			w.q = append(w.q, Event{Op: "overflow", N: dropped})
			return
		}
	}
	w.q = append(w.q, e)
	close(w.wake)
	w.wake = make(chan struct{})
}

// read returns whole lines of events, waiting for one if there is none;
// a line longer than p is given in pieces.
func (w *watch) read(ctx context.Context, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.started {
		return 0, nil // nothing to tell before the watch line
	}
	for len(w.part) == 0 && len(w.q) == 0 {
		if w.closed {
			return 0, nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			w.mu.Lock()
			return 0, ctx.Err()
		}
		w.mu.Lock()
	}
	if len(w.part) > 0 {
		n := copy(p, w.part)
		w.part = w.part[n:]
		return n, nil
	}
	n := 0
	for len(w.q) > 0 {
		line := w.q[0].String() + "\n"
		if n+len(line) > len(p) {
			if n == 0 {
				k := copy(p, line)
				w.part = []byte(line[k:])
				w.q = w.q[1:]
				n = k
			}
			break
		}
		n += copy(p[n:], line)
		w.q = w.q[1:]
	}
	if len(w.q) == 0 {
		w.q = nil // let the backing array go
	}
	return n, nil
}

// close ends the watch; a read waiting returns end of file.
func (w *watch) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	stop, started := w.stop, w.stop != nil
	w.stop = nil
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
	if started {
		stop()
		w.m.giveWatch(w.user)
	}
}

// watchFile is /ns/watch: each open is a watch of its own.
func watchFile(ns *Namespace) *synth.File {
	return synth.NewFile("watch", 0666, synth.HandlerFunc(func(ctx context.Context, mode uint8) (synth.Handle, error) {
		return watchHandle{newWatch(ns.mgr, ns, ns.user)}, nil
	}))
}

type watchHandle struct{ w *watch }

func (h watchHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return h.w.read(ctx, p)
}

func (h watchHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return h.w.write(ctx, p)
}

func (h watchHandle) Close(ctx context.Context) error {
	h.w.close()
	return nil
}

var _ styx.File = (*svcFile)(nil)
