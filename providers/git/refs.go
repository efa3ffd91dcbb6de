// Refs as files: reading one gives its hash, writing NEW or OLD NEW
// moves it, judged at the write.

package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
)

// zeroHash, as OLD, says the ref must not exist yet.
var zeroHash = strings.Repeat("0", 40)

// parseHash parses 40 hex digits.
func parseHash(s string) (plumbing.Hash, error) {
	if len(s) != 40 || !plumbing.IsHash(s) {
		return plumbing.ZeroHash, fmt.Errorf("git: bad hash %q", short(s))
	}
	return plumbing.NewHash(strings.ToLower(s)), nil
}

// short cuts s to keep an error within ERRMAX.
func short(s string) string {
	if len(s) > 48 {
		return s[:48] + "..."
	}
	return s
}

// refHash returns the hash ref name holds, following symbolic refs, and
// whether it exists.
func refHash(g *gogit.Repository, name plumbing.ReferenceName) (plumbing.Hash, bool, error) {
	ref, err := g.Reference(name, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, false, nil
	}
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("git: %s: %w", name, err)
	}
	return ref.Hash(), true, nil
}

// refHash is refHash read-locked against ref changes made here.
func (rp *repo) refHash(g *gogit.Repository, name plumbing.ReferenceName) (plumbing.Hash, bool, error) {
	rp.refMu.RLock()
	defer rp.refMu.RUnlock()
	return refHash(g, name)
}

// refs returns the repository's refs, read-locked against ref changes
// made here.
func (rp *repo) refs(g *gogit.Repository) ([]*plumbing.Reference, error) {
	rp.refMu.RLock()
	defer rp.refMu.RUnlock()
	it, err := g.Storer.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("git: %w", err)
	}
	var out []*plumbing.Reference
	err = it.ForEach(func(r *plumbing.Reference) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("git: %w", err)
	}
	return out, nil
}

// refText is what the file of ref name reads: its hash and a newline, or
// nothing if it does not exist (as HEAD of an empty repository).
func (rp *repo) refText(name plumbing.ReferenceName) ([]byte, error) {
	g, err := rp.open()
	if err != nil {
		return nil, err
	}
	h, ok, err := rp.refHash(g, name)
	if err != nil || !ok {
		return nil, err
	}
	return []byte(h.String() + "\n"), nil
}

// target is the ref a write to name moves: the branch HEAD points at if
// name is HEAD and HEAD is symbolic, else name.
func target(g *gogit.Repository, name plumbing.ReferenceName) (plumbing.ReferenceName, error) {
	if name != plumbing.HEAD {
		return name, nil
	}
	ref, err := g.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return "", fmt.Errorf("git: HEAD: %w", err)
	}
	if ref.Type() == plumbing.SymbolicReference {
		return ref.Target(), nil
	}
	return name, nil
}

// setRef carries out a line written to the file of ref name: NEW, or
// OLD NEW to move it only if it holds OLD (all zeros: only if it does
// not exist).
func (rp *repo) setRef(name plumbing.ReferenceName, line string) error {
	w := strings.Fields(line)
	if len(w) != 1 && len(w) != 2 {
		return fmt.Errorf("git: %s: want NEWHASH or OLDHASH NEWHASH", name)
	}
	var old *plumbing.Hash
	if len(w) == 2 {
		h, err := parseHash(w[0])
		if err != nil {
			return err
		}
		old = &h
	}
	nh, err := parseHash(w[len(w)-1])
	if err != nil {
		return err
	}
	g, err := rp.open()
	if err != nil {
		return err
	}
	name, err = target(g, name)
	if err != nil {
		return err
	}
	if err := checkObject(g, name, nh); err != nil {
		return err
	}
	return rp.moveRef(g, name, old, nh)
}

// checkObject checks that h may be the value of ref name: an object in
// the repository, and a commit unless name is a tag.
func checkObject(g *gogit.Repository, name plumbing.ReferenceName, h plumbing.Hash) error {
	obj, err := g.Storer.EncodedObject(plumbing.AnyObject, h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return fmt.Errorf("git: no object %s", h)
	}
	if err != nil {
		return fmt.Errorf("git: %s: %w", h, err)
	}
	if !name.IsTag() && obj.Type() != plumbing.CommitObject {
		return fmt.Errorf("git: %s is a %s, not a commit", h, obj.Type())
	}
	return nil
}

