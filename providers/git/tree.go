// A repository's files: its log, its commits' trees, made as they are
// walked, and its objects, read from the object store as they are read.

package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"cheshire/plan9"
	"cheshire/synth"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// files returns the directory of the repository.
func (rp *repo) files() *synth.Dir {
	d := synth.NewDir(rp.name, 0555)
	d.Add(synth.Ctl("ctl", 0664, rp.ctlCmds(), rp.ctlStatus))
	d.Add(synth.NewFile("HEAD", 0664, &refHandler{rp: rp, name: plumbing.HEAD}))
	refs := synth.NewDir("refs", 0555)
	refs.Add(rp.refDir("heads", "refs/heads/"))
	refs.Add(rp.refDir("tags", "refs/tags/"))
	d.Add(refs)
	d.Add(rp.events.File("events", 0444))
	d.Add(synth.Snapshot("log", 0444, func(ctx context.Context) ([]byte, error) { return rp.log(ctx) }))
	d.Add(rp.treeTop())
	obj := synth.NewDir("object", 0555)
	obj.SetLookup(func(ctx context.Context, name string) (synth.Node, error) {
		h, err := parseHash(name)
		if err != nil {
			return nil, nil
		}
		g, err := rp.open()
		if err != nil {
			return nil, err
		}
		if _, err := g.Storer.EncodedObject(plumbing.AnyObject, h); err != nil {
			return nil, nil
		}
		return rp.objectFile(name, 0444, h), nil
	})
	d.Add(obj)
	d.Add(rp.workTop())
	return d
}

