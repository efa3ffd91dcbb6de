package synth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// Lock order: a Dir's mu before the mu of any node under it. No code
// holds a child's lock while taking its parent's.

// A Node is a *Dir or a *File.
type Node interface {
	// Name is the node's name in its directory.
	Name() string
	// Mode is the node's permission and type bits (DMDIR for a Dir).
	Mode() uint32
	// Owner returns the node's owner and group; "" means the Server's
	// owner.
	Owner() (uid, gid string)
	// SetOwner sets the owner and group; a gid of "" means the owner's
	// name, a uid of "" the Server's owner.
	SetOwner(uid, gid string)
	// SetMode sets the permission bits and DMAPPEND, DMEXCL, DMTMP;
	// DMDIR stays as the node's type has it.
	SetMode(perm uint32)

	base() *node
}

// node is the part common to Dir and File.
type node struct {
	mu      sync.Mutex
	name    string    // guarded by mu
	uid     string    // guarded by mu: "" means the Server's owner
	gid     string    // guarded by mu: "" means the owner
	mode    uint32    // guarded by mu
	mtime   time.Time // guarded by mu
	path    uint64    // guarded by mu
	vers    uint32    // guarded by mu
	srv     *Server   // guarded by mu: nil until served
	parent  *Dir      // guarded by mu: nil for a root or a removed node
	removed bool      // guarded by mu
	excl    bool      // guarded by mu: a DMEXCL file is open
}

func (b *node) base() *node { return b }

// Name returns the node's name.
func (b *node) Name() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.name
}

// Mode returns the node's mode.
func (b *node) Mode() uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode
}

// Owner returns the node's owner and group as set.
func (b *node) Owner() (uid, gid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.uid, b.gid
}

// SetOwner sets the node's owner and group.
func (b *node) SetOwner(uid, gid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.uid, b.gid = uid, gid
}

// modeBits are the bits of a mode that SetMode and wstat may change.
const modeBits = styx.DMAPPEND | styx.DMEXCL | styx.DMTMP | 0777

// SetMode sets the node's permission bits.
func (b *node) SetMode(perm uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mode = b.mode&styx.DMDIR | perm&modeBits
}

// attrs is a consistent copy of a node's attributes, owner resolved.
type attrs struct {
	name, uid, gid string
	mode           uint32
	mtime          time.Time
	qid            styx.Qid
	parent         *Dir
	removed        bool
}

func (b *node) attrs(s *Server) attrs {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attrsLocked(s)
}

func (b *node) attrsLocked(s *Server) attrs {
	a := attrs{name: b.name, uid: b.uid, gid: b.gid, mode: b.mode,
		mtime: b.mtime, qid: b.qidLocked(), parent: b.parent, removed: b.removed}
	if a.uid == "" {
		a.uid = s.owner
	}
	if a.gid == "" {
		a.gid = a.uid
	}
	return a
}

func (b *node) qidLocked() styx.Qid {
	var t uint8
	if b.mode&styx.DMDIR != 0 {
		t |= styx.QTDIR
	}
	if b.mode&styx.DMAPPEND != 0 {
		t |= styx.QTAPPEND
	}
	if b.mode&styx.DMEXCL != 0 {
		t |= styx.QTEXCL
	}
	if b.mode&styx.DMTMP != 0 {
		t |= styx.QTTMP
	}
	return styx.Qid{Type: t, Vers: b.vers, Path: b.path}
}

func (b *node) qid() styx.Qid {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.qidLocked()
}

// touch records a change: the version goes up and mtime is now.
func (b *node) touch() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.touchLocked()
}

func (b *node) touchLocked() {
	b.vers++
	if b.srv != nil {
		b.mtime = b.srv.now()
	}
}

func allowedAttrs(s *Server, a attrs, user string, want uint8) bool {
	return plan9.Allowed(a.mode, a.uid, a.gid, user, s.member, want)
}

