package wasm

import (
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// dataFS is a module's /data: a host directory the guest reaches through
// WASI, confined on the host side by an os.Root, which resolves every
// path (symbolic links on the way included) beneath the directory and
// refuses what would leave it. The guest may not make links, symbolic
// or hard: what is in the directory is what the node put there or the
// guest wrote.
//
// It implements wazero's experimental sys.FS; wazero has already
// cleaned each path and refused absolute ones and ones with "..".
type dataFS struct {
	experimentalsys.UnimplementedFS
	root *os.Root
}

var _ experimentalsys.FS = (*dataFS)(nil)

// openDataFS opens dir as a dataFS. Close releases it; files the guest
// still has open stay usable until the instance is closed.
func openDataFS(dir string) (*dataFS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &dataFS{root: root}, nil
}

func (d *dataFS) Close() error { return d.root.Close() }

// String implements fmt.Stringer, for wazero's messages.
func (d *dataFS) String() string { return d.root.Name() }

// rel turns wazero's path into one relative to the root.
func rel(p string) string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return "."
	}
	return p
}

// errno converts an error of package os. A path the root refuses to
// leave is EPERM; os.Root says so only in its text.
func errno(err error) experimentalsys.Errno {
	e := experimentalsys.UnwrapOSError(err)
	if e == experimentalsys.EIO && strings.Contains(err.Error(), "path escapes") {
		return experimentalsys.EPERM
	}
	return e
}

func osFlag(oflag experimentalsys.Oflag) int {
	var flag int
	switch oflag & (experimentalsys.O_RDONLY | experimentalsys.O_RDWR | experimentalsys.O_WRONLY) {
	case experimentalsys.O_RDWR:
		flag = os.O_RDWR
	case experimentalsys.O_WRONLY:
		flag = os.O_WRONLY
	default:
		flag = os.O_RDONLY
	}
	for _, f := range []struct {
		sys experimentalsys.Oflag
		os  int
	}{
		{experimentalsys.O_APPEND, os.O_APPEND},
		{experimentalsys.O_CREAT, os.O_CREATE},
		{experimentalsys.O_EXCL, os.O_EXCL},
		{experimentalsys.O_SYNC, os.O_SYNC},
		{experimentalsys.O_TRUNC, os.O_TRUNC},
		{experimentalsys.O_DIRECTORY, oDirectory},
		{experimentalsys.O_NOFOLLOW, oNofollow},
	} {
		if oflag&f.sys != 0 {
			flag |= f.os
		}
	}
	return flag
}

// OpenFile implements sys.FS.
func (d *dataFS) OpenFile(path string, oflag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if oflag&experimentalsys.O_DIRECTORY != 0 && oflag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR) != 0 {
		return nil, experimentalsys.EISDIR
	}
	name := rel(path)
	f, err := d.root.OpenFile(name, osFlag(oflag), perm)
	if err != nil {
		return nil, errno(err)
	}
	return &dataFile{fs: d, name: name, oflag: oflag &^ (experimentalsys.O_CREAT | experimentalsys.O_TRUNC | experimentalsys.O_EXCL), f: f}, 0
}

