package ns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"cheshire/atomicfile"
	"cheshire/plan9"
	"cheshire/styx"
)

// An Export makes a path of a user's namespace visible to remote keys,
// as Plan 9's exportfs -R (read-only) and -P (a path) do.
type Export struct {
	User string // whose namespace
	Path string // the exported path, also where it appears
	RO   bool
	To   string // a key (z-base-32), or "*" for any authenticated key
}

func (e Export) String() string {
	mode := "rw"
	if e.RO {
		mode = "ro"
	}
	return fmt.Sprintf("%s %s %s %s", plan9.Quote(e.User), plan9.Quote(e.Path), mode, e.To)
}

// exportsFile keeps the exports, one a line as Export.String writes it.
func (m *Manager) exportsFile() string { return filepath.Join(m.dir, "exports") }

// Exports returns the exports, read from the exports file.
func (m *Manager) Exports() ([]Export, error) {
	if m.dir == "" {
		m.mu.Lock()
		defer m.mu.Unlock()
		return slices.Clone(m.exports), nil
	}
	// A remote view asks on every walk: parse the file again only when
	// it is another file (saves rename a new one in) or was changed in
	// place (by hand), as its stat tells.
	fi, err := os.Stat(m.exportsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("exports: %w", err)
	}
	m.mu.Lock()
	c := m.exportsCache
	m.mu.Unlock()
	if c.fi != nil && os.SameFile(c.fi, fi) && c.fi.ModTime().Equal(fi.ModTime()) && c.fi.Size() == fi.Size() {
		return slices.Clone(c.es), nil
	}
	es, err := m.parseExports()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.exportsCache = exportsCache{fi: fi, es: es}
	m.mu.Unlock()
	return slices.Clone(es), nil
}

// PublicExports returns the paths exported to every key ("*"), each
// once, in the order of the exports file: what the node advertises.
func (m *Manager) PublicExports() ([]string, error) {
	es, err := m.Exports()
	var out []string
	for _, e := range es {
		if e.To == "*" && !slices.Contains(out, e.Path) {
			out = append(out, e.Path)
		}
	}
	return out, err
}

// exportsCache is the exports file as last parsed, with its stat.
type exportsCache struct {
	fi os.FileInfo
	es []Export
}

// parseExports reads and parses the exports file.
func (m *Manager) parseExports() ([]Export, error) {
	data, err := os.ReadFile(m.exportsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("exports: %w", err)
	}
	var out []Export
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		if t := strings.TrimSpace(sc.Text()); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		w, err := plan9.Tokenize(sc.Text())
		if err != nil || len(w) != 4 || (w[2] != "ro" && w[2] != "rw") {
			return nil, fmt.Errorf("%s line %d: want USER PATH ro|rw KEY|*", m.exportsFile(), line)
		}
		out = append(out, Export{User: w[0], Path: w[1], RO: w[2] == "ro", To: w[3]})
	}
	return out, sc.Err()
}

func (m *Manager) saveExports(es []Export) error {
	if m.dir == "" {
		m.mu.Lock()
		m.exports = es
		m.mu.Unlock()
		return nil
	}
	var b strings.Builder
	b.WriteString("# exports: USER PATH ro|rw KEY|*, rewritten by cheshire after export and unexport in /ns/ctl\n")
	for _, e := range es {
		b.WriteString(e.String() + "\n")
	}
	if err := atomicfile.Write(m.exportsFile(), []byte(b.String()), 0600); err != nil {
		return fmt.Errorf("saving exports: %w", err)
	}
	return nil
}

// AddExport adds (or replaces, for the same user, path and key) e.
func (m *Manager) AddExport(e Export) error {
	return m.editExports(func(es []Export) ([]Export, error) { return addExport(es, e), nil })
}

// RemoveExport removes user's exports of p.
func (m *Manager) RemoveExport(user, p string) error {
	return m.editExports(func(es []Export) ([]Export, error) { return removeExport(es, user, p) })
}

// editExports changes the exports with edit and saves them.
func (m *Manager) editExports(edit func([]Export) ([]Export, error)) error {
	m.exportMu.Lock()
	defer m.exportMu.Unlock()
	es, err := m.Exports()
	if err != nil {
		return err
	}
	if es, err = edit(es); err != nil {
		return err
	}
	if err := m.saveExports(es); err != nil {
		return err
	}
	m.exportsChanged()
	return nil
}

func addExport(es []Export, e Export) []Export {
	es = slices.DeleteFunc(es, func(o Export) bool { return o.User == e.User && o.Path == e.Path && o.To == e.To })
	return append(es, e)
}

