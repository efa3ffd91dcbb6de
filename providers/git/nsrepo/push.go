package nsrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"cheshire/plan9"
	"cheshire/styx"
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

// applier applies the changes of one push.
type applier struct {
	rs      *Repos
	st      storer.EncodedObjectStorer
	top     styx.File // the subtree's directory
	path    string
	changes []change
	rmdirs  []string // directories the push empties, deepest first
}

// fail is the error of the file rel.
func (a *applier) fail(rel string, err error) error {
	return fmt.Errorf("git: %s: %s", nsJoin(a.path, rel), oneLine(plan9.Errstr(err)))
}

// sorted returns the keys of m, sorted.
func sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// plan is the first pass: it checks that every change can be tried
// (changing nothing) and lists the changes in the order they are made.
func (a *applier) plan(ctx context.Context, old, nw *flatTree) error {
	var mkdirs, writes, creates, chmods, removes []change
	for _, p := range sorted(nw.dirs) {
		if old.dirs[p] {
			continue
		}
		f, err := styx.WalkFile(ctx, a.top, styx.SplitPath(p))
		switch {
		case err == nil:
			isDir := f.Qid().Type&styx.QTDIR != 0
			f.Clunk()
			if !isDir {
				return a.fail(p, plan9.ErrExist)
			}
			// An empty directory, which the tree did not show: use it.
		case errors.Is(err, plan9.ErrNotFound):
			mkdirs = append(mkdirs, a.mkdir(p))
		default:
			return a.fail(p, err)
		}
	}
	for _, p := range sorted(nw.files) {
		ne := nw.files[p]
		oe, had := old.files[p]
		f, err := styx.WalkFile(ctx, a.top, styx.SplitPath(p))
		if !had {
			switch {
			case err == nil:
				f.Clunk()
				return a.fail(p, plan9.ErrExist)
			case !errors.Is(err, plan9.ErrNotFound):
				return a.fail(p, err)
			}
			creates = append(creates, a.create(p, ne))
			continue
		}
		if ne == oe {
			if err == nil {
				f.Clunk()
			}
			continue
		}
		if err != nil {
			return a.fail(p, err)
		}
		if f.Qid().Type&styx.QTDIR != 0 {
			f.Clunk()
			return a.fail(p, plan9.ErrIsDir)
		}
		if ne.hash != oe.hash {
			_, err = f.Open(ctx, styx.OWRITE)
		}
		if cerr := f.Clunk(); err == nil {
			err = cerr
		}
		if err != nil {
			return a.fail(p, err)
		}
		if ne.hash != oe.hash {
			writes = append(writes, a.write(p, oe.hash, ne.hash))
		}
		if ne.exec != oe.exec {
			chmods = append(chmods, a.chmod(p, ne.exec))
		}
	}
	for _, p := range sorted(old.files) {
		if _, ok := nw.files[p]; ok {
			continue
		}
		f, err := styx.WalkFile(ctx, a.top, styx.SplitPath(p))
		switch {
		case err == nil:
			f.Clunk()
			removes = append(removes, a.remove(p, old.files[p]))
		case errors.Is(err, plan9.ErrNotFound):
			// already gone
		default:
			return a.fail(p, err)
		}
	}
	for _, p := range sorted(old.dirs) {
		if !nw.dirs[p] {
			a.rmdirs = append([]string{p}, a.rmdirs...)
		}
	}
	for _, cs := range [][]change{mkdirs, writes, creates, chmods, removes} {
		a.changes = append(a.changes, cs...)
	}
	return nil
}

// run is the second pass: it makes the changes in order, and if one
// fails, puts its file back and undoes those made, in reverse order.
func (a *applier) run(ctx context.Context) error {
	for i, c := range a.changes {
		err := c.do(ctx)
		if err == nil {
			continue
		}
		// Undo even if the push's context is done: the namespace
		// must not be left half written.
		uctx := context.WithoutCancel(ctx)
		var lost []string
		if c.fix != nil {
			if ferr := c.fix(uctx); ferr != nil {
				lost = append(lost, a.lost(c.rel, ferr))
			}
		}
		for j := i - 1; j >= 0; j-- {
			d := a.changes[j]
			if uerr := d.undo(uctx); uerr != nil {
				lost = append(lost, a.lost(d.rel, uerr))
			}
		}
		msg := a.fail(c.rel, err).Error()
		if len(lost) > 0 {
			msg += "; not restored: " + strings.Join(lost, " ")
		}
		return errors.New(msg)
	}
	for _, p := range a.rmdirs {
		if err := a.removePath(ctx, p); err != nil && !errors.Is(err, plan9.ErrNotFound) {
			a.rs.o.Log.Info("git: directory kept", "path", nsJoin(a.path, p), "err", err)
		}
	}
	return nil
}

// lost logs that the change of rel could not be undone, and returns
// its namespace path.
func (a *applier) lost(rel string, err error) string {
	p := nsJoin(a.path, rel)
	a.rs.o.Log.Warn("git: push not undone", "file", p, "err", err)
	return p
}