// Lstat implements sys.FS.
func (d *dataFS) Lstat(path string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := d.root.Lstat(rel(path))
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Stat implements sys.FS.
func (d *dataFS) Stat(path string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := d.root.Stat(rel(path))
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Mkdir implements sys.FS.
func (d *dataFS) Mkdir(path string, perm fs.FileMode) experimentalsys.Errno {
	e := errno(d.root.Mkdir(rel(path), perm))
	if e == experimentalsys.ENOTDIR {
		e = experimentalsys.ENOENT
	}
	return e
}

// Chmod implements sys.FS.
func (d *dataFS) Chmod(path string, perm fs.FileMode) experimentalsys.Errno {
	return errno(d.root.Chmod(rel(path), perm))
}

// Rename implements sys.FS: both names are in the root.
func (d *dataFS) Rename(from, to string) experimentalsys.Errno {
	return errno(d.root.Rename(rel(from), rel(to)))
}

// Rmdir implements sys.FS.
func (d *dataFS) Rmdir(path string) experimentalsys.Errno {
	fi, err := d.root.Lstat(rel(path))
	if err != nil {
		return errno(err)
	}
	if !fi.IsDir() {
		return experimentalsys.ENOTDIR
	}
	return errno(d.root.Remove(rel(path)))
}

// Unlink implements sys.FS.
func (d *dataFS) Unlink(path string) experimentalsys.Errno {
	fi, err := d.root.Lstat(rel(path))
	if err != nil {
		return errno(err)
	}
	if fi.IsDir() {
		return experimentalsys.EISDIR
	}
	return errno(d.root.Remove(rel(path)))
}

// Link implements sys.FS: the guest may not make hard links.
func (d *dataFS) Link(string, string) experimentalsys.Errno { return experimentalsys.EPERM }

// Symlink implements sys.FS: the guest may not make symbolic links.
func (d *dataFS) Symlink(string, string) experimentalsys.Errno { return experimentalsys.EPERM }

// Readlink implements sys.FS.
func (d *dataFS) Readlink(path string) (string, experimentalsys.Errno) {
	s, err := d.root.Readlink(rel(path))
	if err != nil {
		return "", errno(err)
	}
	return s, 0
}

// Utimens implements sys.FS.
func (d *dataFS) Utimens(path string, atim, mtim int64) experimentalsys.Errno {
	return errno(d.root.Chtimes(rel(path), nsTime(atim), nsTime(mtim)))
}

// nsTime is the time of a WASI timestamp; UTIME_OMIT is the zero time,
// which leaves the time as it is.
func nsTime(ns int64) time.Time {
	if ns == experimentalsys.UTIME_OMIT {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// A dataFile is a file of a dataFS, opened in its root.
type dataFile struct {
	experimentalsys.UnimplementedFile
	fs    *dataFS
	name  string // in the root, to open it again
	oflag experimentalsys.Oflag
	f     *os.File
	st    *sys.Stat_t // what does not change while it is open
}

func (f *dataFile) stat() (*sys.Stat_t, experimentalsys.Errno) {
	if f.st == nil {
		if _, e := f.Stat(); e != 0 {
			return nil, e
		}
	}
	return f.st, 0
}

// Dev implements sys.File.
func (f *dataFile) Dev() (uint64, experimentalsys.Errno) {
	st, e := f.stat()
	if e != 0 {
		return 0, e
	}
	return st.Dev, 0
}

// Ino implements sys.File.
func (f *dataFile) Ino() (sys.Inode, experimentalsys.Errno) {
	st, e := f.stat()
	if e != 0 {
		return 0, e
	}
	return st.Ino, 0
}

// IsDir implements sys.File.
func (f *dataFile) IsDir() (bool, experimentalsys.Errno) {
	st, e := f.stat()
	if e != 0 {
		return false, e
	}
	return st.Mode.IsDir(), 0
}

// IsAppend implements sys.File.
func (f *dataFile) IsAppend() bool { return f.oflag&experimentalsys.O_APPEND != 0 }

// SetAppend implements sys.File: the file is opened again, in the root,
// with the new flag, and must still be the same file.
func (f *dataFile) SetAppend(enable bool) experimentalsys.Errno {
	oflag := f.oflag &^ experimentalsys.O_APPEND
	if enable {
		oflag |= experimentalsys.O_APPEND
	}
	if dir, e := f.IsDir(); e != 0 || dir {
		return experimentalsys.EISDIR
	}
	off, err := f.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return errno(err)
	}
	nf, err := f.fs.root.OpenFile(f.name, osFlag(oflag), 0)
	if err != nil {
		return errno(err)
	}
	a, err1 := f.f.Stat()
	b, err2 := nf.Stat()
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		nf.Close()
		return experimentalsys.ENOENT
	}
	if _, err := nf.Seek(off, io.SeekStart); err != nil {
		nf.Close()
		return errno(err)
	}
	f.f.Close()
	f.f, f.oflag = nf, oflag
	return 0
}

// Stat implements sys.File.
func (f *dataFile) Stat() (sys.Stat_t, experimentalsys.Errno) {
	fi, err := f.f.Stat()
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	st := sys.NewStat_t(fi)
	if f.st == nil {
		f.st = &sys.Stat_t{Dev: st.Dev, Ino: st.Ino, Mode: st.Mode.Type()}
	}
	return st, 0
}

// fileErr turns EBADF-style errors on a directory into EISDIR, as a
// read or write of a directory is in POSIX.
func (f *dataFile) fileErr(err error) experimentalsys.Errno {
	if dir, _ := f.IsDir(); dir {
		return experimentalsys.EISDIR
	}
	return errno(err)
}

// Read implements sys.File.
func (f *dataFile) Read(b []byte) (int, experimentalsys.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, err := f.f.Read(b)
	if err != nil && err != io.EOF {
		return n, f.fileErr(err)
	}
	return n, 0
}

// Pread implements sys.File.
func (f *dataFile) Pread(b []byte, off int64) (int, experimentalsys.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, err := f.f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		return n, f.fileErr(err)
	}
	return n, 0
}

// offset is int64 under another name, so that go vet does not take Seek
// for a wrong io.Seeker: its result is an Errno.
type offset = int64

// Seek implements sys.File.
func (f *dataFile) Seek(off offset, whence int) (int64, experimentalsys.Errno) {
	n, err := f.f.Seek(off, whence)
	if err != nil {
		return 0, errno(err)
	}
	return n, 0
}

// Readdir implements sys.File.
func (f *dataFile) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	fis, err := f.f.Readdir(n)
	if err != nil && err != io.EOF {
		if dir, _ := f.IsDir(); !dir {
			return nil, experimentalsys.ENOTDIR
		}
		return nil, errno(err)
	}
	ds := make([]experimentalsys.Dirent, len(fis))
	for i, fi := range fis {
		ds[i] = experimentalsys.Dirent{Name: fi.Name(), Ino: sys.NewStat_t(fi).Ino, Type: fi.Mode().Type()}
	}
	return ds, 0
}

