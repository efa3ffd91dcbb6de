package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cheshire/atomicfile"
	"cheshire/plan9"
)

// A disk is the fragments this node holds, for itself and for others,
// kept apart by the key of the node that stored them: DIR/store/
// fragments/KEY/NAME, one file a fragment named by its 64-hex-digit
// address, and KEY/ID.list, a file's signed list. A fragment is written
// to a temporary file and appears under its name only once synced
// (Commit), so a name that exists is on stable storage; a list is
// replaced atomically, never by a lower version.
//
// The bytes each key holds are counted (from the files at start, then
// as they change), and a writer given a quota is refused, with
// errQuota, a write that would take its key or the keys of other nodes
// together past it.
type disk struct {
	dir    string
	self   string     // this node's key: the fragments this node placed on itself
	listMu sync.Mutex // serialises list replacement
	// trusted ranks the copies of a list of one version: those of this
	// node and of the nodes it trusts before others' (nil: all alike).
	trusted func(key string) bool

	mu       sync.Mutex
	used     map[string]int64 // guarded by mu: bytes held, by key
	reserved map[string]int64 // guarded by mu: bytes of fragments being written, by key
}

// A quota bounds what one key may hold: PerKey for its own, Total for
// the keys of other nodes together (all but this node's).
type quota struct{ PerKey, Total int64 }

// errQuota is the refusal of a write past a quota; the writer places
// the fragment elsewhere.
var errQuota = errors.New("store: quota exceeded")

// errFull is a holder's disk that is full.
var errFull = fmt.Errorf("store: holder's disk is full: %w", plan9.ErrNoSpace)

// newDisk opens the fragments at dir, moving those of the layout before
// keys (every file directly in dir) to self's directory: they were all
// stored by this node or by the users of DIR/users, which may still use
// every key's fragments.
func newDisk(dir, self string) (*disk, error) {
	if !isKeyName(self) {
		return nil, fmt.Errorf("store: bad node key %q", cut(self, 60))
	}
	if err := os.MkdirAll(filepath.Join(dir, self), 0700); err != nil {
		return nil, fmt.Errorf("store: fragments: %w", err)
	}
	d := &disk{dir: dir, self: self, used: make(map[string]int64), reserved: make(map[string]int64)}
	if err := d.migrate(); err != nil {
		return nil, err
	}
	keys, err := d.keys()
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		// Fragments half written when the node last stopped are garbage.
		if tmps, err := filepath.Glob(filepath.Join(dir, k, ".tmp-*")); err == nil {
			for _, t := range tmps {
				os.Remove(t)
			}
		}
		ents, err := os.ReadDir(filepath.Join(dir, k))
		if err != nil {
			return nil, fmt.Errorf("store: fragments of %s: %w", short(k), err)
		}
		for _, e := range ents {
			if checkName(e.Name()) != nil {
				continue
			}
			if fi, err := e.Info(); err == nil {
				d.used[k] += fi.Size()
			}
		}
	}
	return d, nil
}

// migrate moves the fragments and lists of the flat layout into self's
// directory, one rename each (a crash part way leaves the rest to the
// next start; none is lost), then syncs both directories.
func (d *disk) migrate() error {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("store: fragments: %w", err)
	}
	moved := 0
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") && e.Type().IsRegular() {
			os.Remove(filepath.Join(d.dir, name))
			continue
		}
		if !e.Type().IsRegular() || checkName(name) != nil {
			continue
		}
		to := filepath.Join(d.dir, d.self, name)
		if _, err := os.Stat(to); err == nil {
			// Both copies: the one already moved is complete (a rename is
			// atomic); keep the later list, or the moved fragment.
			if isListName(name) {
				if err := d.keepLaterList(filepath.Join(d.dir, name), to); err != nil {
					return err
				}
			}
			os.Remove(filepath.Join(d.dir, name))
			continue
		}
		if err := os.Rename(filepath.Join(d.dir, name), to); err != nil {
			return fmt.Errorf("store: fragments: move to %s: %w", short(d.self), err)
		}
		moved++
	}
	if moved > 0 {
		atomicfile.SyncDir(filepath.Join(d.dir, d.self))
		atomicfile.SyncDir(d.dir)
	}
	return nil
}

