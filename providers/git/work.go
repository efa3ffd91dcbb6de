// The working overlay of a branch (REPO/work/BRANCH) and the commit
// that turns it into a commit on the branch (REPO/ctl).

package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// An overlay is what has been changed under work/BRANCH since the last
// commit, in memory. Paths are slash-separated, relative to the tree's
// root. A directory is removed only when empty, so gone holds files and
// empty directories, never a directory whose contents are still listed.
type overlay struct {
	mu    sync.Mutex
	files map[string][]byte // guarded by mu: files written
	dirs  map[string]bool   // guarded by mu: directories made
	gone  map[string]bool   // guarded by mu: base files and directories removed
}

// overlay returns the overlay of branch.
func (rp *repo) overlay(branch string) *overlay {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	ov := rp.work[branch]
	if ov == nil {
		ov = &overlay{files: map[string][]byte{}, dirs: map[string]bool{}, gone: map[string]bool{}}
		rp.work[branch] = ov
	}
	return ov
}

// changed reports whether the overlay holds anything.
func (ov *overlay) changedLocked() bool {
	return len(ov.files)+len(ov.dirs)+len(ov.gone) > 0
}

// clearLocked empties the overlay.
func (ov *overlay) clearLocked() {
	clear(ov.files)
	clear(ov.dirs)
	clear(ov.gone)
}

// workTop is REPO/work: a directory per branch whose name has no '/',
// and one for the branch HEAD names if it does not exist yet.
func (rp *repo) workTop() *synth.Dir {
	d := synth.NewDir("work", 0555)
	d.SetGen(keyedGen(func(ctx context.Context) ([]genItem, error) {
		g, err := rp.open()
		if err != nil {
			return nil, err
		}
		heads, _, err := rp.refNames(g)
		if err != nil {
			return nil, err
		}
		if t, err := target(g, plumbing.HEAD); err == nil && t.IsBranch() && !slices.Contains(heads, t.Short()) {
			heads = append(heads, t.Short())
		}
		var items []genItem
		for _, b := range heads {
			if !strings.Contains(b, "/") {
				items = append(items, genItem{key: b, mk: func() synth.Node { return rp.workDir(b, b, "") }})
			}
		}
		return items, nil
	}))
	return d
}

// baseEntry is a file or directory of the branch's tip.
type baseEntry struct {
	dir  bool
	mode filemode.FileMode
	hash plumbing.Hash
}

// baseTree returns the entries of directory dir in the tip of branch,
// nil if the branch or the directory does not exist.
func (rp *repo) baseTree(g *gogit.Repository, branch, dir string) (map[string]baseEntry, error) {
	h, ok, err := rp.refHash(g, plumbing.NewBranchReferenceName(branch))
	if err != nil || !ok {
		return nil, err
	}
	c, err := g.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", branch, err)
	}
	t, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", branch, err)
	}
	if dir != "" {
		if t, err = t.Tree(dir); err != nil {
			return nil, nil
		}
	}
	m := make(map[string]baseEntry, len(t.Entries))
	for _, e := range t.Entries {
		switch e.Mode {
		case filemode.Dir:
			m[e.Name] = baseEntry{dir: true, mode: e.Mode, hash: e.Hash}
		case filemode.Regular, filemode.Executable, filemode.Deprecated, filemode.Symlink:
			m[e.Name] = baseEntry{mode: e.Mode, hash: e.Hash}
		}
	}
	return m, nil
}

// workList lists directory dir of branch's overlay: name → is a
// directory.
func (rp *repo) workList(branch, dir string) (map[string]bool, error) {
	g, err := rp.open()
	if err != nil {
		return nil, err
	}
	base, err := rp.baseTree(g, branch, dir)
	if err != nil {
		return nil, err
	}
	ov := rp.overlay(branch)
	ov.mu.Lock()
	defer ov.mu.Unlock()
	out := map[string]bool{}
	for n, e := range base {
		if !ov.gone[path.Join(dir, n)] {
			out[n] = e.dir
		}
	}
	under := func(p string, isDir bool) {
		rest := p
		if dir != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(p, dir+"/"); !ok {
				return
			}
		}
		first, _, deeper := strings.Cut(rest, "/")
		out[first] = out[first] || deeper || isDir
	}
	for p := range ov.files {
		under(p, false)
	}
	for p := range ov.dirs {
		under(p, true)
	}
	return out, nil
}

