package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
)

// A holder is a node that keeps fragments: this node (its disk) or
// another, reached by key over 9P at its /store/fragments.
type holder interface {
	Key() string
	// Create starts fragment name; it is on the holder's stable storage
	// once Commit returns nil.
	Create(ctx context.Context, name string) (fragWriter, error)
	Open(ctx context.Context, name string) (fragReader, error)
	// Size is the length of a fragment held, or an error.
	Size(ctx context.Context, name string) (int64, error)
	Remove(ctx context.Context, name string) error
	PutList(ctx context.Context, name string, data []byte) error
	GetList(ctx context.Context, name string) ([]byte, error)
}

type fragWriter interface {
	WriteAt(ctx context.Context, p []byte, off int64) error
	Commit() error
	Abort()
}

type fragReader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Close()
}

// localHolder is this node's own disk.
type localHolder struct {
	key string
	d   *disk
}

func (h localHolder) Key() string { return h.key }
func (h localHolder) Create(ctx context.Context, name string) (fragWriter, error) {
	return h.d.create(h.key, name, nil)
}

// find is the key that holds name here (a reference NAME@PUB names
// NAME), this node's first: this node's owner uses every key's.
func (h localHolder) find(name string) (key, n string) {
	n, _, _ = strings.Cut(name, "@")
	if k := h.d.owner(n); k != "" {
		return k, n
	}
	return h.key, n
}

func (h localHolder) Open(ctx context.Context, name string) (fragReader, error) {
	k, n := h.find(name)
	return h.d.open(k, n)
}
func (h localHolder) Size(ctx context.Context, name string) (int64, error) {
	k, n := h.find(name)
	if sz := h.d.size(k, n); sz >= 0 {
		return sz, nil
	}
	return 0, fmt.Errorf("store: no fragment %s: %w", cut(n, 8), plan9.ErrNotFound)
}
func (h localHolder) Remove(ctx context.Context, name string) error {
	k, n := h.find(name)
	return h.d.remove(k, n)
}
func (h localHolder) PutList(ctx context.Context, name string, data []byte) error {
	return h.d.putList(h.key, name, data, nil)
}
func (h localHolder) GetList(ctx context.Context, name string) ([]byte, error) {
	return h.d.getList(name)
}

// remoteHolder is another node: root gives the root of its
// /store/fragments, on a connection shared with every other use of the
// key; the root is the Store's, never clunked here.
type remoteHolder struct {
	key  string
	root func(ctx context.Context) (styx.File, error)
}

func (h remoteHolder) Key() string { return h.key }

func short(key string) string { return cut(key, 8) }

func (h remoteHolder) walk(ctx context.Context, name string) (styx.File, error) {
	r, err := h.root(ctx)
	if err != nil {
		return nil, err
	}
	f, err := styx.WalkFile(ctx, r, []string{name})
	if err != nil {
		return nil, fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	return f, nil
}

func (h remoteHolder) Create(ctx context.Context, name string) (fragWriter, error) {
	r, err := h.root(ctx)
	if err != nil {
		return nil, err
	}
	d, err := styx.WalkFile(ctx, r, nil)
	if err != nil {
		return nil, fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	f, iounit, err := d.Create(ctx, name, 0600, styx.OWRITE)
	if err != nil {
		d.Clunk()
		return nil, fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	if f != d {
		d.Clunk()
	}
	return &remoteWriter{h: h, f: f, name: name, iounit: int(iounit)}, nil
}

// remoteWriter writes a fragment at a holder; the Tclunk is the commit,
// answered once the holder has synced it, and a stat then makes sure
// (a clunk on a lost connection says nothing).
type remoteWriter struct {
	h      remoteHolder
	f      styx.File
	name   string
	iounit int
	mu     sync.Mutex
	size   int64
	done   bool
}

func (w *remoteWriter) WriteAt(ctx context.Context, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := w.f.Write(ctx, p, off)
		if err != nil {
			return fmt.Errorf("store: holder %s: %w", short(w.h.key), err)
		}
		if n == 0 {
			return fmt.Errorf("store: holder %s: write accepted nothing: %w", short(w.h.key), plan9.ErrIO)
		}
		p, off = p[n:], off+int64(n)
		w.mu.Lock()
		w.size = max(w.size, off)
		w.mu.Unlock()
	}
	return nil
}

func (w *remoteWriter) Commit() error {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return nil
	}
	w.done = true
	size := w.size
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if _, err := w.f.Write(ctx, nil, size); err != nil { // the seal
		w.f.Clunk()
		return fmt.Errorf("store: holder %s: %w", short(w.h.key), err)
	}
	if err := w.f.Clunk(); err != nil {
		return fmt.Errorf("store: holder %s: %w", short(w.h.key), err)
	}
	got, err := w.h.Size(ctx, w.name)
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("store: holder %s: fragment of %d bytes, want %d", short(w.h.key), got, size)
	}
	return nil
}

