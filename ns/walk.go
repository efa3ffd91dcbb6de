// Walks and path resolution in a namespace: crossing mount points,
// unions, "..", and making missing mount points in the root tree.

package ns

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"
)

// rootChan returns a new chan for "/" (after any mount on it).
func (ns *Namespace) rootChan(ctx context.Context) (*chn, error) {
	c, err := ns.rootDir(ctx)
	if err != nil {
		return nil, err
	}
	return ns.cross(ctx, c)
}

// rootDir returns a new chan for the root directory itself, not crossing
// what may be mounted on it.
func (ns *Namespace) rootDir(ctx context.Context) (*chn, error) {
	_, f, err := ns.rootDev.root.Walk(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &chn{dev: ns.rootDev, file: f, qid: f.Qid(), path: "/", dpath: "/"}, nil
}

// cross replaces c by the union mounted on it, if any.
func (ns *Namespace) cross(ctx context.Context, c *chn) (*chn, error) {
	if c.union != nil {
		return c, nil
	}
	ns.mu.RLock()
	es := ns.table[mountKey{c.dev, c.qid.Path}]
	ns.mu.RUnlock()
	if len(es) == 0 {
		return c, nil
	}
	u := &chn{path: c.path, union: make([]member, 0, len(es))}
	var firstErr error
	for _, e := range es {
		mc, err := e.src.clone(ctx, c.path)
		if err != nil {
			firstErr = err
			continue
		}
		u.union = append(u.union, member{mc, e.create})
	}
	if len(u.union) == 0 {
		return nil, firstErr
	}
	c.clunk()
	return u, nil
}

func (ns *Namespace) isMountPoint(dev *device, q styx.Qid) bool {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return len(ns.table[mountKey{dev, q.Path}]) > 0
}

func join(dir, name string) string { return path.Join(dir, name) }

// walk walks names from c, crossing mount points; `..` is lexical, as in
// Plan 9: it re-walks the parent path from the root. It returns the qids
// seen by clients for each name walked and the final chan, which is nil
// when fewer qids than names are returned.
func (ns *Namespace) walk(ctx context.Context, c *chn, names []string) ([]styx.Qid, *chn, error) {
	qids := make([]styx.Qid, 0, len(names))
	cur, err := c.clone(ctx, c.path)
	if err != nil {
		return nil, nil, err
	}
	for len(names) > 0 {
		if names[0] == ".." {
			p := path.Dir(cur.path)
			nc, err := ns.resolve(ctx, p, true)
			if err != nil {
				cur.clunk()
				return qids, nil, err
			}
			cur.clunk()
			cur = nc
			qids = append(qids, cur.Qid())
			names = names[1:]
			continue
		}
		seg := names
		for i, n := range names {
			if n == ".." {
				seg = names[:i]
				break
			}
		}
		nq, nc, err := ns.walkSeg(ctx, cur, seg)
		qids = append(qids, nq...)
		cur.clunk()
		if nc == nil {
			return qids, nil, err
		}
		cur = nc
		names = names[len(seg):]
	}
	return qids, cur, nil
}

// walkSeg walks names (none of them "..") from c.
func (ns *Namespace) walkSeg(ctx context.Context, c *chn, names []string) ([]styx.Qid, *chn, error) {
	if c.union != nil {
		// Walk the first name in each member in turn; the first that has
		// it wins, then continue from there.
		var lastErr error = plan9.ErrNotFound
		for _, m := range c.union {
			if !m.c.isDir() {
				lastErr = plan9.ErrNotDir
				continue
			}
			q, nc, err := ns.walkSeg(ctx, m.c, names[:1])
			if nc == nil {
				if len(q) == 0 {
					lastErr = err
				}
				continue
			}
			nc.path = join(c.path, names[0])
			if len(names) == 1 {
				return q, nc, nil
			}
			rq, rc, err := ns.walkSeg(ctx, nc, names[1:])
			nc.clunk()
			return append(q, rq...), rc, err
		}
		return nil, nil, lastErr
	}
	if !c.isDir() {
		return nil, nil, plan9.ErrNotDir
	}
	dq, f, err := c.file.Walk(ctx, names)
	// Find the first qid walked that is a mount point.
	hit := -1
	for i, q := range dq {
		if ns.isMountPoint(c.dev, q) {
			hit = i
			break
		}
	}
	if hit < 0 {
		qids := make([]styx.Qid, len(dq))
		for i, q := range dq {
			qids[i] = c.dev.qid(q)
		}
		if len(dq) < len(names) {
			if f != nil {
				f.Clunk()
			}
			if err == nil {
				err = plan9.ErrNotFound
			}
			return qids, nil, err
		}
		p, dp := c.path, c.dpath
		for _, n := range names {
			p, dp = join(p, n), join(dp, n)
		}
		return qids, &chn{dev: c.dev, file: f, qid: dq[len(dq)-1], path: p, dpath: dp}, nil
	}
	// Re-walk up to the mount point, cross it, and go on from there.
	if f != nil {
		f.Clunk()
	}
	var mf styx.File
	if hit == len(names)-1 && len(dq) == len(names) {
		_, mf, err = c.file.Walk(ctx, names)
	} else {
		var q2 []styx.Qid
		q2, mf, err = c.file.Walk(ctx, names[:hit+1])
		if len(q2) < hit+1 {
			mf = nil
		}
	}
	if mf == nil {
		if err == nil {
			err = plan9.ErrNotFound
		}
		return nil, nil, err
	}
	p, dp := c.path, c.dpath
	for _, n := range names[:hit+1] {
		p, dp = join(p, n), join(dp, n)
	}
	mc, err := ns.cross(ctx, &chn{dev: c.dev, file: mf, qid: dq[hit], path: p, dpath: dp})
	if err != nil {
		return nil, nil, err
	}
	qids := make([]styx.Qid, 0, len(names))
	for _, q := range dq[:hit] {
		qids = append(qids, c.dev.qid(q))
	}
	qids = append(qids, mc.Qid())
	if hit == len(names)-1 {
		return qids, mc, nil
	}
	rq, rc, err := ns.walkSeg(ctx, mc, names[hit+1:])
	mc.clunk()
	return append(qids, rq...), rc, err
}

// resolve walks the namespace path p from the root. With cross false the
// last element is not replaced by what is mounted on it (as Plan 9's
// Amount: the mount point itself).
func (ns *Namespace) resolve(ctx context.Context, p string, cross bool) (*chn, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%q: path must be absolute", p)
	}
	p = path.Clean(p)
	names := styx.SplitPath(p)
	if !cross {
		if len(names) == 0 {
			return ns.rootDir(ctx)
		}
		parent, err := ns.resolve(ctx, path.Dir(p), true)
		if err != nil {
			return nil, err
		}
		defer parent.clunk()
		last := path.Base(p)
		if parent.union != nil {
			for _, m := range parent.union {
				if !m.c.isDir() || m.c.union != nil {
					continue
				}
				q, f, _ := m.c.file.Walk(ctx, []string{last})
				if len(q) == 1 && f != nil {
					return &chn{dev: m.c.dev, file: f, qid: q[0], path: p, dpath: join(m.c.dpath, last)}, nil
				}
			}
			return nil, fmt.Errorf("%s: %w", p, plan9.ErrNotFound)
		}
		q, f, err := parent.file.Walk(ctx, []string{last})
		if len(q) != 1 || f == nil {
			if err == nil {
				err = plan9.ErrNotFound
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return &chn{dev: parent.dev, file: f, qid: q[0], path: p, dpath: join(parent.dpath, last)}, nil
	}
	root, err := ns.rootChan(ctx)
	if err != nil {
		return nil, err
	}
	defer root.clunk()
	_, c, err := ns.walk(ctx, root, names)
	if c == nil {
		if err == nil {
			err = plan9.ErrNotFound
		}
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

// mountPoint resolves old for bind or mount; a missing final directory in
// the namespace's own root tree is made, so that /n/anything works.
func (ns *Namespace) mountPoint(ctx context.Context, old string, dir bool) (*chn, error) {
	c, err := ns.resolve(ctx, old, false)
	if err == nil || !errors.Is(err, plan9.ErrNotFound) {
		return c, err
	}
	dirp := path.Dir(path.Clean(old))
	parent, perr := ns.resolve(ctx, dirp, false)
	if perr != nil && errors.Is(perr, plan9.ErrNotFound) && dirp != "/" {
		// Make the missing directories above it too, as mkdir -p.
		parent, perr = ns.mountPoint(ctx, dirp, true)
	}
	if perr != nil {
		return nil, err
	}
	defer parent.clunk()
	if parent.union != nil || parent.dev != ns.rootDev || ns.isMountPoint(parent.dev, parent.qid) {
		return nil, err
	}
	_, f, werr := parent.file.Walk(ctx, nil)
	if werr != nil {
		return nil, werr
	}
	perm := uint32(0755) | styx.DMDIR // writable by the root fs alone ("#/"), to make mount points below
	if !dir {
		perm = 0444
	}
	nf, _, cerr := f.Create(ctx, path.Base(old), perm, styx.OREAD)
	if cerr != nil {
		f.Clunk()
		return nil, fmt.Errorf("%s: making mount point: %w", old, cerr)
	}
	nf.Clunk()
	return ns.resolve(ctx, old, false)
}
