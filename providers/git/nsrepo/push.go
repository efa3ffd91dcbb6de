package nsrepo

import (
	"context"
	"errors"
	"fmt"

	"cheshire/styx"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// errFetchFirst refuses a push that does not build on the namespace's
// commit.
var errFetchFirst = errors.New("git: refs/heads/main: not a fast-forward of the namespace: fetch first")

// Receive writes a push to the subtree at path back through the
// namespace, as the package doc says: r is the repository Open made
// for the request, holding the pushed objects, with its references not
// yet moved. It returns nil once every change is made; otherwise an
// error "git: …" to refuse the push with, the namespace left as it
// was as far as undoing allows.
func (rs *Repos) Receive(ctx context.Context, path string, r *gogit.Repository, updates []Update) error {
	names, path, err := cleanPath(path)
	if err != nil {
		return err
	}
	if len(updates) != 1 || updates[0].Name != mainRef {
		return errors.New("git: refs other than refs/heads/main cannot be pushed")
	}
	u := updates[0]
	if u.New.IsZero() {
		return errors.New("git: refs/heads/main cannot be deleted")
	}
	st := r.Storer
	oldc, err := object.GetCommit(st, u.Old)
	if err != nil {
		return errFetchFirst
	}
	newc, err := object.GetCommit(st, u.New)
	if err != nil {
		return fmt.Errorf("git: %s is not a commit", u.New)
	}
	if oldc.TreeHash != newc.TreeHash {
		ok, err := oldc.IsAncestor(newc)
		if err != nil {
			return fmt.Errorf("git: %v", err)
		}
		if !ok {
			return errFetchFirst
		}
	}
	mu := rs.lock(path)
	mu.Lock()
	defer mu.Unlock()
	if oldc.TreeHash != newc.TreeHash {
		if err := rs.apply(ctx, st, names, path, oldc.TreeHash, newc.TreeHash); err != nil {
			return err
		}
	}
	h, err := reach(st, newc, rs.o.MaxHistory)
	if err != nil {
		rs.o.Log.Warn("git: history not kept", "path", path, "err", err)
		h = &history{bytes: rs.o.MaxHistory + 1} // drops the path's old one
	}
	h.path = path
	if !rs.hist.put(h) {
		rs.o.Log.Warn("git: history not kept", "path", path, "bytes", h.bytes)
	}
	rs.o.Log.Info("git: pushed", "path", path, "commit", u.New)
	return nil
}

// fileEntry is a file of a flattened tree.
type fileEntry struct {
	exec bool
	hash plumbing.Hash
}

// flatTree is a tree flattened: its files and directories by their
// slash-separated paths.
type flatTree struct {
	files map[string]fileEntry
	dirs  map[string]bool
	bytes int64
}

// flatten flattens the tree h. If check, its entries must be files and
// directories of names the namespace can hold, within the size limits.
func (rs *Repos) flatten(st storer.EncodedObjectStorer, h plumbing.Hash, path string, check bool) (*flatTree, error) {
	ft := &flatTree{files: map[string]fileEntry{}, dirs: map[string]bool{}}
	var walk func(h plumbing.Hash, rel string) error
	walk = func(h plumbing.Hash, rel string) error {
		t, err := object.GetTree(st, h)
		if err != nil {
			return fmt.Errorf("git: %s: %v", nsJoin(path, rel), err)
		}
		for _, e := range t.Entries {
			sub := e.Name
			if rel != "" {
				sub = rel + "/" + e.Name
			}
			if check {
				if why := leftOut(styx.Dir{Name: e.Name}); why != "" {
					return fmt.Errorf("git: %s: cannot be pushed: %s", nsJoin(path, sub), why)
				}
				if err := rs.checkSize(path, len(ft.files)+len(ft.dirs)+1, ft.bytes); err != nil {
					return err
				}
			}
			switch e.Mode {
			case filemode.Dir:
				ft.dirs[sub] = true
				if err := walk(e.Hash, sub); err != nil {
					return err
				}
			case filemode.Regular, filemode.Deprecated, filemode.Executable:
				ft.files[sub] = fileEntry{exec: e.Mode == filemode.Executable, hash: e.Hash}
				if check {
					o, err := st.EncodedObject(plumbing.BlobObject, e.Hash)
					if err != nil {
						return fmt.Errorf("git: %s: %v", nsJoin(path, sub), err)
					}
					ft.bytes += o.Size()
					if err := rs.checkSize(path, len(ft.files)+len(ft.dirs), ft.bytes); err != nil {
						return err
					}
				}
			case filemode.Symlink:
				return fmt.Errorf("git: %s: symbolic links not supported", nsJoin(path, sub))
			case filemode.Submodule:
				return fmt.Errorf("git: %s: submodules not supported", nsJoin(path, sub))
			default:
				return fmt.Errorf("git: %s: bad mode %o", nsJoin(path, sub), e.Mode)
			}
		}
		return nil
	}
	return ft, walk(h, "")
}

// nsJoin is the namespace path of rel in the subtree at path.
func nsJoin(path, rel string) string {
	switch {
	case rel == "":
		return path
	case path == "/":
		return "/" + rel
	}
	return path + "/" + rel
}

// A change is one step of a push: do makes it; undo, set once do has
// succeeded, reverses it; fix, if set, puts the file back as it was
// after do failed.
type change struct {
	rel  string
	do   func(ctx context.Context) error
	undo func(ctx context.Context) error
	fix  func(ctx context.Context) error
}

// apply writes the changes from tree oldt to tree newt to the subtree
// at names (path), in two passes.
func (rs *Repos) apply(ctx context.Context, st storer.EncodedObjectStorer, names []string, path string, oldt, newt plumbing.Hash) error {
	old, err := rs.flatten(st, oldt, path, false)
	if err != nil {
		return err
	}
	nw, err := rs.flatten(st, newt, path, true)
	if err != nil {
		return err
	}
	for p := range old.files {
		if nw.dirs[p] {
			return fmt.Errorf("git: %s: a file made a directory: not supported", nsJoin(path, p))
		}
	}
	for p := range nw.files {
		if old.dirs[p] {
			return fmt.Errorf("git: %s: a directory made a file: not supported", nsJoin(path, p))
		}
	}
	root, err := rs.attach(ctx)
	if err != nil {
		return fmt.Errorf("git: %s: %w", path, err)
	}
	defer root.Clunk()
	top, err := styx.WalkFile(ctx, root, names)
	if err != nil {
		return fmt.Errorf("git: %s: %w", path, err)
	}
	defer top.Clunk()
	a := &applier{rs: rs, st: st, top: top, path: path}
	if err := a.plan(ctx, old, nw); err != nil {
		return err
	}
	return a.run(ctx)
}

// reach returns the history of commit c: it and every object it
// reaches in st, at most max bytes of them.
func reach(st storer.EncodedObjectStorer, c *object.Commit, max int64) (*history, error) {
	h := &history{head: c.Hash}
	seen := map[plumbing.Hash]bool{}
	add := func(hash plumbing.Hash, t plumbing.ObjectType) (plumbing.EncodedObject, error) {
		o, err := st.EncodedObject(t, hash)
		if err != nil {
			return nil, err
		}
		o.Hash()
		seen[hash] = true
		h.objects = append(h.objects, o)
		if h.bytes += o.Size(); h.bytes > max {
			return nil, fmt.Errorf("git: history larger than %d bytes", max)
		}
		return o, nil
	}
	var tree func(hash plumbing.Hash) error
	tree = func(hash plumbing.Hash) error {
		if seen[hash] {
			return nil
		}
		o, err := add(hash, plumbing.TreeObject)
		if err != nil {
			return err
		}
		t, err := object.DecodeTree(st, o)
		if err != nil {
			return err
		}
		for _, e := range t.Entries {
			switch {
			case seen[e.Hash]:
			case e.Mode == filemode.Dir:
				if err := tree(e.Hash); err != nil {
					return err
				}
			case e.Mode.IsFile():
				if _, err := add(e.Hash, plumbing.BlobObject); err != nil {
					return err
				}
			}
		}
		return nil
	}
	todo := []plumbing.Hash{c.Hash}
	for len(todo) > 0 {
		hash := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[hash] {
			continue
		}
		o, err := add(hash, plumbing.CommitObject)
		if err != nil {
			return nil, err
		}
		cc, err := object.DecodeCommit(st, o)
		if err != nil {
			return nil, err
		}
		if err := tree(cc.TreeHash); err != nil {
			return nil, err
		}
		todo = append(todo, cc.ParentHashes...)
	}
	return h, nil
}