// data returns the content of blob h.
func (a *applier) data(h plumbing.Hash) ([]byte, error) {
	o, err := a.st.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, err
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// write rewrites file p from blob oldh to blob newh.
func (a *applier) write(p string, oldh, newh plumbing.Hash) change {
	restore := func(ctx context.Context) error {
		data, err := a.data(oldh)
		if err != nil {
			return err
		}
		return styx.WriteFile(ctx, a.top, p, data, 0644)
	}
	return change{rel: p,
		do: func(ctx context.Context) error {
			data, err := a.data(newh)
			if err != nil {
				return err
			}
			return styx.WriteFile(ctx, a.top, p, data, 0644)
		},
		undo: restore,
		fix: func(ctx context.Context) error {
			want, err := a.data(oldh)
			if err != nil {
				return err
			}
			got, err := styx.ReadFile(ctx, a.top, p, int64(len(want))+1)
			if err == nil && bytes.Equal(got, want) {
				return nil // the file refused the write: nothing changed
			}
			return restore(ctx)
		},
	}
}

// create makes the new file p of e.
func (a *applier) create(p string, e fileEntry) change {
	perm := uint32(0644)
	if e.exec {
		perm = 0755
	}
	return change{rel: p,
		do: func(ctx context.Context) error {
			data, err := a.data(e.hash)
			if err != nil {
				return err
			}
			return a.createFile(ctx, p, data, perm)
		},
		undo: func(ctx context.Context) error { return a.removePath(ctx, p) },
	}
}

// mkdir makes the new directory p.
func (a *applier) mkdir(p string) change {
	return change{rel: p,
		do: func(ctx context.Context) error {
			names := styx.SplitPath(p)
			dir, err := styx.WalkFile(ctx, a.top, names[:len(names)-1])
			if err != nil {
				return err
			}
			f, _, err := dir.Create(ctx, names[len(names)-1], styx.DMDIR|0755, styx.OREAD)
			if err != nil {
				dir.Clunk()
				return err
			}
			if f != dir {
				dir.Clunk()
			}
			return f.Clunk()
		},
		undo: func(ctx context.Context) error { return a.removePath(ctx, p) },
	}
}

// chmod sets or clears the execute bits of file p.
func (a *applier) chmod(p string, exec bool) change {
	set := func(ctx context.Context, exec bool) error {
		f, err := styx.WalkFile(ctx, a.top, styx.SplitPath(p))
		if err != nil {
			return err
		}
		defer f.Clunk()
		d, err := f.Stat(ctx)
		if err != nil {
			return err
		}
		nd := styx.NullDir()
		nd.Mode = d.Mode &^ 0111
		if exec {
			nd.Mode |= (d.Mode & 0444) >> 2
		}
		if nd.Mode == d.Mode {
			return nil
		}
		return f.Wstat(ctx, nd)
	}
	return change{rel: p,
		do:   func(ctx context.Context) error { return set(ctx, exec) },
		undo: func(ctx context.Context) error { return set(ctx, !exec) },
	}
}

// remove removes file p, whose content is e's; undoing it creates the
// file again with its content and permission bits.
func (a *applier) remove(p string, e fileEntry) change {
	var perm uint32 = 0644
	return change{rel: p,
		do: func(ctx context.Context) error {
			f, err := styx.WalkFile(ctx, a.top, styx.SplitPath(p))
			if err != nil {
				return err
			}
			if d, err := f.Stat(ctx); err == nil {
				perm = d.Mode & 0777
			}
			err = f.Remove(ctx)
			f.Clunk()
			return err
		},
		undo: func(ctx context.Context) error {
			data, err := a.data(e.hash)
			if err != nil {
				return err
			}
			return a.createFile(ctx, p, data, perm)
		},
	}
}

// createFile creates file p, which must not exist, with data and perm;
// if writing it fails, it is removed again.
func (a *applier) createFile(ctx context.Context, p string, data []byte, perm uint32) error {
	names := styx.SplitPath(p)
	dir, err := styx.WalkFile(ctx, a.top, names[:len(names)-1])
	if err != nil {
		return err
	}
	f, iounit, err := dir.Create(ctx, names[len(names)-1], perm, styx.OWRITE|styx.OTRUNC)
	if err != nil {
		dir.Clunk()
		return err
	}
	if f != dir {
		dir.Clunk()
	}
	if err := writeAll(ctx, f, iounit, data); err != nil {
		a.removePath(context.WithoutCancel(ctx), p)
		return err
	}
	return nil
}

// writeAll writes data to the open file f from offset 0, in pieces of
// at most iounit, and clunks it; a file that commits at clunk reports
// its refusal from Clunk.
func writeAll(ctx context.Context, f styx.File, iounit uint32, data []byte) error {
	chunk := 64 << 10
	if iounit != 0 {
		chunk = int(iounit)
	}
	var werr error
	for off := 0; off < len(data); {
		n, err := f.Write(ctx, data[off:min(len(data), off+chunk)], int64(off))
		off += n
		if err == nil && n == 0 {
			err = plan9.ErrIO
		}
		if err != nil {
			werr = err
			break
		}
	}
	if err := f.Clunk(); werr == nil {
		werr = err
	}
	return werr
}

// removePath removes file or directory p.
func (a *applier) removePath(ctx context.Context, p string) error {
	f, err := styx.WalkFile(ctx, a.top, styx.SplitPath(p))
	if err != nil {
		return err
	}
	err = f.Remove(ctx)
	f.Clunk()
	return err
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