// Write implements sys.File.
func (f *dataFile) Write(b []byte) (int, experimentalsys.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, err := f.f.Write(b)
	if err != nil {
		return n, f.fileErr(err)
	}
	return n, 0
}

// Pwrite implements sys.File.
func (f *dataFile) Pwrite(b []byte, off int64) (int, experimentalsys.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, err := f.f.WriteAt(b, off)
	if err != nil {
		return n, f.fileErr(err)
	}
	return n, 0
}

// Truncate implements sys.File.
func (f *dataFile) Truncate(size int64) experimentalsys.Errno {
	if size < 0 {
		return experimentalsys.EINVAL
	}
	if err := f.f.Truncate(size); err != nil {
		return f.fileErr(err)
	}
	return 0
}

// Sync implements sys.File.
func (f *dataFile) Sync() experimentalsys.Errno {
	if err := f.f.Sync(); err != nil && !isInvalid(err) {
		return errno(err)
	}
	return 0
}

// Datasync implements sys.File.
func (f *dataFile) Datasync() experimentalsys.Errno { return f.Sync() }

// isInvalid reports whether err is EINVAL, which fsync of some files
// (directories on some systems) answers and which is no failure.
func isInvalid(err error) bool {
	return experimentalsys.UnwrapOSError(err) == experimentalsys.EINVAL || err == syscall.EINVAL
}

// Close implements sys.File.
func (f *dataFile) Close() experimentalsys.Errno {
	if f.f == nil {
		return 0
	}
	err := f.f.Close()
	f.f = nil
	return errno(err)
}
