package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"

	"cheshire/plan9"
	"cheshire/synth"
)

// A principal is who uses a fragments directory: the key its fragments
// are kept under, whether it may use every key's (this node's owner and
// the nodes it trusts: DIR/users, `holders add`, storage contracts), and
// for the others the offer's quota that bounds it (nil for the trusted:
// none).
type principal struct {
	key      string
	all      bool
	quota    *quota
	closed   error  // why it may store nothing (no offer), or nil
	userName string // the synth user it attached as
}

// fragmentsDir serves this node's disk to the nodes that place
// fragments on it: create NAME and write it (the clunk answers once it
// is synced), read it, remove it; a NAME.list file is a file's signed
// list, checked and kept only if no later version is held. who says who
// a request's user is, or refuses it. Each key's fragments are its own:
// another key that is not trusted neither lists, reads nor removes
// them, except that NAME@PUB, where PUB is the hex of the public key of
// a file (its verify cap) whose list here names fragment NAME, reads it
// whoever stored it: how a node with the verify cap repairs.
func (s *Store) fragmentsDir(who func(ctx context.Context) (principal, error)) *synth.Dir {
	d := synth.NewDir("fragments", 0777)
	detach := func(name string) { d.Remove(name) }
	d.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		p, err := who(ctx)
		if err != nil {
			return nil, nil
		}
		keys := []string{p.key}
		if p.all {
			if keys, err = s.disk.keys(); err != nil {
				return nil, err
			}
		}
		var names []string
		for _, k := range keys {
			names = append(names, s.disk.names(k)...)
		}
		slices.Sort(names)
		var out []synth.Node
		for _, n := range slices.Compact(names) {
			if f := s.resolveFrag(p, n); f != nil {
				out = append(out, s.fragNode(*f, detach))
			}
		}
		return out, nil
	})
	d.SetLookup(func(ctx context.Context, name string) (synth.Node, error) {
		p, err := who(ctx)
		if err != nil {
			return nil, err
		}
		f := s.resolveFrag(p, name)
		if f == nil {
			return nil, nil
		}
		f.walk = name
		return s.fragNode(*f, detach), nil
	})
	d.SetCreate(func(ctx context.Context, name string, perm uint32, mode uint8) (synth.Node, error) {
		p, err := who(ctx)
		if err != nil {
			return nil, err
		}
		if err := checkName(name); err != nil {
			return nil, err
		}
		if p.closed != nil {
			return nil, p.closed
		}
		return s.fragNode(frag{p: p, key: p.key, name: name}, detach), nil
	})
	d.SetRemove(func(ctx context.Context, name string) error {
		p, err := who(ctx)
		if err != nil {
			return err
		}
		if err := checkName(name); err != nil {
			return err
		}
		if isListName(name) && p.all {
			// A trusted node removes the file: every copy of its list.
			keys, _ := s.disk.keys()
			found := false
			for _, k := range keys {
				if s.disk.remove(k, name) == nil {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("store: no list %s: %w", name[:8], plan9.ErrNotFound)
			}
			return nil
		}
		f := s.resolveFrag(p, name)
		if f == nil || f.ro {
			return fmt.Errorf("store: no fragment %s: %w", cut(name, 8), plan9.ErrNotFound)
		}
		return s.disk.remove(f.key, f.name)
	})
	return d
}

// A frag is a fragment or list as p sees it: held under key (a list:
// written to p's copy, read as the latest of any key's), and ro if p
// may only read it (another key's fragment, read by its file's key).
type frag struct {
	p    principal
	key  string
	name string
	ro   bool
	list bool   // a list: read as the latest held by any key
	walk string // the name it was walked to, if not name
}

// resolveFrag finds walk name for p: p's own fragment, or any key's if
// p may use them all, or NAME@PUB; a list, whoever stored it. nil if
// none.
func (s *Store) resolveFrag(p principal, name string) *frag {
	if isListName(name) {
		if s.disk.owner(name) == "" {
			return nil
		}
		return &frag{p: p, key: p.key, name: name, list: true}
	}
	if n, pub, ok := strings.Cut(name, "@"); ok {
		if f := s.resolveFrag(p, n); f != nil {
			return f
		}
		pk, err := hex.DecodeString(pub)
		if err != nil || len(pk) != 32 || !isHexName(n) || !s.disk.listNames(pk, n) {
			return nil
		}
		if k := s.disk.owner(n); k != "" {
			return &frag{p: p, key: k, name: n, ro: true}
		}
		return nil
	}
	if !isHexName(name) {
		return nil
	}
	if s.disk.size(p.key, name) >= 0 {
		return &frag{p: p, key: p.key, name: name}
	}
	if p.all {
		if k := s.disk.owner(name); k != "" {
			return &frag{p: p, key: k, name: name}
		}
	}
	return nil
}

func (s *Store) fragNode(f frag, detach func(string)) synth.Node {
	walked := f.name
	if f.walk != "" {
		walked = f.walk
	}
	return synth.NewFile(walked, 0666, fragHandler{s: s, f: f, detach: func() { detach(walked) }})
}

// fragHandler is one held fragment or list.
type fragHandler struct {
	s      *Store
	f      frag
	detach func()
}

func (h fragHandler) Length(ctx context.Context) int64 {
	if h.f.list {
		data, err := h.s.disk.getList(h.f.name)
		if err != nil {
			return 0
		}
		return int64(len(data))
	}
	return max(h.s.disk.size(h.f.key, h.f.name), 0)
}