func (w *remoteWriter) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		w.f.Clunk() // unsealed: the holder throws it away
	}
}

func (h remoteHolder) Open(ctx context.Context, name string) (fragReader, error) {
	f, err := h.walk(ctx, name)
	if err != nil {
		return nil, err
	}
	iounit, err := f.Open(ctx, styx.OREAD)
	if err != nil {
		f.Clunk()
		return nil, fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	if iounit == 0 {
		iounit = 64 << 10
	}
	return &remoteReader{h: h, f: f, iounit: int(iounit)}, nil
}

type remoteReader struct {
	h      remoteHolder
	f      styx.File
	iounit int
}

// readers bounds the Treads of one ReadAt in flight.
const readers = 8

// ReadAt reads p in iounit pieces, several in flight.
func (r *remoteReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	chunks := (len(p) + r.iounit - 1) / r.iounit
	ns := make([]int, chunks)
	errs := make([]error, chunks)
	read := func(c int) {
		for lo, hi := c*r.iounit, min((c+1)*r.iounit, len(p)); lo < hi; {
			n, err := r.f.Read(ctx, p[lo:hi], off+int64(lo))
			ns[c] += n
			lo += n
			if err != nil && !errors.Is(err, io.EOF) {
				errs[c] = err
				return
			}
			if n == 0 {
				return
			}
		}
	}
	if chunks == 1 { // a piece within the iounit, the usual case: no goroutine
		read(0)
	} else {
		sem := make(chan struct{}, readers)
		var wg sync.WaitGroup
		for c := range chunks {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				read(c)
			})
		}
		wg.Wait()
	}
	n := 0
	for c := range chunks {
		if errs[c] != nil {
			return n, fmt.Errorf("store: holder %s: %w", short(r.h.key), errs[c])
		}
		n += ns[c]
		if ns[c] < min(r.iounit, len(p)-c*r.iounit) {
			break
		}
	}
	return n, nil
}

func (r *remoteReader) Close() { r.f.Clunk() }

func (h remoteHolder) Size(ctx context.Context, name string) (int64, error) {
	f, err := h.walk(ctx, name)
	if err != nil {
		return 0, err
	}
	defer f.Clunk()
	d, err := f.Stat(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	return int64(d.Length), nil
}

func (h remoteHolder) Remove(ctx context.Context, name string) error {
	f, err := h.walk(ctx, name)
	if err != nil {
		return err
	}
	if err := f.Remove(ctx); err != nil {
		return fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	return nil
}

func (h remoteHolder) PutList(ctx context.Context, name string, data []byte) error {
	r, err := h.root(ctx)
	if err != nil {
		return err
	}
	if err := styx.WriteFile(ctx, r, name, data, 0600); err != nil {
		return fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	return nil
}

func (h remoteHolder) GetList(ctx context.Context, name string) ([]byte, error) {
	r, err := h.root(ctx)
	if err != nil {
		return nil, err
	}
	data, err := styx.ReadFile(ctx, r, name, maxList)
	if err != nil {
		return nil, fmt.Errorf("store: holder %s: %w", short(h.key), err)
	}
	return data, nil
}

// ref is how fragment i is asked of its holder: NAME@PUB, the file's
// public key in hex, which lets a node that did not store the fragment
// (a repairer with the verify cap) read it there, as the holder keeps a
// list of the file naming it.
func (l *List) ref(i int) string { return l.Frags[i].Name + "@" + hex.EncodeToString(l.Pub) }