// keepLaterList replaces the list at to by the one at from if from's
// version is later.
func (d *disk) keepLaterList(from, to string) error {
	a, errA := os.ReadFile(from)
	b, errB := os.ReadFile(to)
	if errA != nil || errB != nil {
		return nil
	}
	la, errA := ParseList(a)
	lb, errB := ParseList(b)
	if errA == nil && (errB != nil || la.Seq > lb.Seq) {
		if err := atomicfile.Write(to, a, 0600); err != nil {
			return fmt.Errorf("store: fragments: move list: %w", err)
		}
	}
	return nil
}

// isKeyName tells whether s may name a key's directory: a node key in
// z-base-32 (lower-case letters and digits).
func isKeyName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// keys are the keys that hold fragments here, sorted.
func (d *disk) keys() ([]string, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("store: fragments: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && isKeyName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
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

func (d *disk) path(key, name string) string { return filepath.Join(d.dir, key, name) }

// A diskWriter is a fragment being written for key.
type diskWriter struct {
	d    *disk
	key  string
	q    *quota // nil: no limit
	f    *os.File
	path string
	mu   sync.Mutex
	high int64 // bytes reserved: the end of the furthest write
	done bool  // guarded by mu; once set, no background sync starts

	dirty   atomic.Int64  // bytes written since the last background sync began
	syncing chan struct{} // holds a token while a background sync runs
	bg      sync.WaitGroup
	behind  int // guarded by mu: background syncs started
	// bgErr is the first failure of a background sync, guarded by bgMu.
	// Commit must report it: Linux tells each open file of a failed
	// writeback once, so the fsync after it may well succeed.
	bgMu  sync.Mutex
	bgErr error
	// syncFile syncs f (nil: f.Sync); tests make it fail.
	syncFile func(f *os.File) error
}

func (w *diskWriter) sync() error {
	if w.syncFile != nil {
		return w.syncFile(w.f)
	}
	return w.f.Sync()
}

// syncAfter is how many bytes a fragment takes before its holder syncs
// them in the background while the write goes on, one sync at a time.
// The fsync at Commit then waits for the last few MiB, not for the
// whole fragment: on this project's virtual disks a sync's time grows
// with the bytes written since the one before (85 MiB: 300-430 ms at
// the end; synced every 8 MiB as it came: 10-30 ms, see BENCHMARKS.md).
// It is RocksDB's bytes_per_sync, with a real sync where RocksDB only
// starts the writeback, which left the flush of the disk's cache to the end.
const syncAfter = 8 << 20

// create starts fragment name of key; q, if not nil, bounds what key
// may hold.
func (d *disk) create(key, name string, q *quota) (*diskWriter, error) {
	if !isHexName(name) {
		return nil, checkName(name)
	}
	if !isKeyName(key) {
		return nil, fmt.Errorf("store: bad key %q", cut(key, 60))
	}
	if q != nil {
		if err := d.reserve(key, 1, q); err != nil { // a key at its quota gets no new fragment
			return nil, err
		}
		d.release(key, 1)
	}
	dir := filepath.Join(d.dir, key)
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, fmt.Errorf("store: fragment %s: %w", name[:8], diskErr(err))
	}
	f, err := os.CreateTemp(dir, ".tmp-"+name[:8]+"-*")
	if err != nil {
		return nil, fmt.Errorf("store: fragment %s: %w", name[:8], diskErr(err))
	}
	return &diskWriter{d: d, key: key, q: q, f: f, path: d.path(key, name), syncing: make(chan struct{}, 1)}, nil
}

// diskErr is err, or errFull if it says the disk is full.
func diskErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return errFull
	}
	return err
}

// othersLocked are the bytes held and being written for the keys of
// other nodes. d.mu is held.
func (d *disk) othersLocked() int64 {
	var n int64
	for k, v := range d.used {
		if k != d.self {
			n += v
		}
	}
	for k, v := range d.reserved {
		if k != d.self {
			n += v
		}
	}
	return n
}

// reserve counts n more bytes for key, if q allows them.
func (d *disk) reserve(key string, n int64, q *quota) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if q != nil {
		if have := d.used[key] + d.reserved[key]; have+n > q.PerKey {
			return fmt.Errorf("%w for key %s (%d of %d bytes a key held)", errQuota, short(key), have, q.PerKey)
		}
		if have := d.othersLocked(); have+n > q.Total {
			return fmt.Errorf("%w for other nodes (%d of %d bytes held)", errQuota, have, q.Total)
		}
	}
	d.reserved[key] += n
	return nil
}

