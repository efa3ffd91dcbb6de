// Watches across nodes: the "#watch" service a remote key attaches on
// the connection imports share, and the relay that watches a path of an
// import through it.

package ns

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/styx"
)

// WatchService is the aname of the watch service between nodes.
const WatchService = "#watch"

// Relay backoff: how long a relay waits between attempts to watch again
// on a node it lost.
const (
	relayMinBackoff = 100 * time.Millisecond
	relayMaxBackoff = 2 * time.Second
)

// WithWatchService serves "#watch" to remote keys (WithKeyService): a
// key attaching with that aname gets a watch file, as /ns/watch, whose
// paths are those of the namespace the key would import (its user's if
// the users file maps it, else the view of what is exported to it), so
// a node that imports this one can watch what it imported.
func WithWatchService() Option {
	return func(m *Manager) { WithKeyService(WatchService, m.attachWatch)(m) }
}

// attachWatch attaches key to the watch service.
func (m *Manager) attachWatch(ctx context.Context, key, rest string) (styx.File, error) {
	pub, err := nodekey.Decode(key)
	if err != nil {
		return nil, err
	}
	if user, err := m.userOf(pub); err == nil {
		ns, err := m.acquire(ctx, user)
		if err != nil {
			return nil, err
		}
		return newSvcRoot(m, ns, user, nil, func() { m.release(ns) }), nil
	}
	f, err := m.AttachRemote(ctx, key, "")
	if err != nil {
		return nil, err
	}
	vr, ok := f.(viewRoot)
	if !ok {
		f.Clunk()
		return nil, errors.New("ns: watch: the view of a key has no root")
	}
	prep := func(ctx context.Context) error { _, _, err := vr.v.refresh(ctx); return err }
	return newSvcRoot(m, vr.v.ns, viewUser(key), prep, func() { f.Clunk() }), nil
}

// svcShared is what the files of one attach of the service share: the
// namespace, held until the last of them is clunked.
type svcShared struct {
	m       *Manager
	ns      *Namespace
	user    string
	prep    func(ctx context.Context) error
	mu      sync.Mutex
	refs    int // guarded by mu
	release func()
}

// svcFile is a file of the watch service: the root attached, which is
// only walked (cloned), or a clone, which is one watch.
type svcFile struct {
	s *svcShared
	w *watch // nil for the root
}

func newSvcRoot(m *Manager, ns *Namespace, user string, prep func(context.Context) error, release func()) *svcFile {
	return &svcFile{s: &svcShared{m: m, ns: ns, user: user, prep: prep, refs: 1, release: release}}
}

func (f *svcFile) Qid() styx.Qid { return styx.Qid{Type: styx.QTFILE, Path: 1} }

func (f *svcFile) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	if len(names) > 0 {
		return nil, nil, plan9.ErrWalkNoDir
	}
	f.s.mu.Lock()
	f.s.refs++
	f.s.mu.Unlock()
	w := newWatch(f.s.m, f.s.ns, f.s.user)
	w.prep = f.s.prep
	return nil, &svcFile{s: f.s, w: w}, nil
}

func (f *svcFile) Open(ctx context.Context, mode uint8) (uint32, error) {
	if f.w == nil {
		return 0, errors.New("watch: open a clone of the service's root, not the root")
	}
	return 0, nil
}

func (f *svcFile) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	return nil, 0, plan9.ErrCreate
}

func (f *svcFile) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return f.w.read(ctx, p)
}

func (f *svcFile) ReadDir(ctx context.Context) ([]styx.Dir, error) { return nil, plan9.ErrNotDir }

func (f *svcFile) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return f.w.write(ctx, p)
}

func (f *svcFile) Stat(ctx context.Context) (styx.Dir, error) {
	d := styx.NullDir()
	d.Type, d.Dev, d.Qid = 0, 0, f.Qid()
	d.Mode, d.Atime, d.Mtime, d.Length = 0666, 0, 0, 0
	d.Name, d.Uid, d.Gid, d.Muid = "watch", f.s.user, f.s.user, f.s.user
	return d, nil
}

func (f *svcFile) Wstat(ctx context.Context, d styx.Dir) error { return plan9.ErrWstat }

func (f *svcFile) Remove(ctx context.Context) error { return plan9.ErrRemove }