// adopt makes n and the static nodes under it part of s's tree: each gets
// a qid path, and an mtime if it has none. A node already in s is left
// alone, and so is what is under it, which joined s with it or at Add.
func (s *Server) adopt(n Node) {
	b := n.base()
	b.mu.Lock()
	if b.srv == s {
		b.mu.Unlock()
		return
	}
	b.srv = s
	b.path = s.nextPath()
	if b.mtime.IsZero() {
		b.mtime = s.now()
	}
	b.mu.Unlock()
	if d, ok := n.(*Dir); ok {
		d.mu.Lock()
		kids := slices.Clone(d.kids)
		d.mu.Unlock()
		for _, k := range kids {
			s.adopt(k)
		}
	}
}

// A Dir is a directory. Its children are the nodes added to it, in the
// order added, followed by those its generator makes, if it has one.
type Dir struct {
	node
	kids   []Node          // guarded by mu: static children in order
	byName map[string]Node // guarded by mu: static children by name
	gen    func(ctx context.Context) ([]Node, error)
	seen   map[string]genEntry // guarded by mu: generated names
	create func(ctx context.Context, name string, perm uint32, mode uint8) (Node, error)
	remove func(ctx context.Context, name string) error
	rename func(ctx context.Context, oldname, newname string) error
	look   func(ctx context.Context, name string) (Node, error)
	looked map[string]genEntry // guarded by mu: names found by look
	mount  styx.Attacher       // set by NewMount; fixed for the Dir's life
	qids   *qidSpace           // guarded by mu: the qid paths given to mount's files
}

// genEntry is what a Dir remembers of a generated name, so that the node
// made for it keeps its qid path and mtime from one generation to the next.
type genEntry struct {
	path  uint64
	mtime time.Time
}

// NewDir returns an empty directory with permission bits perm.
func NewDir(name string, perm uint32) *Dir {
	d := &Dir{byName: make(map[string]Node)}
	d.name = name
	d.mode = styx.DMDIR | perm&modeBits
	return d
}

// NewMount returns a directory that grafts another file server into the
// tree: a walk that reaches it crosses into the root a attaches (as the
// walking user, with an empty aname) and goes on there, so opens, reads
// and walks below it are a's. The Dir itself only supplies the entry its
// parent lists; its perm governs the walk into it.
func NewMount(name string, perm uint32, a styx.Attacher) *Dir {
	d := NewDir(name, perm)
	d.mount = a
	return d
}

// validName reports whether name may name a node.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsRune(name, '/')
}

// errInTree is the error of adding a node that is in a directory.
var errInTree = errors.New("synth: node is already in a directory")