func (h fragHandler) Truncate(ctx context.Context, size int64) error { return nil }

func (h fragHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	if synth.User(ctx) != h.f.p.userName {
		// A node created by another principal, still in the directory.
		return nil, plan9.ErrPerm
	}
	if mode&3 == plan9.OREAD {
		if h.f.list {
			data, err := h.s.disk.getList(h.f.name)
			if err != nil {
				return nil, err
			}
			return synth.Contents(data), nil
		}
		r, err := h.s.disk.open(h.f.key, h.f.name)
		if err != nil {
			return nil, err
		}
		return &fragReadHandle{r: r}, nil
	}
	if h.f.ro {
		return nil, fmt.Errorf("store: fragment %s is another node's: %w", h.f.name[:8], plan9.ErrPerm)
	}
	if h.f.p.closed != nil {
		return nil, h.f.p.closed
	}
	if isListName(h.f.name) {
		return &listWriteHandle{s: h.s, key: h.f.p.key, q: h.f.p.quota, name: h.f.name, detach: h.detach}, nil
	}
	w, err := h.s.disk.create(h.f.p.key, h.f.name, h.f.p.quota)
	if err != nil {
		return nil, err
	}
	return &fragWriteHandle{w: w, sealed: -1, detach: h.detach}, nil
}

type fragReadHandle struct{ r diskReader }

func (f *fragReadHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return f.r.ReadAt(ctx, p, off)
}
func (f *fragReadHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}
func (f *fragReadHandle) Close(ctx context.Context) error { f.r.Close(); return nil }

// fragWriteHandle writes a fragment. The writer seals it with a write
// of no bytes at its final length; Close (the clunk) then syncs it and
// puts it in place, so the writer's clunk is its acknowledgement. A
// fragment clunked unsealed (its writer gave up, or the connection was
// lost mid-write) is thrown away.
type fragWriteHandle struct {
	w      *diskWriter
	detach func()
	mu     sync.Mutex
	sealed int64 // -1 until sealed
}

func (f *fragWriteHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}

func (f *fragWriteHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > maxShard*maxStripes/16 {
		return 0, fmt.Errorf("store: fragment too large")
	}
	if len(p) == 0 {
		f.mu.Lock()
		f.sealed = off
		f.mu.Unlock()
		return 0, nil
	}
	if err := f.w.WriteAt(ctx, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *fragWriteHandle) Close(ctx context.Context) error {
	defer f.detach()
	f.mu.Lock()
	sealed := f.sealed
	f.mu.Unlock()
	if sealed < 0 {
		f.w.Abort()
		return fmt.Errorf("store: bad fragment: not sealed, discarded")
	}
	if n, err := f.w.size(); err != nil || n != sealed {
		f.w.Abort()
		return fmt.Errorf("store: fragment sealed at %d bytes does not match what came", sealed)
	}
	return f.w.Commit()
}

// listWriteHandle takes a list whole and stores it at clunk.
type listWriteHandle struct {
	s      *Store
	detach func()
	key    string
	q      *quota
	name   string
	mu     sync.Mutex
	data   []byte
}

func (l *listWriteHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}

func (l *listWriteHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if off < 0 || off+int64(len(p)) > maxList {
		return 0, fmt.Errorf("store: list too large")
	}
	if l.q != nil && off+int64(len(p)) > l.q.PerKey {
		// Not held in memory only to be refused at the clunk.
		return 0, fmt.Errorf("%w for key %s (a list of %d bytes, %d a key)", errQuota, short(l.key), off+int64(len(p)), l.q.PerKey)
	}
	if need := int(off) + len(p); need > len(l.data) {
		l.data = append(l.data, make([]byte, need-len(l.data))...)
	}
	copy(l.data[off:], p)
	return len(p), nil
}

func (l *listWriteHandle) Close(ctx context.Context) error {
	defer l.detach()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.disk.putList(l.key, l.name, l.data, l.q)
}

// userPrincipal is a user of /store/fragments in the node's namespace:
// the owner (this node, every key's fragments) or a user of DIR/users
// (another node, trusted).
func (s *Store) userPrincipal(ctx context.Context) (principal, error) {
	user := synth.User(ctx)
	if user == s.opts.Owner {
		return principal{key: s.opts.Self, all: true, userName: user}, nil
	}
	if k, ok := s.users()[user]; ok && isKeyName(k) {
		return principal{key: k, all: true, userName: user}, nil
	}
	return principal{}, plan9.ErrPerm
}

// keyPrincipal is a node that attached by its key (HolderAttach): a
// trusted node, or any other, which stores fragments only while this
// node offers space, and within the offer's quota.
func (s *Store) keyPrincipal(ctx context.Context) (principal, error) {
	key := synth.User(ctx)
	if !isKeyName(key) {
		return principal{}, plan9.ErrPerm
	}
	if key == s.opts.Self || s.trusted(key) {
		return principal{key: key, all: true, userName: key}, nil
	}
	s.mu.Lock()
	o := s.offer
	s.mu.Unlock()
	p := principal{key: key, quota: &quota{PerKey: o.PerKey, Total: o.Total}, userName: key}
	if o.Total <= 0 {
		// It still reads by a file's key (NAME@PUB: a repairer), and
		// reads and removes what it stored while space was offered.
		p.closed = fmt.Errorf("store: this node offers no space to key %s: %w", short(key), plan9.ErrPerm)
	}
	return p, nil
}
