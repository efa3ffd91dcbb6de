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
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// file is one fid's view of a host file, named by its path in the root.
type file struct {
	fs   *FS
	user string

	wmu sync.Mutex // serialises Wstat and Remove

	mu   sync.Mutex
	path string   // guarded by mu: relative to the root, "." for it
	qid  styx.Qid // guarded by mu
	fd   *os.File // guarded by mu: set by Open and Create, closed by Clunk
	mode uint8    // guarded by mu
	gone bool     // guarded by mu: clunked, or replaced by Create's file
}

var _ styx.File = (*file)(nil)

func (f *file) get() (string, *os.File) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.path, f.fd
}

func (f *file) Qid() styx.Qid {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.qid
}

func (f *file) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	f.mu.Lock()
	p, q := f.path, f.qid
	f.mu.Unlock()
	if len(names) == 0 {
		return nil, f.fs.newFile(f.user, p, q, 0), nil
	}
	root := f.fs.root
	qids := make([]styx.Qid, 0, len(names))
	fi, err := root.Stat(p)
	if err != nil {
		return qids, nil, hostErr(err)
	}
	for _, name := range names {
		if !fi.IsDir() {
			return qids, nil, plan9.ErrWalkNoDir
		}
		if !allowed(fi, plan9.OEXEC) {
			return qids, nil, plan9.ErrPerm
		}
		if name == ".." {
			p = parent(p)
		} else {
			p = join(p, name)
		}
		if fi, err = root.Stat(p); err != nil {
			return qids, nil, hostErr(err)
		}
		if f.fs.isHidden(fi) {
			return qids, nil, plan9.ErrNotFound
		}
		q = f.fs.qid(fi, p)
		qids = append(qids, q)
	}
	return qids, f.fs.newFile(f.user, p, q, 0), nil
}

// openFlags maps a 9P open mode to host open flags.
func openFlags(mode uint8) int {
	flag := os.O_RDONLY
	switch mode & 3 {
	case plan9.OWRITE:
		flag = os.O_WRONLY
	case plan9.ORDWR:
		flag = os.O_RDWR
	}
	if mode&plan9.OTRUNC != 0 {
		flag |= os.O_TRUNC
	}
	return flag | openExtra
}

func writing(mode uint8) bool {
	m := mode & 3
	return m == plan9.OWRITE || m == plan9.ORDWR || mode&plan9.OTRUNC != 0
}

// open opens p on the host with flag (openFlags), refusing anything but
// regular files and directories. The descriptor is opened non-blocking
// so that a FIFO cannot hang the request, then made blocking again.
func (h *FS) open(p string, flag int, perm os.FileMode) (*os.File, fs.FileInfo, error) {
	fd, err := h.root.OpenFile(p, flag, perm)
	if err != nil {
		return nil, nil, hostErr(err)
	}
	fi, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, nil, hostErr(err)
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		fd.Close()
		return nil, nil, plan9.ErrPerm
	}
	if err := setBlocking(fd); err != nil {
		fd.Close()
		return nil, nil, hostErr(err)
	}
	return fd, fi, nil
}

func (f *file) Open(ctx context.Context, mode uint8) (uint32, error) {
	p, _ := f.get()
	root := f.fs.root
	if f.fs.ro && (writing(mode) || mode&plan9.ORCLOSE != 0) {
		return 0, ErrReadOnly
	}
	fi, err := root.Stat(p)
	if err != nil {
		return 0, hostErr(err)
	}
	if !allowed(fi, mode&(3|plan9.OTRUNC)) {
		return 0, plan9.ErrPerm
	}
	if mode&plan9.ORCLOSE != 0 {
		if p == "." {
			return 0, plan9.ErrPerm
		}
		pfi, err := root.Stat(parent(p))
		if err != nil {
			return 0, hostErr(err)
		}
		if !allowed(pfi, plan9.OWRITE) {
			return 0, plan9.ErrPerm
		}
	}
	flag := openFlags(mode)
	if fi.IsDir() {
		flag = os.O_RDONLY | openExtra
	}
	fd, fi, err := f.fs.open(p, flag, 0)
	if err != nil {
		return 0, err
	}
	q := f.fs.qid(fi, p)
	f.mu.Lock()
	defer f.mu.Unlock()
	if q.Type != f.qid.Type { // replaced by a file of another kind since the walk
		fd.Close()
		return 0, plan9.ErrNotFound
	}
	f.fd, f.qid, f.mode = fd, q, mode
	return 0, nil
}