// Add adds n to d. It fails with plan9.ErrExist if d has a child of that
// name, plan9.ErrBadName if the name is not valid, and an error if n is
// in a directory already.
func (d *Dir) Add(n Node) error {
	if n == nil {
		return errors.New("synth: add of nil node")
	}
	b := n.base()
	b.mu.Lock()
	name, parent := b.name, b.parent
	b.mu.Unlock()
	if !validName(name) {
		return plan9.ErrBadName
	}
	if parent != nil || d.within(n) {
		return errInTree
	}
	d.mu.Lock()
	srv := d.srv
	_, taken := d.byName[name]
	d.mu.Unlock()
	if taken {
		return plan9.ErrExist
	}
	// Adopt before the node is visible, so no one sees it without its qid.
	if srv != nil {
		srv.adopt(n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, taken := d.byName[name]; taken {
		return plan9.ErrExist
	}
	b.mu.Lock()
	if b.parent != nil || b.name != name {
		b.mu.Unlock()
		return errInTree
	}
	b.parent, b.removed = d, false
	b.mu.Unlock()
	d.kids = append(d.kids, n)
	d.byName[name] = n
	d.touchLocked()
	return nil
}

// within reports whether d is n or under it.
func (d *Dir) within(n Node) bool {
	for p := d; p != nil; {
		if Node(p) == n {
			return true
		}
		p.mu.Lock()
		next := p.parent
		p.mu.Unlock()
		p = next
	}
	return false
}

// Remove removes the child name of d. Later walks to it fail with
// plan9.ErrNotFound; fids already on it keep working. Only children that
// were added can be removed; generated ones go when the generator stops
// making them.
func (d *Dir) Remove(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.byName[name]
	if !ok {
		return plan9.ErrNotFound
	}
	d.detachLocked(n)
	return nil
}

// removeNode removes n from d if it is still there.
func (d *Dir) removeNode(n Node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := n.base()
	b.mu.Lock()
	name := b.name
	b.mu.Unlock()
	if d.byName[name] == n {
		d.detachLocked(n)
	}
}

func (d *Dir) detachLocked(n Node) {
	b := n.base()
	b.mu.Lock()
	name := b.name
	b.parent, b.removed = nil, true
	b.mu.Unlock()
	delete(d.byName, name)
	d.kids = slices.DeleteFunc(d.kids, func(k Node) bool { return k == n })
	d.touchLocked()
}

// Lookup returns the child name of d among those added (not generated).
func (d *Dir) Lookup(name string) (Node, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.byName[name]
	return n, ok
}

// SetGen makes d a dynamic directory: gen is called at every walk from d
// and every read of d, and its nodes follow the added children (a
// generated name that an added child has, or one made twice, is skipped).
// The node made for a name keeps the qid path and mtime of the first node
// made for it, as long as each generation makes it; to keep versions as
// well, and the qids of nodes under a generated Dir, gen should return the
// same node for a name each time.
func (d *Dir) SetGen(gen func(ctx context.Context) ([]Node, error)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen = gen
}

// maxLooked is how many names a Dir with a lookup remembers the qid
// paths of; past it, it forgets them all and starts again.
const maxLooked = 4096

// SetLookup lets a walk in d reach names d does not list, such as the
// objects of a store too large to list: when a walk (or a create's check
// that the name is free) finds no added or generated child of that name,
// lookup is called with it, and the node it returns, named name, is the
// child walked to. A nil node fails the walk with "file not found", an
// error with that error. Reads of d do not list such nodes. The node made
// for a name keeps the qid path and mtime of the first one made for it
// while d remembers the name (the last few thousand names).
func (d *Dir) SetLookup(lookup func(ctx context.Context, name string) (Node, error)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.look = lookup
}

// SetCreate allows Tcreate in d (subject to write permission on d): create
// makes the node, which synth adds to d unless create did, owned by the
// creating user and d's group unless create set an owner, and opens with
// mode. Without it, create fails with "create prohibited".
func (d *Dir) SetCreate(create func(ctx context.Context, name string, perm uint32, mode uint8) (Node, error)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.create = create
}

// SetRemove allows Tremove of d's children (subject to write permission on
// d): remove is called with the child's name, and on success synth removes
// the child from d if it is still there. Without it, remove fails with
// "remove prohibited".
func (d *Dir) SetRemove(remove func(ctx context.Context, name string) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.remove = remove
}

// SetRename allows renaming d's children by wstat (subject to write
// permission on d): rename is called with the old and new names, and on
// success synth renames an added child. Without it, renaming fails with
// "wstat prohibited".
func (d *Dir) SetRename(rename func(ctx context.Context, oldname, newname string) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rename = rename
}

func (d *Dir) hooks() (create func(context.Context, string, uint32, uint8) (Node, error),
	remove func(context.Context, string) error, rename func(context.Context, string, string) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.create, d.remove, d.rename
}

// children lists d: the added children, then the generated ones.
func (d *Dir) children(ctx context.Context) ([]Node, error) {
	d.mu.Lock()
	kids, gen := slices.Clone(d.kids), d.gen
	d.mu.Unlock()
	if gen == nil {
		return kids, nil
	}
	made, err := gen(ctx)
	if err != nil {
		return nil, err
	}
	return append(kids, d.adoptGen(made)...), nil
}

// adoptGen gives generated nodes their place under d and returns those
// kept: each valid, new name once, not shadowing an added child.
func (d *Dir) adoptGen(made []Node) []Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	srv := d.srv
	seen := make(map[string]genEntry, len(made))
	kept := made[:0:0]
	changed := false
	var dirs []*Dir
	for _, n := range made {
		if n == nil {
			continue
		}
		b := n.base()
		b.mu.Lock()
		name := b.name
		_, dup := seen[name]
		if !validName(name) || dup || d.byName[name] != nil || n == Node(d) {
			b.mu.Unlock()
			continue
		}
		e, ok := d.seen[name]
		if !ok {
			changed = true
			e.mtime = b.mtime
			if srv != nil {
				e.path = srv.nextPath()
				if e.mtime.IsZero() {
					e.mtime = srv.now()
				}
			}
		}
		seen[name] = e
		b.parent, b.removed, b.srv, b.path = d, false, srv, e.path
		if b.mtime.IsZero() {
			b.mtime = e.mtime
		}
		b.mu.Unlock()
		if sub, ok := n.(*Dir); ok {
			dirs = append(dirs, sub)
		}
		kept = append(kept, n)
	}
	if changed || len(seen) != len(d.seen) {
		d.touchLocked()
	}
	d.seen = seen
	if srv != nil {
		for _, sub := range dirs {
			sub.mu.Lock()
			kids := slices.Clone(sub.kids)
			sub.mu.Unlock()
			for _, k := range kids {
				srv.adopt(k)
			}
		}
	}
	return kept
}

// lookup finds the child name of d, added or generated.
func (d *Dir) lookup(ctx context.Context, name string) (Node, error) {
	if n, ok := d.Lookup(name); ok {
		return n, nil
	}
	d.mu.Lock()
	gen, look := d.gen, d.look
	d.mu.Unlock()
	if gen != nil {
		kids, err := d.children(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range kids {
			if n.Name() == name {
				return n, nil
			}
		}
	}
	if look == nil || !validName(name) {
		return nil, plan9.ErrNotFound
	}
	n, err := look(ctx, name)
	if err != nil {
		return nil, err
	}
	if n == nil || n.Name() != name || n == Node(d) {
		return nil, plan9.ErrNotFound
	}
	d.adoptLooked(n)
	return n, nil
}

// adoptLooked gives n, found by d's lookup, its place under d.
func (d *Dir) adoptLooked(n Node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	srv := d.srv
	b := n.base()
	b.mu.Lock()
	e, ok := d.looked[b.name]
	if !ok {
		e.mtime = b.mtime
		if srv != nil {
			e.path = srv.nextPath()
			if e.mtime.IsZero() {
				e.mtime = srv.now()
			}
		}
		if d.looked == nil || len(d.looked) >= maxLooked {
			d.looked = make(map[string]genEntry)
		}
		d.looked[b.name] = e
	}
	b.parent, b.removed, b.srv, b.path = d, false, srv, e.path
	if b.mtime.IsZero() {
		b.mtime = e.mtime
	}
	b.mu.Unlock()
	if sub, ok := n.(*Dir); ok && srv != nil {
		sub.mu.Lock()
		kids := slices.Clone(sub.kids)
		sub.mu.Unlock()
		for _, k := range kids {
			srv.adopt(k)
		}
	}
}

// renameChild renames n, a child of d, from oldname to newname.
func (d *Dir) renameChild(n Node, oldname, newname string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := n.base()
	if d.byName[oldname] == n {
		delete(d.byName, oldname)
		d.byName[newname] = n
	}
	if e, ok := d.seen[oldname]; ok {
		delete(d.seen, oldname)
		d.seen[newname] = e
	}
	b.mu.Lock()
	b.name = newname
	b.mu.Unlock()
	d.touchLocked()
}
