package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"path"
	"strings"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// reserved are the names of the root that are not the user's.
var reserved = map[string]bool{"ctl": true, "health": true, "status": true, "fragments": true}

// root builds /store.
func (s *Store) root() *synth.Dir {
	root := s.dirNode("/")
	root.Add(synth.String("health", 0400, s.healthText))
	root.Add(synth.String("status", 0444, s.statusText))
	root.Add(s.fragmentsDir(s.userPrincipal))
	return root
}

// dirNode returns the node of directory p, made once.
func (s *Store) dirNode(p string) *synth.Dir {
	s.mu.Lock()
	if n, ok := s.nodes[p].(*synth.Dir); ok {
		s.mu.Unlock()
		return n
	}
	s.mu.Unlock()
	name := path.Base(p)
	perm := uint32(0700)
	if p == "/" {
		name, perm = "store", 0711 // other nodes walk through to fragments, list nothing
	}
	d := synth.NewDir(name, perm)
	d.Add(synth.Ctl("ctl", 0600, s.cmds(p), func(ctx context.Context) string {
		s.mu.Lock()
		defer s.mu.Unlock()
		return "policy " + s.policyOfLocked(p).String() + "\n"
	}))
	d.SetGen(func(ctx context.Context) ([]synth.Node, error) { return s.list(p), nil })
	d.SetCreate(func(ctx context.Context, name string, perm uint32, mode uint8) (synth.Node, error) {
		return s.create(p, name, perm)
	})
	d.SetRemove(func(ctx context.Context, name string) error { return s.remove(ctx, path.Join(p, name)) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nodes[p].(*synth.Dir); ok {
		return n
	}
	s.nodes[p] = d
	return d
}

// list makes the nodes of directory p: subdirectories, files, and each
// file's caps.
func (s *Store) list(p string) []synth.Node {
	s.mu.Lock()
	var dirs, files []string
	for d := range s.dirs {
		if d != "/" && path.Dir(d) == p {
			dirs = append(dirs, d)
		}
	}
	for f, e := range s.files {
		if path.Dir(f) == p && !e.pending {
			files = append(files, f)
		}
	}
	s.mu.Unlock()
	var out []synth.Node
	for _, d := range sortStrings(dirs) {
		out = append(out, s.dirNode(d))
	}
	for _, f := range sortStrings(files) {
		out = append(out, s.fileNode(f), s.capsNode(f))
	}
	return out
}

func sortStrings(xs []string) []string {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j] < xs[j-1]; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
	return xs
}

func (s *Store) fileNode(p string) synth.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[p]; n != nil {
		return n
	}
	n := synth.NewFile(path.Base(p), 0600, &fileHandler{s: s, path: p})
	s.nodes[p] = n
	return n
}

func (s *Store) capsNode(p string) synth.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[p+".caps"]; n != nil {
		return n
	}
	n := synth.String(path.Base(p)+".caps", 0400, func(ctx context.Context) string {
		s.mu.Lock()
		e := s.files[p]
		s.mu.Unlock()
		if e == nil {
			return ""
		}
		return capsText(e.cap)
	})
	s.nodes[p+".caps"] = n
	return n
}

// capsText is the text of a caps file: the caps the node has of the
// file, strongest first.
func capsText(c Cap) string {
	var b strings.Builder
	if c.CanWrite() {
		fmt.Fprintf(&b, "write %s\n", c)
	}
	if c.CanRead() {
		fmt.Fprintf(&b, "read %s\n", c.Read())
	}
	fmt.Fprintf(&b, "verify %s\n", c.Verify())
	return b.String()
}

// create makes a file or (perm with DMDIR) a directory in directory dir.
func (s *Store) create(dir, name string, perm uint32) (synth.Node, error) {
	if dir == "/" && reserved[name] || name == "ctl" || strings.HasSuffix(name, ".caps") {
		return nil, fmt.Errorf("store: %q is a reserved name: %w", name, plan9.ErrPerm)
	}
	p := path.Join(dir, name)
	if perm&styx.DMDIR != 0 {
		s.mu.Lock()
		_, isFile := s.files[p]
		if _, ok := s.dirs[p]; ok || isFile {
			s.mu.Unlock()
			return nil, plan9.ErrExist
		}
		s.dirs[p] = nil
		s.mu.Unlock()
		if err := s.save(); err != nil {
			return nil, err
		}
		return s.dirNode(p), nil
	}
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("store: key: %w", err)
	}
	s.mu.Lock()
	if _, ok := s.dirs[p]; ok {
		s.mu.Unlock()
		return nil, plan9.ErrExist
	}
	if _, ok := s.files[p]; ok {
		s.mu.Unlock()
		return nil, plan9.ErrExist
	}
	s.files[p] = &entry{cap: NewWriteCap(seed), pending: true}
	s.mu.Unlock()
	return s.fileNode(p), nil
}