func removeExport(es []Export, user, p string) ([]Export, error) {
	n := len(es)
	es = slices.DeleteFunc(es, func(o Export) bool { return o.User == user && o.Path == p })
	if len(es) == n {
		return nil, fmt.Errorf("%s: not exported", p)
	}
	return es, nil
}

// exportsChanged tells the WithExportsChanged function, if any.
func (m *Manager) exportsChanged() {
	if m.onExports != nil {
		m.onExports()
	}
}

// An exportTx holds the export changes of one /ns/ctl write until it has
// applied all its lines: each is checked against the exports as the
// lines before it left them, and all are saved together at the end.
type exportTx struct {
	view  []Export                           // the exports as the write has left them so far
	edits []func([]Export) ([]Export, error) // replayed on the exports of the moment at commit
}

// edit applies an export change to the transaction's view.
func (tx *exportTx) edit(m *Manager, f func([]Export) ([]Export, error)) error {
	if tx.view == nil {
		es, err := m.Exports()
		if err != nil {
			return err
		}
		tx.view = append(make([]Export, 0, len(es)), es...)
	}
	es, err := f(slices.Clone(tx.view))
	if err != nil {
		return err
	}
	tx.view = es
	tx.edits = append(tx.edits, f)
	return nil
}

// commit replays the transaction's changes on the exports and saves
// them once. A removal of what another writer removed meanwhile is not
// an error.
func (tx *exportTx) commit(m *Manager) error {
	if len(tx.edits) == 0 {
		return nil
	}
	return m.editExports(func(es []Export) ([]Export, error) {
		for _, f := range tx.edits {
			if out, err := f(es); err == nil {
				es = out
			}
		}
		return es, nil
	})
}

// viewUser is the user name of a remote key's view.
func viewUser(key string) string { return "key:" + key }

// isView reports whether user names a remote key's view.
func isView(user string) bool { return strings.HasPrefix(user, "key:") }

// WithRefused calls refused when AttachRemote refuses key because
// nothing is exported to it (the node files an access request, say).
// It is called before AttachRemote returns, so it should be quick.
func WithRefused(refused func(ctx context.Context, key, aname string)) Option {
	return func(m *Manager) { m.refused = refused }
}

// AttachRemote attaches a remote key to the view of what is exported to
// it: each exported path at its own place, read-only where exported so;
// nothing else. A key to which nothing is exported gets "permission
// denied".
//
// The view attached at its root is looked at again at each walk from
// that root (and each listing of it), so that an export added or
// removed after a remote node connected shows, or goes, without a
// reconnection; and an export whose path is not there (the in-memory
// /tmp of a node that restarted, say) waits, and shows once the path is
// made. Files walked to before an export was removed keep working until
// they are clunked, as in Plan 9.
func (m *Manager) AttachRemote(ctx context.Context, key, aname string) (styx.File, error) {
	ns, err := newNamespace(ctx, m, viewUser(key))
	if err != nil {
		return nil, err
	}
	v := &view{m: m, ns: ns, key: key, shown: map[Export]bool{}}
	wanted, shown, err := v.refresh(ctx)
	if err != nil {
		ns.Close()
		return nil, err
	}
	if wanted == 0 {
		ns.Close()
		if m.refused != nil {
			m.refused(ctx, key, aname)
		}
		return nil, fmt.Errorf("%w: nothing is exported to key %s", plan9.ErrPerm, key)
	}
	if aname != "" && aname != "/" {
		if shown == 0 {
			ns.Close()
			return nil, fmt.Errorf("%s: %w (what is exported to this key is not there now)", aname, plan9.ErrNotFound)
		}
		c, err := ns.resolve(ctx, aname, true)
		if err != nil {
			ns.Close()
			return nil, err
		}
		return newFile(ns, c, false), nil
	}
	c, err := ns.rootChan(ctx)
	if err != nil {
		ns.Close()
		return nil, err
	}
	return viewRoot{newFile(ns, c, false), v}, nil
}

// A view is a remote key's namespace of what is exported to it.
type view struct {
	m   *Manager
	ns  *Namespace
	key string

	mu    sync.Mutex
	shown map[Export]bool // guarded by mu: the exports mounted in ns
}

