// Package ns implements per-user namespaces: a mount table with bind,
// mount and unmount, union directories with Plan 9's before/after/create
// flags, walks that cross mount points (and `..` across them), the
// namespace as files (/ns/ns and /ns/ctl), and watches of its paths
// (/ns/watch, also across imports). A Manager gives each attaching user
// a Namespace of their own and serves it as a styx.Attacher.
package ns

import (
	"context"
	"fmt"
	"slices"
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
	// imported is set for an import by key: spec is the key, aname the
	// remote path, and watches below it are relayed from that node.
	imported bool
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
	dpath string   // the file's path in its device's own tree ("/" its root), for watches
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
	return &chn{dev: c.dev, file: f, qid: c.qid, path: p, dpath: c.dpath}, nil
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