// release gives back n bytes reserved for key.
func (d *disk) release(key string, n int64) { d.account(key, n, 0) }

// account moves n bytes of key from reserved to used, and adds delta
// to used.
func (d *disk) account(key string, reserved, delta int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reserved[key] -= reserved
	if d.reserved[key] == 0 {
		delete(d.reserved, key)
	}
	d.used[key] += delta
	if d.used[key] <= 0 {
		delete(d.used, key)
	}
}

func (w *diskWriter) WriteAt(ctx context.Context, p []byte, off int64) error {
	end := off + int64(len(p))
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return fmt.Errorf("store: fragment write after its end: %w", plan9.ErrIO)
	}
	if end > w.high {
		if err := w.d.reserve(w.key, end-w.high, w.q); err != nil {
			w.mu.Unlock()
			return err
		}
		w.high = end
	}
	w.mu.Unlock()
	if _, err := w.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("store: fragment write: %w", diskErr(err))
	}
	if w.dirty.Add(int64(len(p))) >= syncAfter {
		w.syncBehind()
	}
	return nil
}

// syncBehind syncs what w has written so far, in the background, unless
// a sync is running or w is done. Its error is kept for Commit.
func (w *diskWriter) syncBehind() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	select {
	case w.syncing <- struct{}{}:
	default:
		return
	}
	w.dirty.Store(0)
	w.behind++
	w.bg.Go(func() {
		if err := w.sync(); err != nil {
			w.bgMu.Lock()
			if w.bgErr == nil {
				w.bgErr = err
			}
			w.bgMu.Unlock()
		}
		<-w.syncing
	})
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
	w.bg.Wait()
	var size, old int64
	err := w.sync()
	if err == nil {
		w.bgMu.Lock()
		err = w.bgErr
		w.bgMu.Unlock()
	}
	if err == nil {
		var fi os.FileInfo
		if fi, err = w.f.Stat(); err == nil {
			size = fi.Size()
		}
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if fi, serr := os.Stat(w.path); serr == nil {
		old = fi.Size()
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.path)
	}
	if err != nil {
		os.Remove(w.f.Name())
		w.d.release(w.key, w.high)
		return fmt.Errorf("store: fragment not stored: %w", diskErr(err))
	}
	atomicfile.SyncDir(filepath.Dir(w.path))
	w.d.account(w.key, w.high, size-old)
	return nil
}

// Abort throws the fragment away.
func (w *diskWriter) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		w.bg.Wait()
		w.f.Close()
		os.Remove(w.f.Name())
		w.d.release(w.key, w.high)
	}
}

