package modules

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cheshire/atomicfile"
)

// What is kept in DIR/modules and how it is written: per module
// NAME/package, NAME/source, NAME/config and NAME/state, written as one
// unit through atomicfile, and NAME/data, the module's own; and the
// trusted author keys, DIR/modules/trusted.

// kept reads module name's file as kept in DIR/modules/NAME.
func (m *Manager) kept(name, file string) ([]byte, error) {
	return os.ReadFile(filepath.Join(m.dir, name, file))
}

// unkeep forgets the package, source and state kept for module name. Its
// config and data stay, for a later load of the same name.
func (m *Manager) unkeep(name string) {
	for _, f := range []string{"package", "source", "state"} {
		os.Remove(filepath.Join(m.dir, name, f))
	}
}

// dataDir is module name's private data directory.
func (m *Manager) dataDir(name string) string { return filepath.Join(m.dir, name, "data") }

// persist keeps d's package (if given) and config in DIR/modules/NAME:
// all of them or, if one cannot be written, none.
func (m *Manager) persist(d *managed, pkg []byte, cfgText string) {
	dir := filepath.Join(m.dir, d.name)
	files := map[string][]byte{"config": []byte(cfgText)}
	if pkg != nil {
		d.mu.Lock()
		src := d.source
		d.mu.Unlock()
		files["package"], files["source"] = pkg, []byte(src+"\n")
	}
	if err := m.save(dir, files); err != nil {
		d.slog.Error("keeping the module's package and config", "err", err)
	}
}

func (d *managed) saveStateLocked(s string) {
	if err := d.mgr.save(filepath.Join(d.mgr.dir, d.name), map[string][]byte{"state": []byte(s + "\n")}); err != nil {
		d.slog.Error("keeping the module's state", "err", err)
	}
}

// save writes files (name → content) into dir through atomicfile, as one
// unit: every file is staged before any replaces its old version.
func (m *Manager) save(dir string, files map[string][]byte) error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	var staged []*atomicfile.Staged
	for _, name := range slices.Sorted(maps.Keys(files)) {
		s, err := atomicfile.Stage(filepath.Join(dir, name), files[name], 0600)
		if err != nil {
			for _, s := range staged {
				s.Abort()
			}
			return err
		}
		staged = append(staged, s)
	}
	return atomicfile.CommitAll(staged)
}

// trustedFile keeps the author keys the owner trusts.
func (m *Manager) trustedFile() string { return filepath.Join(m.dir, "trusted") }

func (m *Manager) loadTrusted() error {
	data, err := os.ReadFile(m.trustedFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("modules: trusted keys: %w", err)
	}
	keys, err := parseKeys(data)
	if err != nil {
		return fmt.Errorf("modules: %s: %w", m.trustedFile(), err)
	}
	m.trusted = keys
	return nil
}

// parseKeys reads one key a line; # starts a comment.
func parseKeys(data []byte) ([]string, error) {
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(t, '#'); i >= 0 {
			t = strings.TrimSpace(t[:i])
		}
		if t == "" {
			continue
		}
		if len(strings.Fields(t)) != 1 || len(t) != 52 {
			return nil, fmt.Errorf("%w: line %d: %q is not a key (52 characters of z-base-32, as cheshire module id prints)", errInvalid, line, t)
		}
		keys = append(keys, t)
	}
	return keys, sc.Err()
}

func (m *Manager) setTrusted(data []byte) error {
	keys, err := parseKeys(data)
	if err != nil {
		return err
	}
	if err := m.save(m.dir, map[string][]byte{"trusted": data}); err != nil {
		return fmt.Errorf("saving trusted keys: %w", err)
	}
	m.mu.Lock()
	m.trusted = keys
	m.mu.Unlock()
	m.log.Info("trusted module authors changed", "keys", len(keys))
	return nil
}

// Trusted returns the author keys packages may be signed by.
func (m *Manager) Trusted() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append(slices.Clone(m.always), m.trusted...)
}
