// Package ns implements per-user namespaces: a mount table with bind,
// mount and unmount, union directories with Plan 9's before/after/create
// flags, walks that cross mount points (and `..` across them), and the
// namespace as files (/ns/ns and /ns/ctl). A Manager gives each attaching
// user a Namespace of their own and serves it as a styx.Attacher.
package ns

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// Mount flags, as Plan 9's MREPL, MBEFORE, MAFTER and MCREATE.
const (
	MREPL   = 0
	MBEFORE = 1 << iota
	MAFTER
	MCREATE
)

// FlagsOf converts bind/mount option letters ("bc") to mount flags.
func FlagsOf(letters string) int {
	f := MREPL
	for _, c := range letters {
		switch c {
		case 'b':
			f |= MBEFORE
		case 'a':
			f |= MAFTER
		case 'c':
			f |= MCREATE
		}
	}
	return f
}

// A device is one attached file server: its qids are made unique in the
// namespace by putting the device id in the top 16 bits of qid.path.
type device struct {
	id    uint16
	spec  string // the server as written in ns output: #tmp, tcp!host!port
	aname string
	root  styx.File // attached root, cloned for every use
}

func (d *device) qid(q styx.Qid) styx.Qid {
	q.Path ^= uint64(d.id) << 48
	return q
}

// mountKey identifies a mount point: a file of a device.
type mountKey struct {
	dev  *device
	path uint64
}

// entry is one member of a mount point's union.
type entry struct {
	src    *chn // resolved source, cloned at each crossing
	create bool
	cmd    plan9.NSCmd // the bind or mount that made it, for ns(1) output
	point  mountKey
}

// chn is Plan 9's Chan: a file of a device reached by a namespace path,
// or (for a mount point) the union of its members.
type chn struct {
	dev   *device
	file  styx.File
	qid   styx.Qid // the device's qid, before remapping
	path  string   // cleaned namespace path
	union []member // non-nil: a mount point
}

type member struct {
	c      *chn
	create bool
}

// Qid is the qid seen by clients.
func (c *chn) Qid() styx.Qid {
	if c.union != nil {
		return c.union[0].c.Qid()
	}
	return c.dev.qid(c.qid)
}

func (c *chn) isDir() bool { return c.Qid().Type&styx.QTDIR != 0 }

