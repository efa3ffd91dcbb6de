// Package hostfs exports a directory of the host into the namespace,
// read-write or read-only, as Plan 9's exportfs or u9fs serves a tree.
//
// Every host operation goes through an [os.Root] opened on the export
// directory, so the kernel-level checks of os.Root keep each access
// beneath it, races included: ".." at the root of the export stays at
// the root (".." is resolved lexically, as in Plan 9), and a symbolic
// link is followed only when its target is relative and stays inside
// the export. A link that leads outside (or is absolute, even when it
// names a file inside) gives "permission denied"; a dangling link gives
// "file not found". Links that cannot be followed are left out of
// directory listings, since a client could not walk to them.
//
// Files appear with their host name, length, mtime and atime, and
// permission bits (mode&0777, DMDIR for directories). Their uid and gid
// are the host owner and group names (looked up once with os/user and
// cached; the decimal id when the lookup fails), or the name given with
// [WithOwner]; muid is the uid. Qid.Path is the inode number (its top
// byte XORed with a small per-device index for files on a device other
// than the export root's); Qid.Vers is derived from the modification time
// in nanoseconds and the length, so it changes when the file does. New
// files get Plan 9's permissions (perm & (~0666 | dir&0666) for files,
// perm & (~0777 | dir&0777) for directories, cut to 0777), not the umask.
//
// Permissions: the node accesses the host as the user it runs as, and the
// host kernel has the last word (EACCES is "permission denied"). On top of
// that the Plan 9 rule is applied with every attaching user treated as
// the owner of every file: an access is allowed when the owner or other
// permission bits grant it (as [plan9.Allowed] does for an owner), which
// keeps Plan 9 semantics when the node runs as root. A read-only export
// refuses every modification (open for writing, OTRUNC, ORCLOSE, create,
// remove and wstat that changes anything) with [ErrReadOnly].
//
// Device files, FIFOs and sockets are listed but cannot be opened.
package hostfs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"cheshire/plan9"
	"cheshire/styx"
)

// ErrReadOnly is the error for every modification of a read-only export.
// It is the C library's text for EROFS, which plan9.Errno (and the Linux
// 9P client) maps back to EROFS.
const ErrReadOnly plan9.Error = "Read-only file system"

// FS is an exported host directory; it implements styx.Attacher.
type FS struct {
	root    *os.Root
	ro      bool
	owner   string // if set, the uid and gid of every file
	rootDev uint64

	hidden map[fileID]bool // files never served (the node's data dir)

	// refs counts the files not yet clunked; with closeUnused, the
	// root closes when it drops to 0 after an attach.
	refs        atomic.Int64
	closeUnused bool

	mu    sync.Mutex
	devs  map[uint64]uint64 // guarded by mu: device → index for Qid.Path
	names map[uint64]string // guarded by mu: id (groups: | 1<<32) → name
}

// Option configures New.
type Option func(*FS)

// WithCloseWhenUnused makes the FS close its export directory when the
// last file attached from it is clunked: an FS made for one attach
// holds its descriptor no longer than the attach's files. It cannot be
// attached again after that.
func WithCloseWhenUnused() Option { return func(f *FS) { f.closeUnused = true } }

// WithOwner reports name as the uid and gid of every file instead of the
// host owner and group names.
func WithOwner(name string) Option { return func(f *FS) { f.owner = name } }

// fileID names a host file whatever path, link or hard link reaches it.
type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	si, ok := sysInfo(fi)
	return fileID{si.dev, si.ino}, ok
}

// hideDepth and hideMax bound the files WithHidden records under each
// hidden directory.
const (
	hideDepth = 3
	hideMax   = 10000
)

// WithHidden keeps the host paths given, and what lies up to three levels
// below them, out of the export: they are not listed and cannot be walked
// to, whichever path, symbolic link or hard link leads there ("file not
// found"). The node hides its data directory (keys, CA, ledger) so.
func WithHidden(paths ...string) Option {
	return func(f *FS) {
		if f.hidden == nil {
			f.hidden = map[fileID]bool{}
		}
		for _, p := range paths {
			hideTree(f.hidden, p, hideDepth)
		}
	}
}

func hideTree(set map[fileID]bool, p string, depth int) {
	fi, err := os.Lstat(p)
	if err != nil || len(set) >= hideMax {
		return
	}
	if id, ok := idOf(fi); ok {
		set[id] = true
	}
	if !fi.IsDir() || depth == 0 {
		return
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return
	}
	for _, e := range ents {
		hideTree(set, filepath.Join(p, e.Name()), depth-1)
	}
}

// isHidden reports whether fi is kept out of the export.
func (h *FS) isHidden(fi fs.FileInfo) bool {
	if len(h.hidden) == 0 {
		return false
	}
	id, ok := idOf(fi)
	return ok && h.hidden[id]
}

// New exports the host directory root, read-only if ro is set. It fails
// if root cannot be opened or is not a directory. The FS keeps a
// descriptor of root open until Close.
func New(root string, ro bool, opts ...Option) (*FS, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, &fs.PathError{Op: "hostfs", Path: root, Err: syscall.ENOTDIR}
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	f := &FS{root: r, ro: ro, devs: map[uint64]uint64{}, names: map[uint64]string{}}
	for _, o := range opts {
		o(f)
	}
	if fi, err = r.Stat("."); err != nil {
		r.Close()
		return nil, err
	}
	if f.isHidden(fi) {
		r.Close()
		return nil, &fs.PathError{Op: "hostfs", Path: root, Err: fs.ErrNotExist}
	}
	if si, ok := sysInfo(fi); ok {
		f.rootDev = si.dev
	}
	return f, nil
}