func (f *svcFile) Clunk() error {
	if f.w != nil {
		f.w.close()
	}
	f.s.mu.Lock()
	f.s.refs--
	last := f.s.refs == 0
	f.s.mu.Unlock()
	if last {
		f.s.release()
	}
	return nil
}

// relay watches remote path of the import dev (its device path dpath),
// seen here as p, through the node's watch service, and keeps doing so
// across reconnections: each gap is told by one "lost P" event once the
// watch is made again, since events may have been missed in it. The
// first attempt is made at once, so that a node away or a path it does
// not have is the error of the watch.
func (ns *Namespace) relay(ctx context.Context, dev *device, dpath, p string, recursive bool, emit func(Event)) (func(), error) {
	im := ns.mgr.importer
	if im == nil {
		return nil, fmt.Errorf("watch: %s: %w: this node imports nothing", p, plan9.ErrNotSupported)
	}
	remote := path.Join("/", dev.aname, dpath)
	words := []string{"watch", remote}
	if recursive {
		words = append(words, "recursive")
	}
	r := &relay{ns: ns, key: dev.spec, remote: remote, p: p, line: plan9.Join(words) + "\n", emit: emit}
	root, err := im.Import(ctx, dev.spec, WatchService, true)
	if err != nil {
		return nil, fmt.Errorf("watch: %s: %w", p, err)
	}
	r.root = root
	f, err := r.open(ctx)
	if err != nil {
		root.Clunk()
		return nil, fmt.Errorf("watch: %s: %w", p, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	go r.run(rctx, f)
	return cancel, nil
}

// A relay is one remote watch, relayed.
type relay struct {
	ns     *Namespace
	key    string
	remote string // the path watched on the node
	p      string // the path it is here
	line   string // the watch command
	emit   func(Event)
	root   styx.File // the service's root on the node, held while relaying
}

// open makes the watch on the node's connection of the moment.
func (r *relay) open(ctx context.Context) (styx.File, error) {
	_, f, err := r.root.Walk(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := f.Open(ctx, styx.ORDWR); err != nil {
		f.Clunk()
		return nil, err
	}
	if _, err := f.Write(ctx, []byte(r.line), 0); err != nil {
		f.Clunk()
		return nil, err
	}
	return f, nil
}

// run reads the node's events and emits them as paths here until ctx
// ends, watching again after each loss.
func (r *relay) run(ctx context.Context, f styx.File) {
	defer r.root.Clunk()
	buf := make([]byte, 8192)
	var pend []byte
	for {
		n, err := f.Read(ctx, buf, 0)
		if ctx.Err() != nil {
			go f.Clunk()
			return
		}
		if err != nil || n == 0 {
			go f.Clunk()
			r.ns.mgr.log.Info("watch relay lost", "user", r.ns.user, "path", r.p, "key", r.key, "err", err)
			if f = r.reopen(ctx); f == nil {
				return
			}
			pend = pend[:0]
			r.emit(Event{Op: "lost", Path: r.p})
			continue
		}
		pend = append(pend, buf[:n]...)
		for {
			i := strings.IndexByte(string(pend), '\n')
			if i < 0 {
				break
			}
			line := string(pend[:i])
			pend = pend[i+1:]
			e, err := ParseEvent(line)
			if err != nil {
				r.ns.mgr.log.Warn("watch relay: event dropped", "key", r.key, "err", err)
				r.emit(Event{Op: "overflow", N: 1}) // counted, as a drop is
				continue
			}
			if e, ok := rebaseEvent(e, r.remote, r.p); ok && ctx.Err() == nil {
				r.emit(e)
			}
		}
		if len(pend) > 64<<10 {
			pend = pend[:0] // no line that long comes from a sane node
		}
	}
}

// reopen watches again, waiting between attempts, until it succeeds or
// ctx ends (nil).
func (r *relay) reopen(ctx context.Context) styx.File {
	wait := relayMinBackoff
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		f, err := r.open(actx)
		cancel()
		if err == nil {
			r.ns.mgr.log.Info("watch relay resumed", "user", r.ns.user, "path", r.p, "key", r.key)
			return f
		}
		wait = min(2*wait, relayMaxBackoff)
	}
}
