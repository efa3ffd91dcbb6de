// The files of an export: every operation goes through the FS's
// os.Root, by a path relative to it.

package hostfs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

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