// addFile adds a file of cap c at p (import-cap).
func (s *Store) addFile(ctx context.Context, p string, c Cap) error {
	l, err := s.findList(ctx, c)
	if err != nil {
		return err
	}
	dir := path.Dir(p)
	s.mu.Lock()
	_, dirOK := s.dirs[dir]
	_, isDir := s.dirs[p]
	_, isFile := s.files[p]
	switch {
	case !dirOK:
		s.mu.Unlock()
		return fmt.Errorf("store: no directory %s: %w", dir, plan9.ErrNotFound)
	case isDir || isFile || dir == "/" && reserved[path.Base(p)]:
		s.mu.Unlock()
		return fmt.Errorf("store: %s: %w", p, plan9.ErrExist)
	}
	s.files[p] = &entry{cap: c, size: l.Size, k: l.K, m: l.M}
	s.mu.Unlock()
	return s.save()
}

// remove removes the file or empty directory at p; a file's fragments
// are released if this node holds its write cap.
func (s *Store) remove(ctx context.Context, p string) error {
	s.mu.Lock()
	e := s.files[p]
	if e == nil {
		if _, ok := s.dirs[p]; !ok {
			s.mu.Unlock()
			return plan9.ErrNotFound
		}
		for q := range s.dirs {
			if q != p && path.Dir(q) == p {
				s.mu.Unlock()
				return fmt.Errorf("store: directory not empty: %w", plan9.ErrPerm)
			}
		}
		for q := range s.files {
			if path.Dir(q) == p {
				s.mu.Unlock()
				return fmt.Errorf("store: directory not empty: %w", plan9.ErrPerm)
			}
		}
		delete(s.dirs, p)
		delete(s.nodes, p)
		s.mu.Unlock()
		return s.save()
	}
	if e.busy {
		s.mu.Unlock()
		return fmt.Errorf("store: %s is busy", p)
	}
	delete(s.files, p)
	delete(s.nodes, p)
	delete(s.nodes, p+".caps")
	s.mu.Unlock()
	if err := s.save(); err != nil {
		return err
	}
	if e.cap.CanWrite() && !e.pending {
		s.release(ctx, e.cap, nil)
	}
	return nil
}

// release removes the fragments and lists of the file of c at their
// holders, best effort; keep, if not nil, is a version whose fragments
// stay.
func (s *Store) release(ctx context.Context, c Cap, keep *List) {
	l, err := s.findList(ctx, c)
	if err != nil {
		return
	}
	keepNames := make(map[string]bool)
	if keep != nil {
		for _, f := range keep.Frags {
			keepNames[f.Name] = true
		}
	}
	for i, fr := range l.Frags {
		if k := l.Holders[i]; k != "" && !keepNames[fr.Name] {
			if err := s.holder(k).Remove(ctx, fr.Name); err != nil {
				s.log.Info("store: fragment not released", "holder", k, "err", err)
			}
		}
	}
	if keep == nil {
		seen := map[string]bool{}
		for _, k := range append(l.Holders, s.opts.Self) {
			if k != "" && !seen[k] {
				seen[k] = true
				s.holder(k).Remove(ctx, c.IDHex()+".list")
			}
		}
	}
}

// fileHandler serves a file's content: an open for writing starts a new
// version, committed at clunk; an open for reading reads the latest.
type fileHandler struct {
	s    *Store
	path string
}

// Version changes with every version written, so that clients caching
// by qid.vers (FUSE) see the new content.
func (h *fileHandler) Version(ctx context.Context) uint32 {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if e := h.s.files[h.path]; e != nil {
		return e.version
	}
	return 0
}

func (h *fileHandler) Length(ctx context.Context) int64 {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if e := h.s.files[h.path]; e != nil {
		return e.size
	}
	return 0
}

// Truncate allows truncation to 0 only (what an open with OTRUNC does).
func (h *fileHandler) Truncate(ctx context.Context, size int64) error {
	if size != 0 {
		return fmt.Errorf("store: truncate to %d not supported", size)
	}
	return nil
}