// workDir is directory dir (root: "") of branch's overlay.
func (rp *repo) workDir(name, branch, dir string) *synth.Dir {
	d := synth.NewDir(name, 0775)
	d.SetGen(keyedGen(func(ctx context.Context) ([]genItem, error) {
		list, err := rp.workList(branch, dir)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(list))
		for n := range list {
			names = append(names, n)
		}
		slices.Sort(names)
		items := make([]genItem, 0, len(names))
		for _, n := range names {
			p := path.Join(dir, n)
			if list[n] {
				items = append(items, genItem{key: "d " + n, mk: func() synth.Node { return rp.workDir(n, branch, p) }})
			} else {
				items = append(items, genItem{key: "f " + n, mk: func() synth.Node { return rp.workFile(n, branch, p) }})
			}
		}
		return items, nil
	}))
	d.SetCreate(func(ctx context.Context, n string, perm uint32, mode uint8) (synth.Node, error) {
		p := path.Join(dir, n)
		ov := rp.overlay(branch)
		ov.mu.Lock()
		defer ov.mu.Unlock()
		delete(ov.gone, p)
		if perm&styx.DMDIR != 0 {
			ov.dirs[p] = true
			return rp.workDir(n, branch, p), nil
		}
		ov.files[p] = []byte{}
		return rp.workFile(n, branch, p), nil
	})
	d.SetRemove(func(ctx context.Context, n string) error {
		p := path.Join(dir, n)
		list, err := rp.workList(branch, dir)
		if err != nil {
			return err
		}
		isDir, ok := list[n]
		if !ok {
			return plan9.ErrNotFound
		}
		if isDir {
			sub, err := rp.workList(branch, p)
			if err != nil {
				return err
			}
			if len(sub) > 0 {
				return plan9.ErrNotEmpty
			}
		}
		g, err := rp.open()
		if err != nil {
			return err
		}
		base, err := rp.baseTree(g, branch, dir)
		if err != nil {
			return err
		}
		ov := rp.overlay(branch)
		ov.mu.Lock()
		defer ov.mu.Unlock()
		delete(ov.files, p)
		delete(ov.dirs, p)
		if _, ok := base[n]; ok {
			ov.gone[p] = true
		}
		return nil
	})
	return d
}

// workFile is file p of branch's overlay: what was written to it, else
// the tip's content. It is committed to the overlay at clunk.
func (rp *repo) workFile(name, branch, p string) *synth.File {
	return synth.ReadWrite(name, 0664,
		func(ctx context.Context) ([]byte, error) { return rp.workRead(branch, p) },
		func(ctx context.Context, data []byte) error {
			ov := rp.overlay(branch)
			ov.mu.Lock()
			defer ov.mu.Unlock()
			ov.files[p] = data
			delete(ov.gone, p)
			return nil
		})
}

// workRead returns the content of file p of branch's overlay.
func (rp *repo) workRead(branch, p string) ([]byte, error) {
	ov := rp.overlay(branch)
	ov.mu.Lock()
	data, ok := ov.files[p]
	gone := ov.gone[p]
	ov.mu.Unlock()
	if ok {
		return slices.Clone(data), nil
	}
	if gone {
		return nil, plan9.ErrNotFound
	}
	g, err := rp.open()
	if err != nil {
		return nil, err
	}
	dir := path.Dir(p)
	if dir == "." {
		dir = ""
	}
	base, err := rp.baseTree(g, branch, dir)
	if err != nil {
		return nil, err
	}
	e, ok := base[path.Base(p)]
	if !ok || e.dir {
		return nil, plan9.ErrNotFound
	}
	obj, err := g.Storer.EncodedObject(plumbing.BlobObject, e.hash)
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", p, err)
	}
	if obj.Size() > synth.MaxReadWrite {
		return nil, plan9.ErrTooBig
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", p, err)
	}
	defer r.Close()
	return io.ReadAll(r)
}

// ctlCmds are the messages of REPO/ctl.
func (rp *repo) ctlCmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "commit", Min: 2, Max: -1, Usage: "commit BRANCH MESSAGE", Run: func(ctx context.Context, a []string) error {
			_, err := rp.commit(a[0], strings.Join(a[1:], " "), synth.User(ctx))
			return err
		}},
	}
}

