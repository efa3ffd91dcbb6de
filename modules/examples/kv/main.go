// Kv is a cheshire module serving a key-value store as files:
//
//	/ctl        write "set KEY VALUE" or "del KEY" (a line each); read "keys N"
//	/keys/KEY   a key's value: read it; write it (opened with truncation,
//	            as the shell's > does, a write replaces the value, else
//	            it writes at its offset as in any file); create adds a
//	            key, remove deletes it
//
// Every change is on disk (in the module's /data, fsynced) before the
// write, create or remove that made it is answered, so an acknowledged
// write survives a restart of the module or of the node.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"cheshire/modules/sdk"
)

func main() {}

func init() {
	s, err := open("/data/keys")
	if err != nil {
		// Without its store the module cannot serve: failing its start
		// tells the owner why.
		panic(err)
	}
	sdk.Serve(s.tree())
}

// Limits.
const (
	maxKey   = 120      // bytes of a key name (its file name is twice that)
	maxValue = 16 << 20 // bytes of a value
)

type store struct {
	dir  string
	keys map[string]*entry
}

type entry struct {
	val  []byte
	node *sdk.FileNode
}

// open loads the store kept in dir, one file per key named by the key
// in hex.
func open(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	s := &store{dir: dir, keys: make(map[string]*entry)}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") {
			// A temporary file of an unfinished set.
			os.Remove(path.Join(dir, name))
			continue
		}
		k, err := hex.DecodeString(name)
		if err != nil {
			continue
		}
		val, err := os.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("kv: key %q: %w", k, err)
		}
		s.add(string(k), val)
	}
	return s, nil
}

func (s *store) file(key string) string { return path.Join(s.dir, hex.EncodeToString([]byte(key))) }

func (s *store) add(key string, val []byte) *entry {
	e := &entry{val: val}
	e.node = sdk.NewFile(key, 0o666, func(ctx context.Context, mode uint8) (sdk.File, error) {
		return s.openKey(key, mode)
	}).SetSize(func() int64 { return int64(len(e.val)) })
	s.keys[key] = e
	return e
}

func checkKey(key string) error {
	switch {
	case key == "" || key == "." || key == ".." || strings.ContainsAny(key, "/\x00"):
		return sdk.Error("bad key name")
	case len(key) > maxKey:
		return sdk.Error("key name longer than " + strconv.Itoa(maxKey) + " bytes")
	}
	return nil
}

// syncDir makes the directory's entries (a new or removed key) durable.
func (s *store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}

// set replaces key's value (making the key), durably: a temporary file,
// synced, renamed over the old one.
func (s *store) set(key string, val []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(val) > maxValue {
		return sdk.ErrTooBig
	}
	tmp := path.Join(s.dir, "."+hex.EncodeToString([]byte(key)))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(val)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.file(key))
	}
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("set %s: %w", key, err)
	}
	e, ok := s.keys[key]
	if !ok {
		e = s.add(key, nil)
	}
	e.val = slices.Clone(val)
	e.node.Touch()
	return nil
}

