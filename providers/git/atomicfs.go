package git

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5"
)

// atomicFS is a repository's file system with every file go-git makes
// by Create (refs, HEAD, config, shallow) written atomically: into a
// temporary file beside it, synced, and renamed over it at Close, the
// directory synced after. go-git is told the file system cannot read
// and write one file (no billy.ReadAndWriteCapability), so it moves a
// ref by Create and Write (its compare-and-swap done by reading first;
// ours is refMu's) instead of truncating and rewriting the ref file in
// place, which a kill -9 between the two could leave empty. Objects and
// packs go through TempFile and Rename already and are left alone, as
// is packed-refs, which go-git rewrites into a temporary file too.
type atomicFS struct {
	billy.Filesystem
	root string // the directory the file system is rooted at, for syncing directories
}

// Capabilities implements billy.Capable: those of the file system
// without ReadAndWriteCapability.
func (a atomicFS) Capabilities() billy.Capability {
	return billy.Capabilities(a.Filesystem) &^ billy.ReadAndWriteCapability
}

// Create implements billy.Filesystem.
func (a atomicFS) Create(name string) (billy.File, error) {
	clean := path.Clean(filepath.ToSlash(name))
	if strings.HasPrefix(clean, "objects/") {
		return a.Filesystem.Create(name)
	}
	dir := path.Dir(clean)
	if err := a.Filesystem.MkdirAll(dir, 0755); err != nil {
		return nil, err
	}
	tmp, err := a.Filesystem.TempFile(dir, ".tmp-"+path.Base(clean)+"-")
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: tmp, fs: a, name: clean, dir: dir}, nil
}

// atomicFile is a file being made by atomicFS.Create: its data go to a
// temporary file that becomes name at Close.
type atomicFile struct {
	billy.File
	fs     atomicFS
	name   string
	dir    string
	failed bool // a write failed: Close drops the temporary file
}

// Name implements billy.File: the name the file will have.
func (f *atomicFile) Name() string { return f.name }

// Write implements billy.File.
func (f *atomicFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if err != nil {
		f.failed = true
	}
	return n, err
}

// Close implements billy.File: the temporary file is synced and renamed
// over name, and the directory synced; after a failed write it is
// removed and name left as it was.
func (f *atomicFile) Close() error {
	tmp := f.File.Name()
	if s, ok := f.File.(interface{ Sync() error }); ok && !f.failed {
		if err := s.Sync(); err != nil {
			f.failed = true
		}
	}
	err := f.File.Close()
	if err != nil || f.failed {
		f.fs.Filesystem.Remove(tmp)
		if err == nil {
			err = fmt.Errorf("git: %s cannot be written: a write to it failed", f.name)
		}
		return err
	}
	if err := f.fs.Filesystem.Rename(tmp, f.name); err != nil {
		f.fs.Filesystem.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Join(f.fs.root, filepath.FromSlash(f.dir))); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
