package smarthttp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Packs for fetches, without building one anew each time. go-git's
// encoder searches for deltas and compresses every object again, which
// made a clone ten times slower than git http-backend's, and the first
// clone after a push 25 times; so:
//
//   - a full fetch (no haves, not shallow) of a repository whose objects
//     are all in one pack file (as after git gc or repack) is answered
//     with that file as it is: git accepts a pack holding more objects
//     than it asked for;
//   - any other pack of a repository on disk is made of the entries of
//     its pack files, copied compressed, deltas and all (reuse.go);
//     go-git's encoder makes it only for a repository in memory;
//   - once made, a pack is kept in a bounded cache of files keyed by
//     the objects it holds, so a second clone or fetch of the same refs
//     streams the file.

// maxCachedPacks bounds the pack files the cache keeps (oldest dropped).
const maxCachedPacks = 8

// packCache is the cache of built packs, in a directory of its own:
// Options.TempDir/packs, emptied when the handler is made (a restarted
// node leaves nothing behind), or a new temporary directory.
type packCache struct {
	mu    sync.Mutex
	base  string            // Options.TempDir; "" for a new temporary directory
	dir   string            // made at first use
	files map[string]string // guarded by mu: key → file
	order []string          // guarded by mu: keys, oldest first
}

// packKey names the pack of objects for repo, as encoded for a client
// with or without ofs-delta.
func packKey(repo string, objects []plumbing.Hash, refDeltas bool) string {
	s := slices.Clone(objects)
	slices.SortFunc(s, func(a, b plumbing.Hash) int { return strings.Compare(a.String(), b.String()) })
	h := sha256.New()
	io.WriteString(h, repo)
	if refDeltas {
		h.Write([]byte{1})
	}
	for _, o := range s {
		h.Write(o[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// get returns the cached pack file of key, open, or nil.
func (c *packCache) get(key string) *os.File {
	c.mu.Lock()
	p, ok := c.files[key]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	return f
}

// build makes the pack of objects of repo (by reuse, or else by
// go-git's encoder searching window objects back for deltas, 0: none)
// and writes it both to out and to a new cache file for key, which a
// later fetch of the same objects streams instead.
func (c *packCache) build(repo *gogit.Repository, key string, objects []plumbing.Hash, refDeltas bool, window uint, out io.Writer) error {
	c.mu.Lock()
	if c.dir == "" {
		d, err := c.makeDir()
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.dir, c.files = d, map[string]string{}
	}
	dir := c.dir
	c.mu.Unlock()
	f, err := os.CreateTemp(dir, "pack-*")
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.MultiWriter(f, out)
	err = reusePack(repo, objects, refDeltas, w) // writes nothing when it cannot
	if errors.Is(err, errNoReuse) {
		_, err = packfile.NewEncoder(w, repo.Storer, refDeltas).Encode(objects, window)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	c.mu.Lock()
	if old, ok := c.files[key]; ok { // built twice at once: keep one
		os.Remove(old)
	} else {
		c.order = append(c.order, key)
	}
	c.files[key] = f.Name()
	for len(c.order) > maxCachedPacks {
		os.Remove(c.files[c.order[0]]) // readers holding it open keep reading
		delete(c.files, c.order[0])
		c.order = c.order[1:]
	}
	c.mu.Unlock()
	return nil
}

// makeDir makes the cache's directory, empty.
func (c *packCache) makeDir() (string, error) {
	if c.base == "" {
		return os.MkdirTemp("", "cheshire-packs")
	}
	d := filepath.Join(c.base, "packs")
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0700)
}

// wholePack returns the repository's only pack file, open, if every
// object of the repository is in it (no loose objects, one pack);
// else nil.
func wholePack(repo *gogit.Repository) *os.File {
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil
	}
	objs := filepath.Join(st.Filesystem().Root(), "objects")
	packs, _ := filepath.Glob(filepath.Join(objs, "pack", "*.pack"))
	if len(packs) != 1 {
		return nil
	}
	loose, _ := filepath.Glob(filepath.Join(objs, "[0-9a-f][0-9a-f]", "*"))
	if len(loose) > 0 {
		return nil
	}
	f, err := os.Open(packs[0])
	if err != nil {
		return nil
	}
	return f
}

// packCount is the object count in the header of pack file f (which it
// reads without moving f's offset); 0 if the header is bad.
func packCount(f *os.File) int {
	var h [12]byte
	if _, err := f.ReadAt(h[:], 0); err != nil || string(h[:4]) != "PACK" {
		return 0
	}
	return int(binary.BigEndian.Uint32(h[8:]))
}
