package wasm

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"cheshire/atomicfile"
)

// A sealedCache keeps wazero's compiled code on disk and vouches for it:
// each file wazero writes in dir is recorded in dir/seals with an
// HMAC-SHA256 under a key derived from the node's identity, and every
// file that does not carry a matching seal is deleted before wazero can
// read it. wazero's own check of a cache file is a CRC32, which anyone
// who can write the file can recompute; a seal needs the node's key.
//
// Lock order: mu is taken around every compile, so that a file is
// checked and then read with no writer of ours in between.
type sealedCache struct {
	dir string
	key []byte

	mu    sync.Mutex
	seals map[string]string // guarded by mu: file (relative to dir) to hex HMAC
}

const sealsFile = "seals"

// openSealed opens the sealed cache in dir, deleting what does not
// verify.
func openSealed(dir string, key []byte) (*sealedCache, error) {
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, fmt.Errorf("wasm: compilation cache: %w", err)
	}
	c := &sealedCache{dir: dir, key: key, seals: map[string]string{}}
	data, err := os.ReadFile(filepath.Join(dir, sealsFile))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("wasm: compilation cache: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if name, mac, ok := strings.Cut(sc.Text(), " "); ok {
			c.seals[name] = mac
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.checkLocked(); err != nil {
		return nil, err
	}
	return c, nil
}

// files lists the regular files wazero keeps under dir, relative to it.
func (c *sealedCache) files() ([]string, error) {
	var out []string
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.dir, p)
		if d.IsDir() {
			if p != c.dir && !strings.HasPrefix(rel, "wazero-") && !strings.Contains(rel, string(filepath.Separator)) {
				return fs.SkipDir // not wazero's
			}
			return nil
		}
		if strings.HasPrefix(rel, "wazero-") {
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

func (c *sealedCache) mac(rel string) (string, error) {
	f, err := os.Open(filepath.Join(c.dir, rel))
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := hmac.New(sha256.New, c.key)
	io.WriteString(h, rel+"\x00")
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkLocked deletes every cache file without a matching seal, and
// forgets seals of files gone; it reports how many it deleted.
func (c *sealedCache) checkLocked() (int, error) {
	files, err := c.files()
	if err != nil {
		return 0, fmt.Errorf("wasm: compilation cache: %w", err)
	}
	deleted := 0
	present := map[string]bool{}
	for _, rel := range files {
		m, err := c.mac(rel)
		if want, ok := c.seals[rel]; err != nil || !ok || !hmac.Equal([]byte(m), []byte(want)) {
			if err := os.Remove(filepath.Join(c.dir, rel)); err != nil && !os.IsNotExist(err) {
				return deleted, fmt.Errorf("wasm: compilation cache: removing unsealed %s: %w", rel, err)
			}
			delete(c.seals, rel)
			deleted++
			continue
		}
		present[rel] = true
	}
	changed := deleted > 0
	for rel := range c.seals {
		if !present[rel] {
			delete(c.seals, rel)
			changed = true
		}
	}
	if changed {
		return deleted, c.saveLocked()
	}
	return deleted, nil
}

// sealLocked seals the files wazero wrote since the last check.
func (c *sealedCache) sealLocked() error {
	files, err := c.files()
	if err != nil {
		return fmt.Errorf("wasm: compilation cache: %w", err)
	}
	changed := false
	for _, rel := range files {
		if _, ok := c.seals[rel]; ok {
			continue
		}
		m, err := c.mac(rel)
		if err != nil {
			continue // gone again
		}
		c.seals[rel] = m
		changed = true
	}
	if !changed {
		return nil
	}
	return c.saveLocked()
}

func (c *sealedCache) saveLocked() error {
	names := make([]string, 0, len(c.seals))
	for n := range c.seals {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", n, c.seals[n])
	}
	if err := atomicfile.Write(filepath.Join(c.dir, sealsFile), []byte(b.String()), 0600); err != nil {
		return fmt.Errorf("wasm: compilation cache: %w", err)
	}
	return nil
}

// compile runs f, a compile that may read and write the cache, between
// a check of what is there and a seal of what it wrote. A nil c runs f
// alone.
func (c *sealedCache) compile(f func() error) error {
	if c == nil {
		return f()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.checkLocked(); err != nil {
		return err
	}
	err := f()
	if serr := c.sealLocked(); err == nil && serr != nil {
		return serr
	}
	return err
}
