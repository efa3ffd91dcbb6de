// Package atomicfile replaces files so that a crash at any moment leaves
// either the old content or the new, never a mix or an empty file: the
// data goes to a uniquely named temporary file beside the target, is
// synced, renamed over the target, and the directory is synced so the
// rename itself survives a power loss.
//
// Every file the node persists (namespaces, exports, modules, CA, ACME,
// zones) is written through this package. Writers of the same path must
// serialise among themselves; concurrent writers never corrupt the file
// (each has its own temporary), but the last rename wins.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, mode perm, creating the directory (mode
// 0700) if it is missing.
func Write(path string, data []byte, perm os.FileMode) error {
	s, err := Stage(path, data, perm)
	if err != nil {
		return err
	}
	return s.Commit()
}

// A Staged file has been written and synced under a temporary name beside
// its target; Commit puts it in place, Abort throws it away.
type Staged struct {
	tmp, path string
}

// Stage writes data to a temporary file beside path, synced to disk.
func Stage(path string, data []byte, perm os.FileMode) (*Staged, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) (*Staged, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &Staged{tmp: tmp, path: path}, nil
}

// Path is the file s replaces.
func (s *Staged) Path() string { return s.path }

// Commit renames s over its target and syncs the directory.
func (s *Staged) Commit() error {
	if err := s.rename(); err != nil {
		return err
	}
	SyncDir(filepath.Dir(s.path))
	return nil
}

func (s *Staged) rename() error {
	if err := os.Rename(s.tmp, s.path); err != nil {
		os.Remove(s.tmp)
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	return nil
}

// CommitNew puts s in place only if its target does not exist yet (a
// hard link, which fails with an error satisfying errors.Is(err,
// fs.ErrExist) if it does), and syncs the directory: a file made once,
// such as a key, is whole or absent, never half written.
func (s *Staged) CommitNew() error {
	defer os.Remove(s.tmp)
	if err := os.Link(s.tmp, s.path); err != nil {
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	SyncDir(filepath.Dir(s.path))
	return nil
}

// Create writes a new file at path, failing if there is one already;
// see CommitNew.
func Create(path string, data []byte, perm os.FileMode) error {
	s, err := Stage(path, data, perm)
	if err != nil {
		return err
	}
	return s.CommitNew()
}

// Abort removes the temporary file.
func (s *Staged) Abort() { os.Remove(s.tmp) }

// CommitAll renames every staged file into place, in order, and then syncs
// each directory once. After a failure the files not yet renamed are
// removed and the error names the first that failed.
func CommitAll(files []*Staged) error {
	dirs := map[string]bool{}
	for i, f := range files {
		if err := f.rename(); err != nil {
			for _, g := range files[i+1:] {
				g.Abort()
			}
			return err
		}
		dirs[filepath.Dir(f.path)] = true
	}
	for d := range dirs {
		SyncDir(d)
	}
	return nil
}

// SyncDir makes renames in dir durable, as far as the system allows.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