func (h *fileHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	s := h.s
	s.mu.Lock()
	e := s.files[h.path]
	if e == nil {
		s.mu.Unlock()
		return nil, plan9.ErrNotFound
	}
	m := mode & 3
	if m == styx.OWRITE || m == styx.ORDWR || mode&styx.OTRUNC != 0 {
		if !e.cap.CanWrite() {
			s.mu.Unlock()
			return nil, fmt.Errorf("store: a %s cap cannot write: %w", kindName(e.cap), plan9.ErrPerm)
		}
		if m == styx.ORDWR {
			s.mu.Unlock()
			return nil, fmt.Errorf("store: open for reading and writing not supported")
		}
		s.mu.Unlock()
		return &writeHandle{h: h, e: e, trunc: mode&styx.OTRUNC != 0}, nil
	}
	c := e.cap
	s.mu.Unlock()
	if !c.CanRead() {
		return nil, fmt.Errorf("store: a verify cap cannot read: %w", plan9.ErrPerm)
	}
	return s.newReader(ctx, c)
}

func kindName(c Cap) string {
	switch c.Kind {
	case capWrite:
		return "write"
	case capRead:
		return "read"
	}
	return "verify"
}

// endWrite ends a write of e: on success (l not nil) the file is the
// new version, saved; on failure a new file is forgotten.
func (s *Store) endWrite(p string, e *entry, l *List, acks, holders int) error {
	s.mu.Lock()
	e.busy = false
	if l == nil {
		if e.pending && s.files[p] == e {
			delete(s.files, p)
			delete(s.nodes, p)
			delete(s.nodes, p+".caps")
		}
		s.mu.Unlock()
		return nil
	}
	e.pending = false
	e.size, e.acks, e.holders, e.k, e.m = l.Size, acks, holders, l.K, l.M
	e.version++
	s.mu.Unlock()
	return s.save()
}

// writeHandle is an open for writing. The new version starts at the
// first write (or at the clunk of a new or truncated file, which makes
// it empty); an open for writing clunked without a write changes
// nothing (FUSE opens a file again after each close(2)).
type writeHandle struct {
	h     *fileHandler
	e     *entry
	trunc bool

	mu   sync.Mutex
	w    *writer // nil until the first write
	prev *List
	err  error // why the writer could not start
}

// writer starts the new version on first use.
func (wh *writeHandle) writer(ctx context.Context) (*writer, error) {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	if wh.w != nil || wh.err != nil {
		return wh.w, wh.err
	}
	s := wh.h.s
	s.mu.Lock()
	if wh.e.busy {
		s.mu.Unlock()
		wh.err = fmt.Errorf("store: %s is busy", wh.h.path)
		return nil, wh.err
	}
	wh.e.busy = true
	pol := s.policyOfLocked(path.Dir(wh.h.path))
	c, pending := wh.e.cap, wh.e.pending
	s.mu.Unlock()
	var seq uint64 = 1
	if !pending {
		if l, err := s.findList(ctx, c); err == nil {
			seq, wh.prev = l.Seq+1, l
		}
	}
	wh.w, wh.err = s.newWriter(ctx, wh.h.path, c, pol, seq)
	if wh.err != nil {
		s.endWrite(wh.h.path, wh.e, nil, 0, 0)
	}
	return wh.w, wh.err
}

func (wh *writeHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}

func (wh *writeHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	w, err := wh.writer(ctx)
	if err != nil {
		return 0, err
	}
	return w.Write(ctx, p, off)
}

// Close commits the version: it returns once happy fragments are on
// their holders' stable storage.
func (wh *writeHandle) Close(ctx context.Context) error {
	s := wh.h.s
	wh.mu.Lock()
	started := wh.w != nil || wh.err != nil
	wh.mu.Unlock()
	s.mu.Lock()
	pending := wh.e.pending
	s.mu.Unlock()
	if !started && !pending && !wh.trunc {
		return nil
	}
	w, err := wh.writer(ctx)
	if err != nil {
		return err
	}
	acks, holders, err := w.commit(ctx)
	if err != nil {
		w.abort()
		s.endWrite(wh.h.path, wh.e, nil, 0, 0)
		return err
	}
	if err := s.endWrite(wh.h.path, wh.e, w.list, acks, holders); err != nil {
		return err
	}
	if wh.prev != nil {
		old := wh.prev
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.releaseVersion(old, w.list)
		}()
	}
	return nil
}

// releaseVersion removes the fragments of old that cur does not use.
func (s *Store) releaseVersion(old, cur *List) {
	ctx, cancel := context.WithTimeout(s.ctx, ackTimeout)
	defer cancel()
	keep := make(map[string]bool)
	for _, f := range cur.Frags {
		keep[f.Name] = true
	}
	for i, fr := range old.Frags {
		if k := old.Holders[i]; k != "" && !keep[fr.Name] {
			s.holder(k).Remove(ctx, fr.Name)
		}
	}
}