func (f *file) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	if f.fs.ro {
		return nil, 0, ErrReadOnly
	}
	if perm&(styx.DMAUTH|styx.DMMOUNT) != 0 {
		return nil, 0, plan9.ErrCreate
	}
	p, _ := f.get()
	root := f.fs.root
	dfi, err := root.Stat(p)
	if err != nil {
		return nil, 0, hostErr(err)
	}
	if !dfi.IsDir() {
		return nil, 0, plan9.ErrNotDir
	}
	if !allowed(dfi, plan9.OWRITE) {
		return nil, 0, plan9.ErrPerm
	}
	dmode := uint32(dfi.Mode().Perm())
	np := join(p, name)
	nf := &file{fs: f.fs, user: f.user, path: np, mode: mode} // counted in f's stead: see replacedBy
	if perm&styx.DMDIR != 0 {
		if mode&3 != plan9.OREAD || mode&plan9.OTRUNC != 0 {
			return nil, 0, plan9.ErrIsDir
		}
		want := os.FileMode(perm & (^uint32(0777) | dmode) & 0777)
		if err := root.Mkdir(np, want); err != nil {
			return nil, 0, hostErr(err)
		}
		fi, err := root.Stat(np)
		if err != nil {
			return nil, 0, hostErr(err)
		}
		if fi.Mode().Perm() != want { // the umask took bits away
			root.Chmod(np, want)
		}
		// A directory made without read permission is still created;
		// ReadDir then opens it by name and fails.
		if fd, dfi, err := f.fs.open(np, os.O_RDONLY|openExtra, 0); err == nil && dfi.IsDir() {
			nf.fd, fi = fd, dfi
		} else if err == nil {
			fd.Close()
		}
		nf.qid = f.fs.qid(fi, np)
		return f.replacedBy(nf), 0, nil
	}
	want := os.FileMode(perm & (^uint32(0666) | dmode&0666) & 0777)
	fd, fi, err := f.fs.open(np, openFlags(mode&^plan9.OTRUNC)|os.O_CREATE|os.O_EXCL, want)
	if err != nil {
		return nil, 0, err
	}
	if fi.Mode().Perm() != want {
		if fd.Chmod(want) == nil {
			if nfi, err := fd.Stat(); err == nil {
				fi = nfi
			}
		}
	}
	nf.fd, nf.qid = fd, f.fs.qid(fi, np)
	return f.replacedBy(nf), 0, nil
}

func (f *file) Read(ctx context.Context, p []byte, off int64) (int, error) {
	_, fd := f.get()
	if fd == nil {
		return 0, plan9.ErrNotOpen
	}
	n, err := fd.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	return n, hostErr(err)
}

func (f *file) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	p, fd := f.get()
	if fd == nil {
		var err error
		if fd, _, err = f.fs.open(p, os.O_RDONLY|openExtra, 0); err != nil {
			return nil, err
		}
		defer fd.Close()
	} else if _, err := fd.Seek(0, io.SeekStart); err != nil {
		return nil, hostErr(err)
	}
	ents, err := fd.ReadDir(-1)
	if err != nil {
		return nil, hostErr(err)
	}
	ds := make([]styx.Dir, 0, len(ents))
	for i, e := range ents {
		if i%64 == 63 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		np := join(p, e.Name())
		var fi fs.FileInfo
		if e.Type()&fs.ModeSymlink != 0 {
			fi, err = f.fs.root.Stat(np)
		} else {
			fi, err = e.Info()
		}
		if err != nil || f.fs.isHidden(fi) {
			continue // vanished, a link that leads nowhere or outside, or hidden
		}
		ds = append(ds, f.fs.dir(fi, np))
	}
	slices.SortFunc(ds, func(a, b styx.Dir) int { return strings.Compare(a.Name, b.Name) })
	return ds, nil
}

func (f *file) Write(ctx context.Context, p []byte, off int64) (int, error) {
	_, fd := f.get()
	if fd == nil {
		return 0, plan9.ErrNotOpen
	}
	n, err := fd.WriteAt(p, off)
	return n, hostErr(err)
}

// stat returns the host file info: from the descriptor when the file is
// open (it survives renames), by name otherwise.
func (f *file) stat() (string, fs.FileInfo, error) {
	p, fd := f.get()
	var fi fs.FileInfo
	var err error
	if fd != nil {
		fi, err = fd.Stat()
	} else {
		fi, err = f.fs.root.Stat(p)
	}
	return p, fi, hostErr(err)
}

func (f *file) Stat(ctx context.Context) (styx.Dir, error) {
	p, fi, err := f.stat()
	if err != nil {
		return styx.Dir{}, err
	}
	return f.fs.dir(fi, p), nil
}

