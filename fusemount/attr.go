// Attributes: 9P Dir to FUSE attributes and entries, inode numbers from
// qids, and how long the kernel may cache them.

package fusemount

import (
	"context"
	"syscall"
	"time"

	"cheshire/styx"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Getattr stats the file.
func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.lockAttrs(n.st)
	defer n.st.rd.Unlock()
	d, errno := n.stat(ctx, fh)
	if errno != 0 {
		return errno
	}
	n.fillAttrOut(out, &d)
	return 0
}

func (n *node) fillAttrOut(out *fuse.AttrOut, d *styx.Dir) {
	n.fsys.fillAttr(&out.Attr, d, n.st)
	changed := n.st.observe(d)
	out.SetTimeout(n.fsys.attrTimeoutFor(d, changed))
}

// lockAttrs waits for the cached reads of s in flight and keeps others
// from starting until s.rd is unlocked.
func (f *fsys) lockAttrs(s *nodeState) {
	if s.rd.TryLock() {
		return
	}
	if f.attrWait != nil {
		f.attrWait()
	}
	s.rd.Lock()
}

// fillEntry fills out for the child c described by d.
func (f *fsys) fillEntry(c *fs.Inode, out *fuse.EntryOut, d *styx.Dir) {
	changed := false
	cn, ok := c.Operations().(*node)
	if ok {
		f.fillAttr(&out.Attr, d, cn.st)
	} else {
		f.fillAttr(&out.Attr, d, nil)
	}
	if ok {
		f.lockAttrs(cn.st)
		defer cn.st.rd.Unlock()
		changed = cn.st.observe(d)
	}
	out.SetEntryTimeout(f.entryTimeout)
	out.SetAttrTimeout(f.attrTimeoutFor(d, changed))
}

// Setattr changes the length, permissions, mtime and atime with one
// Twstat, in whole seconds (9P2000's unit). 9P2000 has neither numeric
// owners nor setuid, setgid or sticky bits: a change of owner or group
// to other than the mounting user's (the owner every file shows), and a
// mode with any of those bits, fail with EPERM and change nothing. A
// successful change moves the ctime this mount reports.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if uid, ok := in.GetUID(); ok && uid != n.fsys.uid {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != n.fsys.gid {
		return syscall.EPERM
	}
	if mode, ok := in.GetMode(); ok && mode&^0777 != 0 {
		return syscall.EPERM
	}
	var fid *styx.Fid
	if h, ok := fh.(*handle); ok {
		h.mu.RLock()
		defer h.mu.RUnlock()
		fid = h.fid
	}
	if fid == nil {
		r, errno := n.ref(ctx)
		if errno != 0 {
			return errno
		}
		defer r.put()
		fid = r.fid
	}
	d, err := fid.Stat(ctx)
	if err != nil {
		return toErrno(err)
	}
	w := styx.NullDir()
	change, resize := false, false
	if size, ok := in.GetSize(); ok && size != d.Length {
		w.Length = size
		change, resize = true, true
	}
	if mode, ok := in.GetMode(); ok && mode&0777 != d.Mode&0777 {
		w.Mode = d.Mode&^0777 | mode&0777
		change = true
	}
	if mtime, ok := in.GetMTime(); ok && uint32(mtime.Unix()) != d.Mtime {
		w.Mtime = uint32(mtime.Unix())
		change = true
	}
	if atime, ok := in.GetATime(); ok && uint32(atime.Unix()) != d.Atime {
		w.Atime = uint32(atime.Unix())
		change = true
	}
	if change {
		if err := fid.Wstat(ctx, w); err != nil {
			return toErrno(err)
		}
		if resize {
			n.st.invalidateCache()
		}
		if d, err = fid.Stat(ctx); err != nil {
			return toErrno(err)
		}
	}
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_SIZE|fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		n.st.touchCtime()
	}
	n.fillAttrOut(out, &d)
	return 0
}

// Statfs reports an empty file system: 9P does not tell sizes.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{Bsize: n.fsys.blksize, Frsize: n.fsys.blksize, NameLen: 255}
	return 0
}

// isDir reports whether d is a directory.
func isDir(d *styx.Dir) bool {
	return d.Mode&styx.DMDIR != 0 || d.Qid.Type&styx.QTDIR != 0
}

// ino is the inode number of the file with qid.path p.
func ino(p uint64) uint64 {
	i := p + 1
	if i == 0 || i == ^uint64(0) { // reserved by go-fuse
		i ^= 1 << 62
	}
	return i
}

func stableAttr(d *styx.Dir) fs.StableAttr {
	if isDir(d) {
		return fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino(d.Qid.Path)}
	}
	return fs.StableAttr{Mode: syscall.S_IFREG, Ino: ino(d.Qid.Path)}
}

func stableAttrOf(q styx.Qid) fs.StableAttr {
	return stableAttr(&styx.Dir{Qid: q})
}

// fillAttr fills a from d and, if not nil, the state st of its node.
// ctime is the mtime, or the time this mount last changed the file's
// metadata if that is later. Directories have one link (the convention
// for "the count of subdirectories is unknown"), files one, and a file
// this mount has removed none.
func (f *fsys) fillAttr(a *fuse.Attr, d *styx.Dir, st *nodeState) {
	key := stableAttr(d)
	*a = fuse.Attr{
		Ino:     key.Ino,
		Size:    d.Length,
		Blocks:  (d.Length + 511) / 512,
		Atime:   uint64(d.Atime),
		Mtime:   uint64(d.Mtime),
		Ctime:   uint64(d.Mtime),
		Mode:    key.Mode | d.Mode&0777,
		Nlink:   1,
		Owner:   fuse.Owner{Uid: f.uid, Gid: f.gid},
		Blksize: f.blksize,
	}
	if st == nil {
		return
	}
	ct, unlinked := st.meta()
	if ct.Unix() >= int64(d.Mtime) {
		a.Ctime, a.Ctimensec = uint64(ct.Unix()), uint32(ct.Nanosecond())
	}
	if unlinked {
		a.Nlink = 0
	}
}

// attrTimeoutFor is how long the kernel may trust the attributes d of a
// file whose version changed (or not) since last seen: not at all for
// files that change under us or whose length means nothing.
func (f *fsys) attrTimeoutFor(d *styx.Dir, changed bool) time.Duration {
	if changed || !isDir(d) && d.Length == 0 {
		return 0
	}
	return f.attrTimeout
}