// log is the text of REPO/log: a line per commit reachable from HEAD,
// newest first.
func (rp *repo) log(ctx context.Context) ([]byte, error) {
	g, err := rp.open()
	if err != nil {
		return nil, err
	}
	head, ok, err := rp.refHash(g, plumbing.HEAD)
	if err != nil || !ok {
		return nil, err
	}
	it, err := g.Log(&gogit.LogOptions{From: head, Order: gogit.LogOrderCommitterTime})
	if err != nil {
		return nil, fmt.Errorf("git: log: %w", err)
	}
	defer it.Close()
	var b strings.Builder
	err = it.ForEach(func(c *object.Commit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		subject, _, _ := strings.Cut(c.Message, "\n")
		fmt.Fprintf(&b, "%s %s %d %s\n", c.Hash, c.Author.Email, c.Author.When.Unix(), subject)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("git: log: %w", err)
	}
	return []byte(b.String()), nil
}

// refNames returns the names of the repository's branches and tags
// (without refs/heads/ and refs/tags/).
func (rp *repo) refNames(g *gogit.Repository) (heads, tags []string, err error) {
	refs, err := rp.refs(g)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range refs {
		switch n := r.Name(); {
		case n.IsBranch():
			heads = append(heads, n.Short())
		case n.IsTag():
			tags = append(tags, n.Short())
		}
	}
	return heads, tags, nil
}

// treeTop is REPO/tree: a directory per branch and tag (whose names
// have no '/'), following it, and one for any commit hash walked to.
func (rp *repo) treeTop() *synth.Dir {
	d := synth.NewDir("tree", 0555)
	d.SetGen(keyedGen(func(ctx context.Context) ([]genItem, error) {
		g, err := rp.open()
		if err != nil {
			return nil, err
		}
		heads, tags, err := rp.refNames(g)
		if err != nil {
			return nil, err
		}
		var items []genItem
		for i, list := range [][]string{heads, tags} {
			prefix := "refs/heads/"
			if i == 1 {
				prefix = "refs/tags/"
			}
			for _, n := range list {
				if strings.Contains(n, "/") {
					continue
				}
				ref := plumbing.ReferenceName(prefix + n)
				items = append(items, genItem{key: n, mk: func() synth.Node {
					return rp.treeDir(n, func(g *gogit.Repository) (plumbing.Hash, error) { return rp.refTree(g, ref) })
				}})
			}
		}
		return items, nil
	}))
	d.SetLookup(func(ctx context.Context, name string) (synth.Node, error) {
		h, err := parseHash(name)
		if err != nil {
			return nil, nil
		}
		g, err := rp.open()
		if err != nil {
			return nil, err
		}
		c, err := g.CommitObject(h)
		if err != nil {
			return nil, nil
		}
		th := c.TreeHash
		return rp.treeDir(name, func(*gogit.Repository) (plumbing.Hash, error) { return th, nil }), nil
	})
	return d
}

// refTree returns the tree of the commit ref points at, through
// annotated tags.
func (rp *repo) refTree(g *gogit.Repository, ref plumbing.ReferenceName) (plumbing.Hash, error) {
	h, ok, err := rp.refHash(g, ref)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if !ok {
		return plumbing.ZeroHash, fmt.Errorf("git: %s: %w", ref, plan9.ErrNotFound)
	}
	for range 10 {
		obj, err := g.Object(plumbing.AnyObject, h)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("git: %s: %w", ref, err)
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o.TreeHash, nil
		case *object.Tree:
			return o.Hash, nil
		case *object.Tag:
			h = o.Target
		default:
			return plumbing.ZeroHash, fmt.Errorf("git: %s is not a commit", ref)
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("git: %s: tag chain too long", ref)
}

// treeDir is a directory of the tree that resolve gives, made at each
// walk and read: a subtree's directory, a blob's file (0555 if
// executable, 0444 else; a symlink reads as its target).
func (rp *repo) treeDir(name string, resolve func(g *gogit.Repository) (plumbing.Hash, error)) *synth.Dir {
	d := synth.NewDir(name, 0555)
	d.SetGen(keyedGen(func(ctx context.Context) ([]genItem, error) {
		g, err := rp.open()
		if err != nil {
			return nil, err
		}
		th, err := resolve(g)
		if err != nil {
			return nil, err
		}
		t, err := g.TreeObject(th)
		if err != nil {
			return nil, fmt.Errorf("git: tree %s: %w", th, err)
		}
		items := make([]genItem, 0, len(t.Entries))
		for _, e := range t.Entries {
			key := e.Name + " " + e.Hash.String() + " " + e.Mode.String()
			switch e.Mode {
			case filemode.Dir:
				h := e.Hash
				items = append(items, genItem{key: key, mk: func() synth.Node {
					return rp.treeDir(e.Name, func(*gogit.Repository) (plumbing.Hash, error) { return h, nil })
				}})
			case filemode.Regular, filemode.Deprecated, filemode.Symlink:
				items = append(items, genItem{key: key, mk: func() synth.Node { return rp.objectFile(e.Name, 0444, e.Hash) }})
			case filemode.Executable:
				items = append(items, genItem{key: key, mk: func() synth.Node { return rp.objectFile(e.Name, 0555, e.Hash) }})
			}
			// Submodules (gitlinks) name commits of another repository: left out.
		}
		return items, nil
	}))
	return d
}

// objectFile is a read-only file of object h's raw content.
func (rp *repo) objectFile(name string, perm uint32, h plumbing.Hash) *synth.File {
	oh := &objectHandler{rp: rp, hash: h}
	oh.size.Store(-1)
	return synth.NewFile(name, perm, oh)
}

// objectHandler serves an object's content, streamed from the store.
type objectHandler struct {
	rp   *repo
	hash plumbing.Hash
	size atomic.Int64 // -1 until known
}

// object finds the object.
func (h *objectHandler) object() (plumbing.EncodedObject, error) {
	g, err := h.rp.open()
	if err != nil {
		return nil, err
	}
	obj, err := g.Storer.EncodedObject(plumbing.AnyObject, h.hash)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("git: object %s: %w", h.hash, plan9.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("git: object %s: %w", h.hash, err)
	}
	h.size.Store(obj.Size())
	return obj, nil
}

func (h *objectHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	obj, err := h.object()
	if err != nil {
		return nil, err
	}
	return &objectHandle{obj: obj}, nil
}

// Length is the object's size.
func (h *objectHandler) Length(ctx context.Context) int64 {
	if n := h.size.Load(); n >= 0 {
		return n
	}
	if _, err := h.object(); err != nil {
		return 0
	}
	return h.size.Load()
}

// objectHandle is one open of an object's file: a reader of the object,
// reopened when a read goes back.
type objectHandle struct {
	obj plumbing.EncodedObject

	mu  sync.Mutex
	r   io.ReadCloser // guarded by mu; nil until the first read
	pos int64         // guarded by mu: r's offset
}

func (f *objectHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= f.obj.Size() {
		return 0, nil
	}
	if f.r == nil || off < f.pos {
		if f.r != nil {
			f.r.Close()
		}
		r, err := f.obj.Reader()
		if err != nil {
			f.r = nil
			return 0, fmt.Errorf("git: object %s: %w", f.obj.Hash(), err)
		}
		f.r, f.pos = r, 0
	}
	if off > f.pos {
		n, err := io.CopyN(io.Discard, f.r, off-f.pos)
		f.pos += n
		if err != nil {
			return 0, fmt.Errorf("git: object %s: %w", f.obj.Hash(), err)
		}
	}
	n, err := io.ReadFull(f.r, p)
	f.pos += int64(n)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return n, err
}

func (f *objectHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}

func (f *objectHandle) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.r != nil {
		return f.r.Close()
	}
	return nil
}
