// Operations on names in a directory: mkdir, unlink, rmdir, rename (by
// wstat, or by copy where 9P cannot), and those 9P has no counterpart
// for (symlink, link, mknod).

package fusemount

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"syscall"
	"time"

	"cheshire/styx"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Mkdir creates the directory name.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r, errno := n.ref(ctx)
	if errno != 0 {
		return nil, errno
	}
	_, fid, err := r.fid.Walk(ctx)
	r.put()
	if err != nil {
		return nil, toErrno(err)
	}
	if err := fid.Create(ctx, name, styx.DMDIR|mode&0777, styx.OREAD); err != nil {
		clunk(fid)
		return nil, toErrno(err)
	}
	d, err := fid.Stat(ctx)
	if err != nil {
		now := uint32(time.Now().Unix())
		d = styx.Dir{Qid: fid.Qid(), Mode: styx.DMDIR | mode&0777, Atime: now, Mtime: now, Name: name}
	}
	clunk(fid)
	if !isDir(&d) {
		return nil, syscall.EIO
	}
	c := n.fsys.nodeFor(ctx, n, &d, nil)
	if c == nil {
		return nil, syscall.EIO
	}
	n.fsys.fillEntry(c, out, &d)
	return c, 0
}

// Unlink removes the file name.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name)
}

// Rmdir removes the directory name.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name)
}

func (n *node) remove(ctx context.Context, name string) syscall.Errno {
	r, errno := n.ref(ctx)
	if errno != 0 {
		return errno
	}
	_, fid, err := r.fid.Walk(ctx, name)
	r.put()
	if err != nil {
		return toErrno(err)
	}
	if err := fid.Remove(ctx); err != nil { // clunks fid, even on error
		return toErrno(err)
	}
	if c := n.GetChild(name); c != nil {
		if cn, ok := c.Operations().(*node); ok {
			cn.st.setUnlinked(true)
		}
	}
	return 0
}

// Rename renames name to newName within the directory, replacing a
// newName that exists as rename(2) does. 9P2000 renames only within a
// directory (Twstat of the name), so a move to another directory fails
// with EXDEV, which mv(1) answers by copying and removing.
//
// Replacing is not atomic: the old newName is first renamed out of the
// way, then name is renamed, then the old file is removed; if the second
// step fails the first is undone, so nothing is lost.
//
// A renamed file's ctime moves (see fillAttr).
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	errno := n.rename(ctx, name, newParent, newName, flags)
	if errno == 0 {
		if c := n.GetChild(name); c != nil {
			if cn, ok := c.Operations().(*node); ok {
				cn.st.touchCtime()
			}
		}
	}
	return errno
}

func (n *node) rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if newParent.EmbeddedInode() != n.EmbeddedInode() {
		return syscall.EXDEV
	}
	if flags&^renameNoreplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	if name == newName {
		return 0
	}
	r, errno := n.ref(ctx)
	if errno != 0 {
		return errno
	}
	defer r.put()
	_, src, err := r.fid.Walk(ctx, name)
	if err != nil {
		return toErrno(err)
	}
	defer clunk(src)
	_, dst, err := r.fid.Walk(ctx, newName)
	if err != nil {
		if errno := toErrno(err); errno != syscall.ENOENT {
			return errno
		}
		return toErrno(wstatName(ctx, src, newName))
	}
	removed := false
	defer func() {
		if !removed {
			clunk(dst)
		}
	}()
	if flags&renameNoreplace != 0 {
		return syscall.EEXIST
	}
	sq, dq := src.Qid(), dst.Qid()
	if sq.Path == dq.Path && sq.Type == dq.Type {
		return 0 // the same file
	}
	sdir, ddir := sq.Type&styx.QTDIR != 0, dq.Type&styx.QTDIR != 0
	switch {
	case sdir && !ddir:
		return syscall.ENOTDIR
	case !sdir && ddir:
		return syscall.EISDIR
	case ddir:
		empty, err := isEmptyDir(ctx, dst)
		if err != nil {
			return toErrno(err)
		}
		if !empty {
			return syscall.ENOTEMPTY
		}
	}
	tmp := tempName()
	if err := wstatName(ctx, dst, tmp); err != nil {
		return toErrno(err)
	}
	if err := wstatName(ctx, src, newName); err != nil {
		if err2 := wstatName(context.WithoutCancel(ctx), dst, newName); err2 != nil {
			n.fsys.log.Warn("fusemount: rename: cannot restore replaced file", "name", tmp, "to", newName, "err", err2)
		}
		return toErrno(err)
	}
	removed = true
	if err := dst.Remove(context.WithoutCancel(ctx)); err != nil {
		n.fsys.log.Warn("fusemount: rename: cannot remove replaced file", "name", tmp, "err", err)
	}
	return 0
}

func wstatName(ctx context.Context, fid *styx.Fid, name string) error {
	d := styx.NullDir()
	d.Name = name
	return fid.Wstat(ctx, d)
}

func tempName() string {
	var b [6]byte
	rand.Read(b[:])
	return ".cheshire-rename-" + hex.EncodeToString(b[:])
}

func isEmptyDir(ctx context.Context, dir *styx.Fid) (bool, error) {
	_, fid, err := dir.Walk(ctx)
	if err != nil {
		return false, err
	}
	defer clunk(fid)
	if err := fid.Open(ctx, styx.OREAD); err != nil {
		return false, err
	}
	b := make([]byte, 8192)
	n, err := fid.ReadOnce(ctx, b, 0)
	return n == 0, err
}

// Symlink fails: 9P2000 has no symbolic links. EPERM is what POSIX
// gives for a file system that does not support them.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Link fails: 9P2000 has no hard links.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Mknod makes regular files only (as create does); 9P2000 has no device
// files, FIFOs or sockets, so others fail with EPERM, as POSIX says for a
// file system that does not support the type.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, syscall.EPERM
	}
	c, fh, _, errno := n.Create(ctx, name, syscall.O_RDONLY|syscall.O_EXCL, mode&0777, out)
	if errno != 0 {
		return nil, errno
	}
	if h, ok := fh.(*handle); ok {
		h.Release(ctx)
	}
	return c, 0
}