// refresh mounts in the view the exports to its key that it lacks and
// unmounts those no longer exported; it returns how many exports are
// for the key and how many of them are shown.
func (v *view) refresh(ctx context.Context) (wanted, shown int, err error) {
	es, err := v.m.Exports()
	if err != nil {
		return 0, 0, err
	}
	want := map[Export]bool{}
	for _, e := range es {
		if e.To == v.key || e.To == "*" {
			want[e] = true
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for e := range v.shown {
		if want[e] {
			continue
		}
		// Every #export at e.Path goes; those still wanted come back below.
		// The mount point stays, an empty directory, as in Plan 9.
		v.ns.Unmount(ctx, "#export", e.Path)
		for o := range v.shown {
			if o.Path == e.Path {
				delete(v.shown, o)
			}
		}
	}
	for e := range want {
		if v.shown[e] {
			continue
		}
		flags := MCREATE // files may be made in a writable export
		if e.RO {
			flags = MREPL
		}
		if err := v.ns.Mount(ctx, "#export", e.Path, e.User+"!"+e.Path, flags); err != nil {
			v.m.log.Debug("export waits", "key", v.key, "export", e.String(), "err", err)
			continue
		}
		v.shown[e] = true
	}
	return len(want), len(v.shown), nil
}

// viewRoot is the root of a view: a walk from it, and a listing of it,
// see the exports of the moment.
type viewRoot struct {
	styx.File
	v *view
}

func (r viewRoot) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	if _, _, err := r.v.refresh(ctx); err != nil {
		return nil, nil, err
	}
	qids, f, err := r.File.Walk(ctx, names)
	if f != nil && len(names) == 0 {
		f = viewRoot{f, r.v}
	}
	return qids, f, err
}

func (r viewRoot) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	if _, _, err := r.v.refresh(ctx); err != nil {
		return nil, err
	}
	return r.File.ReadDir(ctx)
}

// exportServer is #export: a path of a user's namespace, attached only
// by the view of a key it is exported to.
type exportServer struct {
	m  *Manager
	ns *Namespace
}

func (s exportServer) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	key, ok := strings.CutPrefix(s.ns.user, "key:")
	if !ok {
		return nil, fmt.Errorf("%w: #export is for remote views only", plan9.ErrPerm)
	}
	user, p, _ := strings.Cut(aname, "!")
	es, err := s.m.Exports()
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if e.User == user && e.Path == p && (e.To == key || e.To == "*") {
			f, err := s.m.Attach(ctx, user, p, nil)
			if err != nil {
				return nil, err
			}
			if e.RO {
				return readOnly{f}, nil
			}
			return f, nil
		}
	}
	return nil, fmt.Errorf("%w: %s is not exported to key %s", plan9.ErrPerm, p, key)
}

// exportCmd runs "export PATH [ro] [to KEY|*]" for ns's user.
func exportCmd(ctx context.Context, ns *Namespace, args []string) error {
	usage := errors.New("usage: export PATH [ro|rw] to KEY|*")
	if len(args) == 0 {
		return usage
	}
	// Read-only unless rw is said; the recipients are always said.
	e := Export{User: ns.user, Path: path.Clean(args[0]), RO: true}
	if !strings.HasPrefix(e.Path, "/") {
		return fmt.Errorf("%s: path must be absolute", args[0])
	}
	rest := args[1:]
	if len(rest) > 0 && (rest[0] == "ro" || rest[0] == "rw") {
		e.RO, rest = rest[0] == "ro", rest[1:]
	}
	if len(rest) != 2 || rest[0] != "to" || (rest[1] != "*" && len(rest[1]) != 52) {
		return usage
	}
	e.To = rest[1]
	c, err := ns.resolve(ctx, e.Path, true)
	if err != nil {
		return err
	}
	c.clunk()
	return ns.editExports(func(es []Export) ([]Export, error) { return addExport(es, e), nil })
}

// unexportCmd runs "unexport PATH" for ns's user.
func unexportCmd(ns *Namespace, p string) error {
	user := ns.user
	return ns.editExports(func(es []Export) ([]Export, error) { return removeExport(es, user, path.Clean(p)) })
}

// editExports changes the exports: within a batch, in its transaction;
// otherwise at once.
func (ns *Namespace) editExports(f func([]Export) ([]Export, error)) error {
	if tx := ns.exportTx; tx != nil {
		return tx.edit(ns.mgr, f)
	}
	return ns.mgr.editExports(f)
}

// readOnly refuses every change to the files under it.
type readOnly struct{ styx.File }

func (r readOnly) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	q, f, err := r.File.Walk(ctx, names)
	if f != nil {
		f = readOnly{f}
	}
	return q, f, err
}

func (r readOnly) Open(ctx context.Context, mode uint8) (uint32, error) {
	if mode&3 != styx.OREAD && mode&3 != styx.OEXEC || mode&(styx.OTRUNC|styx.ORCLOSE) != 0 {
		return 0, plan9.ErrReadOnly
	}
	return r.File.Open(ctx, mode)
}

func (r readOnly) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	return nil, 0, plan9.ErrReadOnly
}

func (r readOnly) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrReadOnly
}

func (r readOnly) Wstat(ctx context.Context, d styx.Dir) error { return plan9.ErrReadOnly }

func (r readOnly) Remove(ctx context.Context) error { return plan9.ErrReadOnly }