// moveRef sets ref name to nh, if it holds *old (zero: does not exist)
// when old is not nil.
func (rp *repo) moveRef(g *gogit.Repository, name plumbing.ReferenceName, old *plumbing.Hash, nh plumbing.Hash) error {
	rp.refMu.Lock()
	defer rp.refMu.Unlock()
	cur, err := g.Storer.Reference(name)
	switch {
	case errors.Is(err, plumbing.ErrReferenceNotFound):
		cur = nil
	case err != nil:
		return fmt.Errorf("git: %s: %w", name, err)
	}
	curHash := plumbing.ZeroHash
	if cur != nil {
		curHash = cur.Hash()
	}
	if old != nil && *old != curHash {
		return moved(name, curHash, *old)
	}
	ref := plumbing.NewHashReference(name, nh)
	if cur == nil {
		err = g.Storer.SetReference(ref)
	} else {
		// Against a git process moving it meanwhile.
		err = g.Storer.CheckAndSetReference(ref, cur)
	}
	if errors.Is(err, storage.ErrReferenceHasChanged) {
		h, _, _ := refHash(g, name)
		return moved(name, h, curHash)
	}
	if err != nil {
		return fmt.Errorf("git: %s: %w", name, err)
	}
	// Under refMu, so that the events of moves come in their order.
	rp.publish(g, RefUpdate{Name: name, Old: curHash, New: nh})
	return nil
}

// moved is the error of a compare-and-swap that lost.
func moved(name plumbing.ReferenceName, is, want plumbing.Hash) error {
	return fmt.Errorf("git: %s moved: is %s, not %s", name, is, want)
}

// removeRef deletes ref name.
func (rp *repo) removeRef(name plumbing.ReferenceName) error {
	g, err := rp.open()
	if err != nil {
		return err
	}
	rp.refMu.Lock()
	defer rp.refMu.Unlock()
	cur, err := g.Storer.Reference(name)
	if err != nil {
		return fmt.Errorf("git: %s: %w", name, plan9.ErrNotFound)
	}
	if err := g.Storer.RemoveReference(name); err != nil {
		return fmt.Errorf("git: %s: %w", name, err)
	}
	rp.publish(g, RefUpdate{Name: name, Old: cur.Hash(), New: plumbing.ZeroHash})
	return nil
}

// refFile is the file of ref name. done, if not nil, is called when an
// open of it ends (to forget a file made by create).
func (rp *repo) refFile(base string, name plumbing.ReferenceName, done func()) *synth.File {
	return synth.NewFile(base, 0664, &refHandler{rp: rp, name: name, done: done})
}

// refHandler serves a ref file: a read gives the hash at open; each
// line written is applied at its write, so the writer sees a refusal.
type refHandler struct {
	rp   *repo
	name plumbing.ReferenceName
	done func()
}

func (h *refHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	text, err := h.rp.refText(h.name)
	if err != nil {
		return nil, err
	}
	return &refHandle{h: h, text: text}, nil
}

// Length is the length of the ref's text.
func (h *refHandler) Length(ctx context.Context) int64 {
	text, _ := h.rp.refText(h.name)
	return int64(len(text))
}

// Version changes when the ref moves.
func (h *refHandler) Version(ctx context.Context) uint32 {
	text, _ := h.rp.refText(h.name)
	return crc32.ChecksumIEEE(text)
}

// Truncate does nothing: what is written replaces the ref whole. It lets
// a client that truncates before writing (Linux, for O_TRUNC) write.
func (h *refHandler) Truncate(ctx context.Context, size int64) error { return nil }

// refHandle is one open of a ref file.
type refHandle struct {
	h    *refHandler
	text []byte // the ref at open

	mu   sync.Mutex
	part []byte // guarded by mu: written, not yet a whole line
	err  error  // guarded by mu: the refusal of an earlier line
}

func (f *refHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(f.text)) {
		return 0, nil
	}
	return copy(p, f.text[off:]), nil
}