// Close releases the export directory; later operations on its files
// fail.
func (h *FS) Close() error { return h.root.Close() }

// ReadOnly reports whether the export is read-only.
func (h *FS) ReadOnly() bool { return h.ro }

// Attach implements styx.Attacher. The aname is ignored: the tree is the
// whole export.
func (h *FS) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	fi, err := h.root.Stat(".")
	if err != nil {
		return nil, hostErr(err)
	}
	return h.newFile(uname, ".", h.qid(fi, "."), 0), nil
}

// newFile returns a file of h, counted until its Clunk.
func (h *FS) newFile(user, path string, q styx.Qid, mode uint8) *file {
	h.refs.Add(1)
	return &file{fs: h, user: user, path: path, qid: q, mode: mode}
}

// release is called once per file, at its Clunk.
func (h *FS) release() {
	if h.refs.Add(-1) == 0 && h.closeUnused {
		h.root.Close()
	}
}

// hostErr maps an error of a host operation to a 9P error.
func hostErr(err error) error {
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return plan9.ErrorFor(errno)
	}
	inner := err
	for {
		u := errors.Unwrap(inner)
		if u == nil {
			break
		}
		inner = u
	}
	switch {
	case inner.Error() == "path escapes from parent": // os.Root's refusal
		return plan9.ErrPerm
	case errors.Is(err, fs.ErrNotExist):
		return plan9.ErrNotFound
	case errors.Is(err, fs.ErrExist):
		return plan9.ErrExist
	case errors.Is(err, fs.ErrPermission):
		return plan9.ErrPerm
	case errors.Is(err, fs.ErrClosed):
		return plan9.ErrHungup
	}
	return plan9.Error(inner.Error())
}

// allowed applies the Plan 9 permission check to fi for an owner.
func allowed(fi fs.FileInfo, want uint8) bool {
	const owner = "owner"
	return plan9.Allowed(uint32(fi.Mode().Perm()), owner, "", owner, nil, want)
}

func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

func parent(p string) string { return path.Dir(p) } // path.Dir(".") is "."

func baseName(p string) string {
	if p == "." {
		return "/"
	}
	return path.Base(p)
}

// qid computes the qid of fi, found at p.
func (h *FS) qid(fi fs.FileInfo, p string) styx.Qid {
	q := styx.Qid{Type: styx.QTFILE}
	if fi.IsDir() {
		q.Type = styx.QTDIR
	}
	si, ok := sysInfo(fi)
	if ok {
		q.Path = si.ino
		if si.dev != h.rootDev {
			h.mu.Lock()
			idx, ok := h.devs[si.dev]
			if !ok {
				idx = uint64(len(h.devs)+1) & 0xff
				h.devs[si.dev] = idx
			}
			h.mu.Unlock()
			q.Path ^= idx << 56
		}
	} else {
		q.Path = pathHash(p)
	}
	v := uint64(fi.ModTime().UnixNano())
	if !fi.IsDir() {
		v ^= uint64(fi.Size()) * 0x9E3779B97F4A7C15
	}
	q.Vers = uint32(v ^ v>>32)
	return q
}

func pathHash(p string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(p); i++ {
		h ^= uint64(p[i])
		h *= 1099511628211
	}
	return h
}

// name returns the user (group: isGroup) name of id, cached.
func (h *FS) name(id uint32, isGroup bool) string {
	key := uint64(id)
	if isGroup {
		key |= 1 << 32
	}
	h.mu.Lock()
	s, ok := h.names[key]
	h.mu.Unlock()
	if ok {
		return s
	}
	s = strconv.FormatUint(uint64(id), 10)
	if isGroup {
		if g, err := user.LookupGroupId(s); err == nil && g.Name != "" {
			s = g.Name
		}
	} else if u, err := user.LookupId(s); err == nil && u.Username != "" {
		s = u.Username
	}
	h.mu.Lock()
	h.names[key] = s
	h.mu.Unlock()
	return s
}

// dir builds the directory entry of fi, found at p.
func (h *FS) dir(fi fs.FileInfo, p string) styx.Dir {
	d := styx.Dir{
		Qid:   h.qid(fi, p),
		Mode:  uint32(fi.Mode().Perm()),
		Mtime: uint32(fi.ModTime().Unix()),
		Name:  baseName(p),
		Uid:   h.owner,
		Gid:   h.owner,
	}
	d.Atime = d.Mtime
	if fi.IsDir() {
		d.Mode |= styx.DMDIR
	} else if fi.Mode().IsRegular() {
		d.Length = uint64(fi.Size())
	}
	if si, ok := sysInfo(fi); ok {
		d.Atime = uint32(si.atime.Unix())
		if h.owner == "" {
			d.Uid = h.name(si.uid, false)
			d.Gid = h.name(si.gid, true)
		}
	}
	if d.Uid == "" {
		d.Uid, d.Gid = "none", "none"
	}
	d.Muid = d.Uid
	return d
}

var _ styx.File = (*file)(nil)