// ctlStatus is the text of REPO/ctl: a line per branch and tag.
func (rp *repo) ctlStatus(ctx context.Context) string {
	g, err := rp.open()
	if err != nil {
		return ""
	}
	refs, err := rp.refs(g)
	if err != nil {
		return ""
	}
	var lines []string
	for _, r := range refs {
		if r.Type() != plumbing.HashReference {
			continue
		}
		switch n := r.Name(); {
		case n.IsBranch():
			lines = append(lines, fmt.Sprintf("branch %s %s\n", n.Short(), r.Hash()))
		case n.IsTag():
			lines = append(lines, fmt.Sprintf("tag %s %s\n", n.Short(), r.Hash()))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}

// Commit makes a commit on branch of repository name from its overlay
// (work/BRANCH), by user (email user@cheshire), and empties the overlay.
// It returns the commit's hash.
func (r *Repos) Commit(name, branch, message, user string) (plumbing.Hash, error) {
	rp, err := r.lookup(name)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return rp.commit(branch, message, user)
}

// commit is Commit of rp.
func (rp *repo) commit(branch, message, user string) (plumbing.Hash, error) {
	ref := plumbing.NewBranchReferenceName(branch)
	if err := checkRefName(ref); err != nil {
		return plumbing.ZeroHash, err
	}
	g, err := rp.open()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	ov := rp.overlay(branch)
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if !ov.changedLocked() {
		return plumbing.ZeroHash, errors.New("git: nothing to commit")
	}
	tip, exists, err := rp.refHash(g, ref)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	flat := map[string]baseEntry{}
	var parents []plumbing.Hash
	if exists {
		c, err := g.CommitObject(tip)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("git: %s: %w", branch, err)
		}
		t, err := c.Tree()
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("git: %s: %w", branch, err)
		}
		err = t.Files().ForEach(func(f *object.File) error {
			flat[f.Name] = baseEntry{mode: f.Mode, hash: f.Hash}
			return nil
		})
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("git: %s: %w", branch, err)
		}
		parents = []plumbing.Hash{tip}
	}
	for p := range ov.gone {
		delete(flat, p)
	}
	for p, data := range ov.files {
		h, err := writeObject(g.Storer, plumbing.BlobObject, data)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		mode := filemode.Regular
		if e, ok := flat[p]; ok && e.mode == filemode.Executable {
			mode = e.mode
		}
		flat[p] = baseEntry{mode: mode, hash: h}
	}
	th, err := writeTree(g.Storer, flat)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if user == "" {
		user = "none"
	}
	sig := object.Signature{Name: user, Email: user + "@cheshire", When: rp.rs.now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: message + "\n", TreeHash: th, ParentHashes: parents}
	obj := g.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: commit: %w", err)
	}
	ch, err := g.Storer.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: commit: %w", err)
	}
	if err := rp.moveRef(g, ref, &tip, ch); err != nil {
		return plumbing.ZeroHash, err
	}
	ov.clearLocked()
	return ch, nil
}

// writeObject stores an object of type t holding data.
func writeObject(st storer.EncodedObjectStorer, t plumbing.ObjectType, data []byte) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	obj.SetType(t)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: %w", err)
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: %w", err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: %w", err)
	}
	return h, nil
}

// writeTree stores the trees of files (path → blob) and returns the
// root's hash.
func writeTree(st storer.EncodedObjectStorer, files map[string]baseEntry) (plumbing.Hash, error) {
	type tnode struct {
		files map[string]baseEntry
		dirs  map[string]*tnode
	}
	mk := func() *tnode { return &tnode{files: map[string]baseEntry{}, dirs: map[string]*tnode{}} }
	root := mk()
	for p, e := range files {
		n := root
		parts := strings.Split(p, "/")
		for _, d := range parts[:len(parts)-1] {
			if n.dirs[d] == nil {
				n.dirs[d] = mk()
			}
			n = n.dirs[d]
		}
		n.files[parts[len(parts)-1]] = e
	}
	var write func(n *tnode) (plumbing.Hash, error)
	write = func(n *tnode) (plumbing.Hash, error) {
		t := &object.Tree{}
		for name, e := range n.files {
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: e.mode, Hash: e.hash})
		}
		for name, sub := range n.dirs {
			h, err := write(sub)
			if err != nil {
				return plumbing.ZeroHash, err
			}
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
		}
		// git's order: a directory sorts as if its name ended in '/'.
		key := func(e object.TreeEntry) string {
			if e.Mode == filemode.Dir {
				return e.Name + "/"
			}
			return e.Name
		}
		slices.SortFunc(t.Entries, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
		obj := st.NewEncodedObject()
		if err := t.Encode(obj); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("git: tree: %w", err)
		}
		h, err := st.SetEncodedObject(obj)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("git: tree: %w", err)
		}
		return h, nil
	}
	return write(root)
}