// clunk clunks c's files; the error is the file's own (a file that
// commits at clunk may refuse what was written), or a union member's.
func (c *chn) clunk() error {
	if c.union != nil {
		var first error
		for _, m := range c.union {
			if err := m.c.clunk(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	if c.file != nil {
		return c.file.Clunk()
	}
	return nil
}

// clone duplicates c (its files are walked with no names), at path p.
func (c *chn) clone(ctx context.Context, p string) (*chn, error) {
	if c.union != nil {
		u := &chn{path: p, union: make([]member, 0, len(c.union))}
		for _, m := range c.union {
			mc, err := m.c.clone(ctx, p)
			if err != nil {
				u.clunk()
				return nil, err
			}
			u.union = append(u.union, member{mc, m.create})
		}
		return u, nil
	}
	_, f, err := c.file.Walk(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &chn{dev: c.dev, file: f, qid: c.qid, path: p}, nil
}

// Namespace is one user's mount table over a private root directory.
type Namespace struct {
	user string
	mgr  *Manager

	rootDev *device

	mu      sync.RWMutex
	table   map[mountKey][]*entry // guarded by mu
	entries []*entry              // guarded by mu: in the order made
	nextDev uint16                // guarded by mu

	saveMu sync.Mutex // serialises saves of the namespace file

	batchMu sync.Mutex // serialises batches
	batch   *undo      // guarded by mu: the batch under way, if any

	exportTx *exportTx // guarded by batchMu: the export changes of the /ns/ctl write under way

	refs int         // guarded by mgr.mu: files handed out and not clunked
	idle *time.Timer // guarded by mgr.mu: drops the namespace when it fires
}

// undo is what a batch needs to put the namespace back as it was: the
// table and entries at its start, and the entries it dropped, whose
// clunks wait for the batch to end.
type undo struct {
	table   map[mountKey][]*entry
	entries []*entry
	dropped []*entry
}

// Batch applies changes as one unit: run's changes are kept if it
// returns nil, and undone otherwise, the namespace then being exactly as
// before. Batches of one namespace are serialised.
func (ns *Namespace) Batch(ctx context.Context, run func(ctx context.Context) error) error {
	ns.batchMu.Lock()
	defer ns.batchMu.Unlock()
	ns.mu.Lock()
	u := &undo{table: make(map[mountKey][]*entry, len(ns.table)), entries: slices.Clone(ns.entries)}
	for k, es := range ns.table {
		u.table[k] = slices.Clone(es)
	}
	ns.batch = u
	ns.mu.Unlock()
	err := run(ctx)
	ns.mu.Lock()
	ns.batch = nil
	var clunk []*entry
	if err == nil {
		clunk = u.dropped
	} else {
		kept := map[*entry]bool{}
		for _, e := range u.entries {
			kept[e] = true
		}
		for _, e := range ns.entries {
			if !kept[e] {
				clunk = append(clunk, e) // made by the batch
			}
		}
		ns.table, ns.entries = u.table, u.entries
	}
	ns.mu.Unlock()
	for _, e := range clunk {
		e.src.clunk()
	}
	return err
}

// User is the namespace's owner.
func (ns *Namespace) User() string { return ns.user }

func newNamespace(ctx context.Context, m *Manager, user string) (*Namespace, error) {
	ns := &Namespace{user: user, mgr: m, table: map[mountKey][]*entry{}, nextDev: 1}
	admin, err := newRootTree().Attach(ctx, rootOwner, "", nil)
	if err != nil {
		return nil, fmt.Errorf("ns: root: %w", err)
	}
	ns.rootDev = &device{id: 0, spec: "#/", root: admin}
	return ns, nil
}

// rootChan returns a new chan for "/" (after any mount on it).
func (ns *Namespace) rootChan(ctx context.Context) (*chn, error) {
	c, err := ns.rootDir(ctx)
	if err != nil {
		return nil, err
	}
	return ns.cross(ctx, c)
}

// rootDir returns a new chan for the root directory itself, not crossing
// what may be mounted on it.
func (ns *Namespace) rootDir(ctx context.Context) (*chn, error) {
	_, f, err := ns.rootDev.root.Walk(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &chn{dev: ns.rootDev, file: f, qid: f.Qid(), path: "/"}, nil
}

// cross replaces c by the union mounted on it, if any.
func (ns *Namespace) cross(ctx context.Context, c *chn) (*chn, error) {
	if c.union != nil {
		return c, nil
	}
	ns.mu.RLock()
	es := ns.table[mountKey{c.dev, c.qid.Path}]
	ns.mu.RUnlock()
	if len(es) == 0 {
		return c, nil
	}
	u := &chn{path: c.path, union: make([]member, 0, len(es))}
	var firstErr error
	for _, e := range es {
		mc, err := e.src.clone(ctx, c.path)
		if err != nil {
			firstErr = err
			continue
		}
		u.union = append(u.union, member{mc, e.create})
	}
	if len(u.union) == 0 {
		return nil, firstErr
	}
	c.clunk()
	return u, nil
}

func (ns *Namespace) isMountPoint(dev *device, q styx.Qid) bool {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return len(ns.table[mountKey{dev, q.Path}]) > 0
}

func join(dir, name string) string { return path.Join(dir, name) }

// walk walks names from c, crossing mount points; `..` is lexical, as in
// Plan 9: it re-walks the parent path from the root. It returns the qids
// seen by clients for each name walked and the final chan, which is nil
// when fewer qids than names are returned.
func (ns *Namespace) walk(ctx context.Context, c *chn, names []string) ([]styx.Qid, *chn, error) {
	qids := make([]styx.Qid, 0, len(names))
	cur, err := c.clone(ctx, c.path)
	if err != nil {
		return nil, nil, err
	}
	for len(names) > 0 {
		if names[0] == ".." {
			p := path.Dir(cur.path)
			nc, err := ns.resolve(ctx, p, true)
			if err != nil {
				cur.clunk()
				return qids, nil, err
			}
			cur.clunk()
			cur = nc
			qids = append(qids, cur.Qid())
			names = names[1:]
			continue
		}
		seg := names
		for i, n := range names {
			if n == ".." {
				seg = names[:i]
				break
			}
		}
		nq, nc, err := ns.walkSeg(ctx, cur, seg)
		qids = append(qids, nq...)
		cur.clunk()
		if nc == nil {
			return qids, nil, err
		}
		cur = nc
		names = names[len(seg):]
	}
	return qids, cur, nil
}

// walkSeg walks names (none of them "..") from c.
func (ns *Namespace) walkSeg(ctx context.Context, c *chn, names []string) ([]styx.Qid, *chn, error) {
	if c.union != nil {
		// Walk the first name in each member in turn; the first that has
		// it wins, then continue from there.
		var lastErr error = plan9.ErrNotFound
		for _, m := range c.union {
			if !m.c.isDir() {
				lastErr = plan9.ErrNotDir
				continue
			}
			q, nc, err := ns.walkSeg(ctx, m.c, names[:1])
			if nc == nil {
				if len(q) == 0 {
					lastErr = err
				}
				continue
			}
			nc.path = join(c.path, names[0])
			if len(names) == 1 {
				return q, nc, nil
			}
			rq, rc, err := ns.walkSeg(ctx, nc, names[1:])
			nc.clunk()
			return append(q, rq...), rc, err
		}
		return nil, nil, lastErr
	}
	if !c.isDir() {
		return nil, nil, plan9.ErrNotDir
	}
	dq, f, err := c.file.Walk(ctx, names)
	// Find the first qid walked that is a mount point.
	hit := -1
	for i, q := range dq {
		if ns.isMountPoint(c.dev, q) {
			hit = i
			break
		}
	}
	if hit < 0 {
		qids := make([]styx.Qid, len(dq))
		for i, q := range dq {
			qids[i] = c.dev.qid(q)
		}
		if len(dq) < len(names) {
			if f != nil {
				f.Clunk()
			}
			if err == nil {
				err = plan9.ErrNotFound
			}
			return qids, nil, err
		}
		p := c.path
		for _, n := range names {
			p = join(p, n)
		}
		return qids, &chn{dev: c.dev, file: f, qid: dq[len(dq)-1], path: p}, nil
	}
	// Re-walk up to the mount point, cross it, and go on from there.
	if f != nil {
		f.Clunk()
	}
	var mf styx.File
	if hit == len(names)-1 && len(dq) == len(names) {
		_, mf, err = c.file.Walk(ctx, names)
	} else {
		var q2 []styx.Qid
		q2, mf, err = c.file.Walk(ctx, names[:hit+1])
		if len(q2) < hit+1 {
			mf = nil
		}
	}
	if mf == nil {
		if err == nil {
			err = plan9.ErrNotFound
		}
		return nil, nil, err
	}
	p := c.path
	for _, n := range names[:hit+1] {
		p = join(p, n)
	}
	mc, err := ns.cross(ctx, &chn{dev: c.dev, file: mf, qid: dq[hit], path: p})
	if err != nil {
		return nil, nil, err
	}
	qids := make([]styx.Qid, 0, len(names))
	for _, q := range dq[:hit] {
		qids = append(qids, c.dev.qid(q))
	}
	qids = append(qids, mc.Qid())
	if hit == len(names)-1 {
		return qids, mc, nil
	}
	rq, rc, err := ns.walkSeg(ctx, mc, names[hit+1:])
	mc.clunk()
	return append(qids, rq...), rc, err
}

// resolve walks the namespace path p from the root. With cross false the
// last element is not replaced by what is mounted on it (as Plan 9's
// Amount: the mount point itself).
func (ns *Namespace) resolve(ctx context.Context, p string, cross bool) (*chn, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%q: path must be absolute", p)
	}
	p = path.Clean(p)
	names := styx.SplitPath(p)
	if !cross {
		if len(names) == 0 {
			return ns.rootDir(ctx)
		}
		parent, err := ns.resolve(ctx, path.Dir(p), true)
		if err != nil {
			return nil, err
		}
		defer parent.clunk()
		last := path.Base(p)
		if parent.union != nil {
			for _, m := range parent.union {
				if !m.c.isDir() || m.c.union != nil {
					continue
				}
				q, f, _ := m.c.file.Walk(ctx, []string{last})
				if len(q) == 1 && f != nil {
					return &chn{dev: m.c.dev, file: f, qid: q[0], path: p}, nil
				}
			}
			return nil, fmt.Errorf("%s: %w", p, plan9.ErrNotFound)
		}
		q, f, err := parent.file.Walk(ctx, []string{last})
		if len(q) != 1 || f == nil {
			if err == nil {
				err = plan9.ErrNotFound
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return &chn{dev: parent.dev, file: f, qid: q[0], path: p}, nil
	}
	root, err := ns.rootChan(ctx)
	if err != nil {
		return nil, err
	}
	defer root.clunk()
	_, c, err := ns.walk(ctx, root, names)
	if c == nil {
		if err == nil {
			err = plan9.ErrNotFound
		}
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

// mountPoint resolves old for bind or mount; a missing final directory in
// the namespace's own root tree is made, so that /n/anything works.
func (ns *Namespace) mountPoint(ctx context.Context, old string, dir bool) (*chn, error) {
	c, err := ns.resolve(ctx, old, false)
	if err == nil || !errors.Is(err, plan9.ErrNotFound) {
		return c, err
	}
	dirp := path.Dir(path.Clean(old))
	parent, perr := ns.resolve(ctx, dirp, false)
	if perr != nil && errors.Is(perr, plan9.ErrNotFound) && dirp != "/" {
		// Make the missing directories above it too, as mkdir -p.
		parent, perr = ns.mountPoint(ctx, dirp, true)
	}
	if perr != nil {
		return nil, err
	}
	defer parent.clunk()
	if parent.union != nil || parent.dev != ns.rootDev || ns.isMountPoint(parent.dev, parent.qid) {
		return nil, err
	}
	_, f, werr := parent.file.Walk(ctx, nil)
	if werr != nil {
		return nil, werr
	}
	perm := uint32(0755) | styx.DMDIR // writable by the root fs alone ("#/"), to make mount points below
	if !dir {
		perm = 0444
	}
	nf, _, cerr := f.Create(ctx, path.Base(old), perm, styx.OREAD)
	if cerr != nil {
		f.Clunk()
		return nil, fmt.Errorf("%s: making mount point: %w", old, cerr)
	}
	nf.Clunk()
	return ns.resolve(ctx, old, false)
}

// Bind makes the file at new (as it resolves now) appear at old, with
// flags MREPL, MBEFORE or MAFTER, optionally MCREATE.
func (ns *Namespace) Bind(ctx context.Context, new, old string, flags int) error {
	src, err := ns.resolve(ctx, new, true)
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	cmd := plan9.NSCmd{Op: "bind", Flags: flagLetters(flags), Args: []string{path.Clean(new), path.Clean(old)}}
	if err := ns.attachAt(ctx, src, old, flags, cmd); err != nil {
		src.clunk()
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// Mount attaches the server spec (an in-process server such as #tmp, or a
// dial string) with aname at old.
func (ns *Namespace) Mount(ctx context.Context, spec, old, aname string, flags int) error {
	dev, err := ns.attachServer(ctx, spec, aname)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	src := &chn{dev: dev, file: dev.root, qid: dev.root.Qid(), path: path.Clean(old)}
	args := []string{spec, path.Clean(old)}
	if aname != "" {
		args = append(args, aname)
	}
	cmd := plan9.NSCmd{Op: "mount", Flags: flagLetters(flags), Args: args}
	if err := ns.attachAt(ctx, src, old, flags, cmd); err != nil {
		dev.root.Clunk()
		return fmt.Errorf("mount: %w", err)
	}
	return nil
}

func (ns *Namespace) attachServer(ctx context.Context, spec, aname string) (*device, error) {
	a, err := ns.mgr.server(ctx, ns, spec)
	if err != nil {
		return nil, err
	}
	root, err := a.Attach(ctx, ns.user, aname, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return ns.newDevice(spec, aname, root), nil
}

// newDevice numbers a newly attached server.
func (ns *Namespace) newDevice(spec, aname string, root styx.File) *device {
	ns.mu.Lock()
	id := ns.nextDev
	ns.nextDev++
	if ns.nextDev == 0 {
		ns.nextDev = 1
	}
	ns.mu.Unlock()
	return &device{id: id, spec: spec, aname: aname, root: root}
}

func flagLetters(flags int) string {
	s := ""
	if flags&MBEFORE != 0 {
		s += "b"
	}
	if flags&MAFTER != 0 {
		s += "a"
	}
	if flags&MCREATE != 0 {
		s += "c"
	}
	return s
}

func (ns *Namespace) attachAt(ctx context.Context, src *chn, old string, flags int, cmd plan9.NSCmd) error {
	pt, err := ns.mountPoint(ctx, old, src.isDir())
	if err != nil {
		return err
	}
	defer pt.clunk()
	if pt.union != nil {
		return fmt.Errorf("%s: mount point is a union", old)
	}
	if pt.isDir() != src.isDir() {
		return fmt.Errorf("%s: %w", old, errors.New("mount point and source must both be directories or both files"))
	}
	key := mountKey{pt.dev, pt.qid.Path}
	e := &entry{src: src, create: flags&MCREATE != 0, cmd: cmd, point: key}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	es := ns.table[key]
	switch {
	case flags&MBEFORE != 0:
		es = append([]*entry{e}, es...)
	case flags&MAFTER != 0:
		es = append(es, e)
	default:
		for _, o := range es {
			ns.dropEntryLocked(o)
		}
		es = []*entry{e}
	}
	ns.table[key] = es
	ns.entries = append(ns.entries, e)
	return nil
}

// dropEntryLocked removes e from the ordered list; the caller fixes the table.
func (ns *Namespace) dropEntryLocked(e *entry) {
	for i, o := range ns.entries {
		if o == e {
			ns.entries = append(ns.entries[:i], ns.entries[i+1:]...)
			break
		}
	}
	if ns.batch != nil {
		ns.batch.dropped = append(ns.batch.dropped, e) // it may come back
		return
	}
	e.src.clunk()
}

// Unmount removes from old what new put there (a bind source path or a
// mount's server spec), or everything when new is empty.
func (ns *Namespace) Unmount(ctx context.Context, new, old string) error {
	pt, err := ns.resolve(ctx, old, false)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	key := mountKey{pt.dev, pt.qid.Path}
	pt.clunk()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	es := ns.table[key]
	if len(es) == 0 {
		return fmt.Errorf("unmount: %s: not mounted", old)
	}
	var keep []*entry
	removed := 0
	for _, e := range es {
		if new == "" || e.cmd.Args[0] == new || (e.cmd.Op == "bind" && e.cmd.Args[0] == path.Clean(new)) {
			ns.dropEntryLocked(e)
			removed++
			continue
		}
		keep = append(keep, e)
	}
	if removed == 0 {
		return fmt.Errorf("unmount: %s is not mounted on %s", new, old)
	}
	if len(keep) == 0 {
		delete(ns.table, key)
	} else {
		ns.table[key] = keep
	}
	return nil
}

// Commands returns the bind and mount commands in effect, in order: the
// namespace in namespace(6) form, as /ns/ns shows it.
func (ns *Namespace) Commands() []plan9.NSCmd {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	cmds := make([]plan9.NSCmd, len(ns.entries))
	for i, e := range ns.entries {
		cmds[i] = e.cmd
	}
	return cmds
}

// String formats the namespace like Plan 9's ns(1).
func (ns *Namespace) String() string {
	var b strings.Builder
	for _, c := range ns.Commands() {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Apply runs one namespace-file command. An import waits until the
// node is reached.
func (ns *Namespace) Apply(ctx context.Context, c plan9.NSCmd) error { return ns.apply(ctx, c, true) }

// apply runs c; wait says whether an import waits for its node.
func (ns *Namespace) apply(ctx context.Context, c plan9.NSCmd, wait bool) error {
	switch c.Op {
	case "import":
		return ns.applyImport(ctx, c, wait)
	case "bind":
		return ns.Bind(ctx, c.Args[0], c.Args[1], FlagsOf(c.Flags))
	case "mount":
		aname := ""
		if len(c.Args) > 2 {
			aname = c.Args[2]
		}
		return ns.Mount(ctx, c.Args[0], c.Args[1], aname, FlagsOf(c.Flags))
	case "unmount":
		if len(c.Args) == 1 {
			return ns.Unmount(ctx, "", c.Args[0])
		}
		return ns.Unmount(ctx, c.Args[0], c.Args[1])
	}
	return fmt.Errorf("%s: not supported in this namespace", c.Op)
}

// Close clunks everything the namespace holds.
func (ns *Namespace) Close() {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, e := range ns.entries {
		e.src.clunk()
	}
	ns.entries = nil
	ns.table = map[mountKey][]*entry{}
}