// Wstat implements rename within the directory (Name), truncate
// (Length), chmod of the permission bits (Mode) and the times (Mtime,
// Atime). Don't-touch values and values equal to the current ones are
// ignored, and so is muid (Linux v9fs sets it on rename); uid and gid
// cannot change (styx has refused changes to type, dev, qid and the
// DMDIR bit). All checks pass before anything changes; a host failure
// part way undoes the rename and chmod already made (a truncation cannot
// be undone, so it comes last but for the times).
func (f *file) Wstat(ctx context.Context, d styx.Dir) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	p, fi, err := f.stat()
	if err != nil {
		return err
	}
	cur := f.fs.dir(fi, p)
	root := f.fs.root
	if d.Uid != "" && d.Uid != cur.Uid || d.Gid != "" && d.Gid != cur.Gid {
		return plan9.ErrPerm
	}
	rename := d.Name != "" && d.Name != cur.Name
	truncate := false
	if d.Length != ^uint64(0) {
		switch {
		case fi.IsDir():
			if d.Length != 0 {
				return plan9.ErrIsDir
			}
		case d.Length != cur.Length:
			if !fi.Mode().IsRegular() {
				return plan9.ErrPerm
			}
			if int64(d.Length) < 0 {
				return plan9.ErrTooBig
			}
			truncate = true
		}
	}
	chmod := false
	if d.Mode != ^uint32(0) {
		if d.Mode&^(styx.DMDIR|styx.DMTMP|0777) != 0 {
			return plan9.ErrNotSupported // append-only, exclusive use
		}
		chmod = d.Mode&0777 != cur.Mode&0777
	}
	var atime, mtime time.Time // zero: unchanged
	if d.Mtime != ^uint32(0) && d.Mtime != cur.Mtime {
		mtime = time.Unix(int64(d.Mtime), 0)
	}
	if d.Atime != ^uint32(0) && d.Atime != cur.Atime {
		atime = time.Unix(int64(d.Atime), 0)
	}
	times := !mtime.IsZero() || !atime.IsZero()
	if !rename && !truncate && !chmod && !times {
		return nil
	}
	if f.fs.ro {
		return ErrReadOnly
	}
	np := p
	if rename {
		if p == "." {
			return plan9.ErrPerm
		}
		pfi, err := root.Stat(parent(p))
		if err != nil {
			return hostErr(err)
		}
		if !allowed(pfi, plan9.OWRITE) {
			return plan9.ErrPerm
		}
		np = join(parent(p), d.Name)
		if _, err := root.Lstat(np); err == nil {
			return plan9.ErrExist
		} else if !errors.Is(err, fs.ErrNotExist) {
			return hostErr(err)
		}
	}
	if truncate && !allowed(fi, plan9.OWRITE) {
		return plan9.ErrPerm
	}

	// Apply.
	var undo []func()
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return hostErr(err)
	}
	if rename {
		if err := root.Rename(p, np); err != nil {
			return hostErr(err)
		}
		f.mu.Lock()
		f.path = np
		f.mu.Unlock()
		undo = append(undo, func() {
			if root.Rename(np, p) == nil {
				f.mu.Lock()
				f.path = p
				f.mu.Unlock()
			}
		})
	}
	_, fd := f.get()
	if chmod {
		old := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		mode := old&^fs.ModePerm | fs.FileMode(d.Mode&0777)
		if err := f.chmod(fd, np, mode); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { f.chmod(fd, np, old) })
	}
	if truncate {
		if err := f.truncate(fd, np, int64(d.Length)); err != nil {
			return fail(err)
		}
	}
	if times {
		if err := root.Chtimes(np, atime, mtime); err != nil {
			return fail(err)
		}
	}
	return nil
}

func (f *file) chmod(fd *os.File, p string, mode fs.FileMode) error {
	if fd != nil {
		return fd.Chmod(mode)
	}
	return f.fs.root.Chmod(p, mode)
}

func (f *file) truncate(fd *os.File, p string, n int64) error {
	f.mu.Lock()
	w := fd != nil && f.mode&3 != plan9.OREAD && f.mode&3 != plan9.OEXEC
	f.mu.Unlock()
	if w {
		return fd.Truncate(n)
	}
	wfd, fi, err := f.fs.open(p, os.O_WRONLY|openExtra, 0)
	if err != nil {
		return err
	}
	defer wfd.Close()
	if !fi.Mode().IsRegular() {
		return plan9.ErrPerm
	}
	return wfd.Truncate(n)
}

func (f *file) Remove(ctx context.Context) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.fs.ro {
		return ErrReadOnly
	}
	p, _ := f.get()
	if p == "." {
		return plan9.ErrPerm
	}
	pfi, err := f.fs.root.Stat(parent(p))
	if err != nil {
		return hostErr(err)
	}
	if !allowed(pfi, plan9.OWRITE) {
		return plan9.ErrPerm
	}
	return hostErr(f.fs.root.Remove(p))
}

// replacedBy marks f as replaced on its fid by nf, the file Create
// made, which takes over f's count: the engine clunks nf, never f.
func (f *file) replacedBy(nf *file) *file {
	f.mu.Lock()
	f.gone = true
	f.mu.Unlock()
	return nf
}

func (f *file) Clunk() error {
	f.mu.Lock()
	fd := f.fd
	f.fd = nil
	gone := f.gone
	f.gone = true
	f.mu.Unlock()
	if fd != nil {
		fd.Close()
	}
	if !gone {
		f.fs.release()
	}
	return nil
}