func (f *refHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.part = append(f.part, p...)
	for {
		i := bytes.IndexByte(f.part, '\n')
		if i < 0 {
			break
		}
		line := string(f.part[:i])
		f.part = f.part[i+1:]
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := f.h.rp.setRef(f.h.name, line); err != nil {
			f.err = err
			return 0, err
		}
	}
	if len(f.part) > 200 {
		f.err = fmt.Errorf("git: %s: want NEWHASH or OLDHASH NEWHASH", f.h.name)
		return 0, f.err
	}
	return len(p), nil
}

func (f *refHandle) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.h.done != nil {
		defer f.h.done()
	}
	if f.err != nil {
		return f.err
	}
	if line := strings.TrimSpace(string(f.part)); line != "" {
		return f.h.rp.setRef(f.h.name, line)
	}
	return nil
}

// refDir is the directory of the refs under prefix ("refs/heads/"): a
// file per ref, a directory per further level of the names. Creating a
// file in it makes a ref once a hash is written to it, and removing one
// deletes the ref.
func (rp *repo) refDir(name, prefix string) *synth.Dir {
	d := synth.NewDir(name, 0775)
	d.SetGen(keyedGen(func(ctx context.Context) ([]genItem, error) {
		g, err := rp.open()
		if err != nil {
			return nil, err
		}
		refs, err := rp.refs(g)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, r := range refs {
			if rest, ok := strings.CutPrefix(r.Name().String(), prefix); ok && rest != "" {
				names = append(names, rest)
			}
		}
		slices.Sort(names)
		var items []genItem
		seen := map[string]bool{}
		for _, n := range names {
			first, _, sub := strings.Cut(n, "/")
			if seen[first] {
				continue
			}
			seen[first] = true
			if sub {
				items = append(items, genItem{key: "d " + first, mk: func() synth.Node { return rp.refDir(first, prefix+first+"/") }})
			} else {
				full := plumbing.ReferenceName(prefix + first)
				items = append(items, genItem{key: "f " + first, mk: func() synth.Node { return rp.refFile(first, full, nil) }})
			}
		}
		return items, nil
	}))
	d.SetCreate(func(ctx context.Context, base string, perm uint32, mode uint8) (synth.Node, error) {
		if perm&styx.DMDIR != 0 {
			return nil, errors.New("git: no directories in refs: a ref's directories come with it")
		}
		full := plumbing.ReferenceName(prefix + base)
		if err := checkRefName(full); err != nil {
			return nil, err
		}
		var f *synth.File
		f = rp.refFile(base, full, func() {
			// The ref, if written, is listed by the generator now.
			if n, ok := d.Lookup(base); ok && n == synth.Node(f) {
				d.Remove(base)
			}
		})
		return f, nil
	})
	d.SetRemove(func(ctx context.Context, base string) error {
		return rp.removeRef(plumbing.ReferenceName(prefix + base))
	})
	return d
}

// checkRefName checks a ref name as git check-ref-format does, mostly.
func checkRefName(name plumbing.ReferenceName) error {
	s := name.String()
	bad := fmt.Errorf("git: bad ref name %q", short(s))
	if strings.HasSuffix(s, ".lock") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") || strings.Contains(s, "@{") {
		return bad
	}
	for _, part := range strings.Split(s, "/") {
		if part == "" || part[0] == '.' {
			return bad
		}
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || strings.ContainsRune(" ~^:?*[\\", c) {
			return bad
		}
	}
	return nil
}

// A genItem is a node a generator lists: key names it and whatever
// decides what it is (its kind, its hash), and mk makes it.
type genItem struct {
	key string
	mk  func() synth.Node
}

// keyedGen is synth.GenNames keyed by more than the name: a node is
// made again when its key changes (a file that became a directory, a
// tree entry with a new hash), else given again.
func keyedGen(list func(ctx context.Context) ([]genItem, error)) func(ctx context.Context) ([]synth.Node, error) {
	var mu sync.Mutex
	made := map[string]synth.Node{} // guarded by mu
	return func(ctx context.Context) ([]synth.Node, error) {
		items, err := list(ctx)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		out := make([]synth.Node, 0, len(items))
		listed := make(map[string]bool, len(items))
		for _, it := range items {
			listed[it.key] = true
			n, ok := made[it.key]
			if !ok {
				n = it.mk()
				made[it.key] = n
			}
			out = append(out, n)
		}
		for k := range made {
			if !listed[k] {
				delete(made, k)
			}
		}
		return out, nil
	}
}
