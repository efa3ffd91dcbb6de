package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"cheshire/atomicfile"
	"cheshire/plan9"
)

// A disk is the fragments this node holds, for itself and for others:
// one file a fragment in DIR/store/fragments, named by its 64-hex-digit
// address, and one a file's list, named by the file id and ".list". A
// fragment is written to a temporary file and appears under its name
// only once synced (Commit), so a name that exists is on stable
// storage; a list is replaced atomically, never by a lower version.
type disk struct {
	dir    string
	listMu sync.Mutex // serialises list replacement
}

func newDisk(dir string) (*disk, error) {
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, fmt.Errorf("store: fragments: %w", err)
	}
	// Fragments half written when the node last stopped are garbage.
	if tmps, err := filepath.Glob(filepath.Join(dir, ".tmp-*")); err == nil {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return &disk{dir: dir}, nil
}

// isListName tells whether name is a list's: a file id and ".list".
func isListName(name string) bool {
	id, ok := strings.CutSuffix(name, ".list")
	return ok && isHexName(id)
}

func checkName(name string) error {
	if !isHexName(name) && !isListName(name) {
		return fmt.Errorf("store: bad fragment name %q", cut(name, 80))
	}
	return nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// A diskWriter is a fragment being written.
type diskWriter struct {
	f    *os.File
	path string
	mu   sync.Mutex
	done bool
}

func (d *disk) create(name string) (*diskWriter, error) {
	if !isHexName(name) {
		return nil, checkName(name)
	}
	f, err := os.CreateTemp(d.dir, ".tmp-"+name[:8]+"-*")
	if err != nil {
		return nil, fmt.Errorf("store: fragment %s: %w", name[:8], err)
	}
	return &diskWriter{f: f, path: filepath.Join(d.dir, name)}, nil
}

func (w *diskWriter) WriteAt(ctx context.Context, p []byte, off int64) error {
	if _, err := w.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("store: fragment write: %w", err)
	}
	return nil
}

// Commit syncs the fragment and puts it under its name: from then on it
// survives a crash.
func (w *diskWriter) Commit() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.path)
	}
	if err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("store: fragment not stored: %w", err)
	}
	atomicfile.SyncDir(filepath.Dir(w.path))
	return nil
}

// Abort throws the fragment away.
func (w *diskWriter) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// diskReader reads a held fragment.
type diskReader struct{ f *os.File }

func (r diskReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := r.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (r diskReader) Close() { r.f.Close() }

func (d *disk) open(name string) (diskReader, error) {
	if err := checkName(name); err != nil {
		return diskReader{}, err
	}
	f, err := os.Open(filepath.Join(d.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return diskReader{}, fmt.Errorf("store: no fragment %s: %w", name[:8], plan9.ErrNotFound)
	}
	if err != nil {
		return diskReader{}, fmt.Errorf("store: fragment %s: %w", name[:8], err)
	}
	return diskReader{f}, nil
}

// size is the length of a held fragment or list, or -1.
func (d *disk) size(name string) int64 {
	if checkName(name) != nil {
		return -1
	}
	fi, err := os.Stat(filepath.Join(d.dir, name))
	if err != nil {
		return -1
	}
	return fi.Size()
}

func (d *disk) remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(d.dir, name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: no fragment %s: %w", name[:8], plan9.ErrNotFound)
		}
		return fmt.Errorf("store: remove fragment: %w", err)
	}
	return nil
}

// putList stores data, a file's signed list, as name (its file id and
// ".list"), unless a later version is already held.
func (d *disk) putList(name string, data []byte) error {
	if !isListName(name) {
		return checkName(name)
	}
	l, err := ParseList(data)
	if err != nil {
		return err
	}
	if (Cap{Pub: l.Pub}).IDHex()+".list" != name {
		return fmt.Errorf("store: list is not of file %s", name[:8])
	}
	d.listMu.Lock()
	defer d.listMu.Unlock()
	if old, err := os.ReadFile(filepath.Join(d.dir, name)); err == nil {
		if ol, err := ParseList(old); err == nil && ol.Seq > l.Seq {
			return fmt.Errorf("store: list version %d is stale: have %d", l.Seq, ol.Seq)
		}
	}
	if err := atomicfile.Write(filepath.Join(d.dir, name), data, 0600); err != nil {
		return fmt.Errorf("store: list not stored: %w", err)
	}
	return nil
}

func (d *disk) getList(name string) ([]byte, error) {
	if !isListName(name) {
		return nil, checkName(name)
	}
	data, err := os.ReadFile(filepath.Join(d.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: no list %s: %w", name[:8], plan9.ErrNotFound)
	}
	return data, err
}

// usage is the bytes and count of the fragments held.
func (d *disk) usage() (bytes int64, n int) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range ents {
		if isHexName(e.Name()) {
			if fi, err := e.Info(); err == nil {
				bytes += fi.Size()
				n++
			}
		}
	}
	return bytes, n
}
