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
	m.exportMu.Lock()
	defer m.exportMu.Unlock()
	es, err := m.Exports()
	if err != nil {
		return err
	}
	es = slices.DeleteFunc(es, func(o Export) bool { return o.User == e.User && o.Path == e.Path && o.To == e.To })
	if err := m.saveExports(append(es, e)); err != nil {
		return err
	}
	m.exportsChanged()
	return nil
}

// exportsChanged tells the WithExportsChanged function, if any.
func (m *Manager) exportsChanged() {
	if m.onExports != nil {
		m.onExports()
	}
}

// RemoveExport removes user's exports of p.
func (m *Manager) RemoveExport(user, p string) error {
	m.exportMu.Lock()
	defer m.exportMu.Unlock()
	es, err := m.Exports()
	if err != nil {
		return err
	}
	n := len(es)
	es = slices.DeleteFunc(es, func(o Export) bool { return o.User == user && o.Path == p })
	if len(es) == n {
		return fmt.Errorf("%s: not exported", p)
	}
	if err := m.saveExports(es); err != nil {
		return err
	}
	m.exportsChanged()
	return nil
}

// viewUser is the user name of a remote key's view.
func viewUser(key string) string { return "key:" + key }

// isView reports whether user names a remote key's view.
func isView(user string) bool { return strings.HasPrefix(user, "key:") }

// AttachRemote attaches a remote key to the view of what is exported to
// it: each exported path at its own place, read-only where exported so;
// nothing else. A key to which nothing is exported gets "permission
// denied".
func (m *Manager) AttachRemote(ctx context.Context, key, aname string) (styx.File, error) {
	es, err := m.Exports()
	if err != nil {
		return nil, err
	}
	ns, err := newNamespace(ctx, m, viewUser(key))
	if err != nil {
		return nil, err
	}
	n := 0
	for _, e := range es {
		if e.To != key && e.To != "*" {
			continue
		}
		flags := MCREATE // files may be made in a writable export
		if e.RO {
			flags = MREPL
		}
		if err := ns.Mount(ctx, "#export", e.Path, e.User+"!"+e.Path, flags); err != nil {
			m.log.Warn("export not shown", "key", key, "export", e.String(), "err", err)
			continue
		}
		n++
	}
	if n == 0 {
		ns.Close()
		return nil, fmt.Errorf("%w: nothing is exported to key %s", plan9.ErrPerm, key)
	}
	var c *chn
	if aname == "" || aname == "/" {
		c, err = ns.rootChan(ctx)
	} else {
		c, err = ns.resolve(ctx, aname, true)
	}
	if err != nil {
		ns.Close()
		return nil, err
	}
	return newFile(ns, c, false), nil
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
	return ns.mgr.AddExport(e)
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