func (s *store) del(key string) error {
	if _, ok := s.keys[key]; !ok {
		return sdk.ErrNotFound
	}
	if err := os.Remove(s.file(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("del %s: %w", key, err)
	}
	if err := s.syncDir(); err != nil {
		return fmt.Errorf("del %s: %w", key, err)
	}
	delete(s.keys, key)
	return nil
}

// keyFile is an open key: reads see the current value, writes go to the
// key's file and are synced before they are answered.
type keyFile struct {
	s     *store
	key   string
	write bool
}

func (s *store) openKey(key string, mode uint8) (sdk.File, error) {
	e, ok := s.keys[key]
	if !ok {
		return nil, sdk.ErrNotFound
	}
	k := &keyFile{s: s, key: key, write: mode&3 == sdk.OWRITE || mode&3 == sdk.ORDWR}
	if mode&sdk.OTRUNC != 0 {
		if err := s.writeFile(key, os.O_TRUNC, nil, 0); err != nil {
			return nil, fmt.Errorf("truncate %s: %w", key, err)
		}
		e.val = nil
		e.node.Touch()
	}
	return k, nil
}

// writeFile writes p at off in key's file, opened with flag besides
// O_WRONLY, and syncs it. The file is opened for each write, so that a
// set renaming a new file over it never leaves a write in the old one.
func (s *store) writeFile(key string, flag int, p []byte, off int64) error {
	f, err := os.OpenFile(s.file(key), os.O_WRONLY|flag, 0o600)
	if err != nil {
		return err
	}
	if len(p) > 0 {
		_, err = f.WriteAt(p, off)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (k *keyFile) ReadAt(p []byte, off int64) (int, error) {
	e, ok := k.s.keys[k.key]
	if !ok {
		return 0, sdk.ErrNotFound
	}
	if off >= int64(len(e.val)) {
		return 0, io.EOF
	}
	return copy(p, e.val[off:]), nil
}

func (k *keyFile) WriteAt(p []byte, off int64) (int, error) {
	e, ok := k.s.keys[k.key]
	switch {
	case !ok:
		return 0, sdk.ErrNotFound
	case !k.write:
		return 0, sdk.ErrPerm
	case off < 0 || off+int64(len(p)) > maxValue:
		return 0, sdk.ErrTooBig
	}
	if err := k.s.writeFile(k.key, 0, p, off); err != nil {
		return 0, fmt.Errorf("write %s: %w", k.key, err)
	}
	if end := off + int64(len(p)); end > int64(len(e.val)) {
		e.val = append(e.val, make([]byte, end-int64(len(e.val)))...)
	}
	copy(e.val[off:], p)
	e.node.Touch()
	return len(p), nil
}

func (k *keyFile) Close() error { return nil }

func (s *store) tree() *sdk.Dir {
	keys := sdk.NewDir("keys", 0o777)
	keys.SetLookup(func(ctx context.Context, name string) (sdk.Node, error) {
		if e, ok := s.keys[name]; ok {
			return e.node, nil
		}
		return nil, sdk.ErrNotFound
	})
	keys.SetGen(func(ctx context.Context) ([]sdk.Node, error) {
		names := make([]string, 0, len(s.keys))
		for k := range s.keys {
			names = append(names, k)
		}
		slices.Sort(names)
		nodes := make([]sdk.Node, len(names))
		for i, k := range names {
			nodes[i] = s.keys[k].node
		}
		return nodes, nil
	})
	keys.SetCreate(func(ctx context.Context, name string, perm uint32) (sdk.Node, error) {
		if perm&sdk.DMDIR != 0 {
			return nil, sdk.Error("keys are files, not directories")
		}
		if err := s.set(name, nil); err != nil {
			return nil, err
		}
		return s.keys[name].node, nil
	})
	keys.SetRemove(func(ctx context.Context, name string) error { return s.del(name) })

	ctl := sdk.Ctl("ctl", 0o666, func(ctx context.Context) ([]byte, error) {
		return fmt.Appendf(nil, "keys %d\n", len(s.keys)), nil
	}, func(ctx context.Context, data []byte) error {
		for line := range strings.SplitSeq(string(data), "\n") {
			if err := s.ctl(line); err != nil {
				return err
			}
		}
		return nil
	})
	return sdk.NewDir("/", 0o555, ctl, keys)
}

// ctl runs one control line: set KEY VALUE (the value is the rest of
// the line after one blank) or del KEY.
func (s *store) ctl(line string) error {
	line = strings.TrimRight(line, "\r")
	if strings.TrimSpace(line) == "" {
		return nil
	}
	verb, rest, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
	switch verb {
	case "set":
		key, val, ok := strings.Cut(rest, " ")
		if !ok || key == "" {
			return sdk.ErrBadArgs
		}
		return s.set(key, []byte(val))
	case "del":
		key := strings.TrimSpace(rest)
		if key == "" || strings.Contains(key, " ") {
			return sdk.ErrBadArgs
		}
		return s.del(key)
	}
	return fmt.Errorf("%w: %q", sdk.ErrBadCtl, verb)
}
