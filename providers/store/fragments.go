package store

import (
	"context"
	"fmt"
	"os"
	"sync"

	"cheshire/plan9"
	"cheshire/synth"
)

// fragmentsDir serves this node's disk to the nodes that place
// fragments on it: create NAME and write it (the clunk answers once it
// is synced), read it, remove it; a NAME.list file is a file's signed
// list, checked and kept only if no later version is held. Only the
// owner and the users of DIR/users (other nodes' keys) get in.
func (s *Store) fragmentsDir() *synth.Dir {
	d := synth.NewDir("fragments", 0777)
	s.frags = d
	d.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		if !s.authorised(synth.User(ctx)) {
			return nil, nil
		}
		ents, err := os.ReadDir(s.disk.dir)
		if err != nil {
			return nil, fmt.Errorf("store: fragments: %w", err)
		}
		var out []synth.Node
		for _, e := range ents {
			if checkName(e.Name()) == nil {
				out = append(out, s.fragNode(e.Name()))
			}
		}
		return out, nil
	})
	d.SetLookup(func(ctx context.Context, name string) (synth.Node, error) {
		if !s.authorised(synth.User(ctx)) {
			return nil, plan9.ErrPerm
		}
		if s.disk.size(name) < 0 {
			return nil, nil
		}
		return s.fragNode(name), nil
	})
	d.SetCreate(func(ctx context.Context, name string, perm uint32, mode uint8) (synth.Node, error) {
		if !s.authorised(synth.User(ctx)) {
			return nil, plan9.ErrPerm
		}
		if err := checkName(name); err != nil {
			return nil, err
		}
		return s.fragNode(name), nil
	})
	d.SetRemove(func(ctx context.Context, name string) error {
		if !s.authorised(synth.User(ctx)) {
			return plan9.ErrPerm
		}
		return s.disk.remove(name)
	})
	return d
}

// detachFrag drops a created fragment's node from the directory (synth
// adds what is created), so that later walks look it up on disk.
func (s *Store) detachFrag(name string) {
	s.frags.Remove(name)
}

func (s *Store) fragNode(name string) synth.Node {
	return synth.NewFile(name, 0666, fragHandler{s: s, name: name})
}

// fragHandler is one held fragment or list.
type fragHandler struct {
	s    *Store
	name string
}

func (h fragHandler) Length(ctx context.Context) int64 { return max(h.s.disk.size(h.name), 0) }

func (h fragHandler) Truncate(ctx context.Context, size int64) error { return nil }

func (h fragHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	if !h.s.authorised(synth.User(ctx)) {
		return nil, plan9.ErrPerm
	}
	if mode&3 == plan9.OREAD {
		r, err := h.s.disk.open(h.name)
		if err != nil {
			return nil, err
		}
		return &fragReadHandle{r: r}, nil
	}
	if isListName(h.name) {
		return &listWriteHandle{s: h.s, name: h.name}, nil
	}
	w, err := h.s.disk.create(h.name)
	if err != nil {
		return nil, err
	}
	return &fragWriteHandle{w: w, sealed: -1, detach: func() { h.s.detachFrag(h.name) }}, nil
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
	if fi, err := f.w.f.Stat(); err != nil || fi.Size() != sealed {
		f.w.Abort()
		return fmt.Errorf("store: fragment sealed at %d bytes does not match what came", sealed)
	}
	return f.w.Commit()
}

// listWriteHandle takes a list whole and stores it at clunk.
type listWriteHandle struct {
	s    *Store
	name string
	mu   sync.Mutex
	data []byte
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
	if need := int(off) + len(p); need > len(l.data) {
		l.data = append(l.data, make([]byte, need-len(l.data))...)
	}
	copy(l.data[off:], p)
	return len(p), nil
}

func (l *listWriteHandle) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.disk.putList(l.name, l.data)
}