// size of the file being written.
func (w *diskWriter) size() (int64, error) {
	fi, err := w.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
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

// open opens fragment or list name of key.
func (d *disk) open(key, name string) (diskReader, error) {
	if err := checkName(name); err != nil {
		return diskReader{}, err
	}
	if !isKeyName(key) {
		return diskReader{}, fmt.Errorf("store: no fragment %s: %w", name[:8], plan9.ErrNotFound)
	}
	f, err := os.Open(d.path(key, name))
	if errors.Is(err, os.ErrNotExist) {
		return diskReader{}, fmt.Errorf("store: no fragment %s: %w", name[:8], plan9.ErrNotFound)
	}
	if err != nil {
		return diskReader{}, fmt.Errorf("store: fragment %s: %w", name[:8], err)
	}
	return diskReader{f}, nil
}

// size is the length of key's fragment or list name, or -1.
func (d *disk) size(key, name string) int64 {
	if checkName(name) != nil || !isKeyName(key) {
		return -1
	}
	fi, err := os.Stat(d.path(key, name))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// owner is the key that holds fragment name here, self's first; ""
// if none.
func (d *disk) owner(name string) string {
	if d.size(d.self, name) >= 0 {
		return d.self
	}
	keys, _ := d.keys()
	for _, k := range keys {
		if d.size(k, name) >= 0 {
			return k
		}
	}
	return ""
}

// remove removes key's fragment or list name.
func (d *disk) remove(key, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !isKeyName(key) {
		return fmt.Errorf("store: no fragment %s: %w", name[:8], plan9.ErrNotFound)
	}
	p := d.path(key, name)
	fi, err := os.Stat(p)
	if err == nil {
		err = os.Remove(p)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: no fragment %s: %w", name[:8], plan9.ErrNotFound)
		}
		return fmt.Errorf("store: remove fragment: %w", err)
	}
	d.account(key, 0, -fi.Size())
	return nil
}

// putList stores data, a file's signed list, as key's name (its file id
// and ".list"), unless key holds a later version already; q, if not
// nil, bounds what key may hold.
func (d *disk) putList(key, name string, data []byte, q *quota) error {
	if !isListName(name) {
		return checkName(name)
	}
	if !isKeyName(key) {
		return fmt.Errorf("store: bad key %q", cut(key, 60))
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
	p := d.path(key, name)
	var old int64
	if data, err := os.ReadFile(p); err == nil {
		old = int64(len(data))
		if ol, err := ParseList(data); err == nil && ol.Seq > l.Seq {
			return fmt.Errorf("store: list version %d is stale: have %d", l.Seq, ol.Seq)
		}
	}
	grow := max(int64(len(data))-old, 0)
	if err := d.reserve(key, grow, q); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0700); err != nil {
		d.release(key, grow)
		return fmt.Errorf("store: list not stored: %w", diskErr(err))
	}
	if err := atomicfile.Write(p, data, 0600); err != nil {
		d.release(key, grow)
		return fmt.Errorf("store: list not stored: %w", diskErr(err))
	}
	d.account(key, grow, int64(len(data))-old)
	return nil
}

// getList is the latest version of list name held here, whichever key
// stored it: a list is signed by the file's key, not the node's. Of
// copies of one version, which differ only in the unsigned places (a
// repair changes them, not the version), those of this node and the
// nodes it trusts come first, so that a stranger cannot send this
// node's reads elsewhere, then the one written last.
func (d *disk) getList(name string) ([]byte, error) {
	if !isListName(name) {
		return nil, checkName(name)
	}
	var best []byte
	var seq uint64
	var at time.Time
	var trust bool
	d.eachList(name, func(key string, data []byte, l *List, mod time.Time) {
		t := key == d.self || d.trusted != nil && d.trusted(key)
		if best == nil || l.Seq > seq || l.Seq == seq && (t && !trust || t == trust && mod.After(at)) {
			best, seq, at, trust = data, l.Seq, mod, t
		}
	})
	if best == nil {
		return nil, fmt.Errorf("store: no list %s: %w", name[:8], plan9.ErrNotFound)
	}
	return best, nil
}

// eachList calls f with every valid copy of list name held here, and
// when it was written.
func (d *disk) eachList(name string, f func(key string, data []byte, l *List, mod time.Time)) {
	keys, _ := d.keys()
	for _, k := range keys {
		fi, err := os.Stat(d.path(k, name))
		if err != nil {
			continue
		}
		data, err := os.ReadFile(d.path(k, name))
		if err != nil {
			continue
		}
		if l, err := ParseList(data); err == nil {
			f(k, data, l, fi.ModTime())
		}
	}
}

// listNames tells whether a list held here of the file of pub names
// fragment frag.
func (d *disk) listNames(pub []byte, frag string) bool {
	found := false
	d.eachList((Cap{Pub: pub}).IDHex()+".list", func(_ string, _ []byte, l *List, _ time.Time) {
		for _, fr := range l.Frags {
			if fr.Name == frag {
				found = true
			}
		}
	})
	return found
}

// names are key's fragments and lists.
func (d *disk) names(key string) []string {
	ents, err := os.ReadDir(filepath.Join(d.dir, key))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if checkName(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// usage is the bytes and count of the fragments held, for every key.
func (d *disk) usage() (bytes int64, n int) {
	keys, _ := d.keys()
	for _, k := range keys {
		ents, err := os.ReadDir(filepath.Join(d.dir, k))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if isHexName(e.Name()) {
				if fi, err := e.Info(); err == nil {
					bytes += fi.Size()
					n++
				}
			}
		}
	}
	return bytes, n
}

// usedBy is the bytes key holds here (fragments and lists, committed).
func (d *disk) usedBy() map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.used)
}
