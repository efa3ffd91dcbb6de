// The applier: a push's changes planned against the namespace, then
// written, and undone in reverse order if a file is refused.

package nsrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

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

// plan is the first pass: it checks that every change can be tried
// (changing nothing) and lists the changes in the order they are made.
func (a *applier) plan(ctx context.Context, old, nw *flatTree) error {
	var mkdirs, writes, creates, chmods, removes []change
	for _, p := range slices.Sorted(maps.Keys(nw.dirs)) {
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
	for _, p := range slices.Sorted(maps.Keys(nw.files)) {
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
	for _, p := range slices.Sorted(maps.Keys(old.files)) {
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
	for _, p := range slices.Sorted(maps.Keys(old.dirs)) {
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
	if err := styx.WriteAll(ctx, f, iounit, data); err != nil {
		a.removePath(context.WithoutCancel(ctx), p)
		return err
	}
	return nil
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
