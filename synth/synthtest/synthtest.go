// Package synthtest checks that a served file tree behaves as 9P clients
// expect. TestServer serves a tree through a real styx server and client
// over 127.0.0.1 and walks all of it, reporting every fault it finds.
package synthtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"testing"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// Limits of a walk: deeper directories and nodes beyond the count are not
// visited (and the test says so).
const (
	maxDepth = 32
	maxNodes = 10000
)

// missingName is a name that no directory is expected to have.
const missingName = "synthtest-no-such-file"

// tb is the part of testing.T that the walker uses.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Context() context.Context
}

// TestServer serves a on a 127.0.0.1 TCP listener through a styx.Server,
// attaches as uname with a styx.Client and walks the whole tree. It
// checks that:
//
//   - every directory reads the same in one-entry chunks as in large ones,
//     each read holding whole entries and the end read giving 0 bytes;
//   - directory entries have valid, distinct names;
//   - the stat of every child equals its directory entry, and its qid the
//     qid the walk gave, except that the Length, Mtime and qid version of
//     files, whose content may be generated, and Atime are not compared;
//   - qid types agree with modes, and qid paths are distinct;
//   - ".." returns to the parent (the root's to the root);
//   - walking a name that is not there fails.
//
// Directories that uname may not read or search are skipped and logged.
// Faults are reported with t.Errorf, all of them, and the test goes on.
// TestServer does not open files, so clone files make no sessions.
func TestServer(t *testing.T, a styx.Attacher, uname string) {
	t.Helper()
	testServer(t, a, uname)
}

func testServer(t tb, a styx.Attacher, uname string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("synthtest: listen: %v", err)
	}
	srv := &styx.Server{Attacher: a}
	go srv.Serve(ctx, ln)
	t.Cleanup(func() { srv.Close() })
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("synthtest: dial: %v", err)
	}
	c, err := styx.NewClient(ctx, nc)
	if err != nil {
		nc.Close()
		t.Fatalf("synthtest: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	root, err := c.Attach(ctx, nil, uname, "")
	if err != nil {
		t.Fatalf("synthtest: attach as %s: %v", uname, err)
	}
	testRoot(t, ctx, root, false)
}

// TestRoot makes TestServer's checks on the tree below root, a fid of
// any server (a whole namespace of a running node, say). It clunks a
// clone of root, not root. With mountPoints, a directory whose walk
// gives another directory qid than its entry is taken for a mount point,
// as in Plan 9 and Linux: its entry describes the directory mounted on,
// and its stat, which must agree with the walk, the root mounted there.
func TestRoot(t *testing.T, root *styx.Fid, mountPoints bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, f, err := root.Walk(ctx)
	if err != nil {
		t.Fatalf("synthtest: clone of the root: %v", err)
	}
	testRoot(t, ctx, f, mountPoints)
}

func testRoot(t tb, ctx context.Context, root *styx.Fid, mountPoints bool) {
	t.Helper()
	w := &walker{t: t, ctx: ctx, seen: make(map[uint64]string), mountPoints: mountPoints}
	w.dir(root, "/", root.Qid(), 0)
}

// walker walks a tree and reports its faults.
type walker struct {
	t     tb
	ctx   context.Context
	seen  map[uint64]string // qid path to the first path that had it
	nodes int

	mountPoints bool // entries may be mount points (see TestRoot)
}

func (w *walker) errorf(format string, args ...any) {
	w.t.Helper()
	w.t.Errorf("synthtest: "+format, args...)
}

// denied reports whether err is a refusal for want of permission.
func denied(err error) bool { return errors.Is(err, plan9.ErrPerm) }

// note records that p has qid q; it reports a qid path seen before and
// returns false.
func (w *walker) note(p string, q styx.Qid) bool {
	w.t.Helper()
	if prev, ok := w.seen[q.Path]; ok {
		w.errorf("%s: qid path %#x is also that of %s", p, q.Path, prev)
		return false
	}
	w.seen[q.Path] = p
	w.nodes++
	return true
}

// dir checks the directory f at p, whose parent has qid parent, and
// everything under it. It clunks f.
func (w *walker) dir(f *styx.Fid, p string, parent styx.Qid, depth int) {
	w.t.Helper()
	ctx := w.ctx
	defer f.Clunk(ctx)
	st, err := f.Stat(ctx)
	if err != nil {
		w.errorf("%s: stat: %v", p, err)
		return
	}
	if st.Qid.Path != f.Qid().Path || st.Qid.Type != f.Qid().Type {
		w.errorf("%s: stat gives qid %v, the walk gave %v", p, st.Qid, f.Qid())
	}
	w.checkMode(p, st)
	if depth == 0 {
		w.note(p, st.Qid)
	}

	if _, up, err := f.Walk(ctx, ".."); err != nil {
		if denied(err) {
			w.t.Logf("synthtest: %s: walk ..: %v", p, err)
		} else {
			w.errorf("%s: walk ..: %v", p, err)
		}
	} else {
		if up.Qid().Path != parent.Path {
			w.errorf("%s: .. has qid %v, want the parent's %v", p, up.Qid(), parent)
		}
		up.Clunk(ctx)
	}

	ents, err := w.readDir(f, p, nil)
	if err != nil {
		if denied(err) {
			w.t.Logf("synthtest: %s: skipped: %v", p, err)
		} else {
			w.errorf("%s: read: %v", p, err)
		}
		return
	}
	w.checkNames(p, ents)
	sizes := make([]int, len(ents))
	for i := range ents {
		sizes[i] = ents[i].Size()
	}
	ones, err := w.readDir(f, p, sizes)
	switch {
	case err != nil:
		w.errorf("%s: read in one-entry chunks: %v", p, err)
	case len(ones) != len(ents):
		w.errorf("%s: %d entries in one-entry chunks, %d in large ones", p, len(ones), len(ents))
	default:
		for i := range ents {
			if d := diffEntry(ents[i], ones[i]); d != "" {
				w.errorf("%s: entry %d differs between one-entry and large reads: %s", p, i, d)
			}
		}
	}

	if _, nf, err := f.Walk(ctx, missingName); err == nil {
		w.errorf("%s: walk to %s succeeded", p, missingName)
		nf.Clunk(ctx)
	}

	for _, e := range ents {
		if w.nodes >= maxNodes {
			w.t.Logf("synthtest: %s: stopped after %d nodes", p, w.nodes)
			return
		}
		w.child(f, path.Join(p, e.Name), e, st.Qid, depth)
	}
}

// child checks the entry e of the directory f (with qid dq) at p.
func (w *walker) child(f *styx.Fid, p string, e styx.Dir, dq styx.Qid, depth int) {
	w.t.Helper()
	ctx := w.ctx
	if !validName(e.Name) {
		return
	}
	qids, cf, err := f.Walk(ctx, e.Name)
	if err != nil {
		if denied(err) {
			w.t.Logf("synthtest: %s: walk: %v", p, err)
		} else {
			w.errorf("%s: walk: %v", p, err)
		}
		return
	}
	mounted := false
	if q := qids[0]; q.Path != e.Qid.Path || q.Type != e.Qid.Type {
		if w.mountPoints && q.Type&styx.QTDIR != 0 && e.Qid.Type&styx.QTDIR != 0 {
			// A mount point: its entry is the directory mounted on,
			// the walk gives the root mounted there.
			mounted = true
			e.Qid = q
		} else {
			w.errorf("%s: walk gives qid %v, the directory entry %v", p, q, e.Qid)
		}
	}
	fresh := w.note(p, e.Qid)
	cs, err := cf.Stat(ctx)
	switch {
	case err != nil:
		w.errorf("%s: stat: %v", p, err)
	case mounted:
		if cs.Qid.Path != e.Qid.Path || cs.Qid.Type != e.Qid.Type {
			w.errorf("%s: stat gives qid %v, the walk %v", p, cs.Qid, e.Qid)
		}
		e = cs
	default:
		if d := diffEntry(e, cs); d != "" {
			w.errorf("%s: stat differs from the directory entry: %s", p, d)
		}
	}
	w.checkMode(p, e)
	if e.Mode&styx.DMDIR == 0 || !fresh {
		cf.Clunk(ctx)
		return
	}
	if depth+1 >= maxDepth {
		w.t.Logf("synthtest: %s: not visited, deeper than %d", p, maxDepth)
		cf.Clunk(ctx)
		return
	}
	w.dir(cf, p, dq, depth+1)
}

// readDir opens a clone of the directory f and reads it: in reads of
// counts[i] bytes, each of which must give exactly one entry, if counts is
// not nil, else in reads of the iounit; either way up to a read of 0 bytes.
func (w *walker) readDir(f *styx.Fid, p string, counts []int) ([]styx.Dir, error) {
	w.t.Helper()
	ctx := w.ctx
	_, df, err := f.Walk(ctx)
	if err != nil {
		return nil, err
	}
	defer df.Clunk(ctx)
	if err := df.Open(ctx, styx.OREAD); err != nil {
		return nil, err
	}
	buf := make([]byte, df.Iounit())
	var all []styx.Dir
	var off int64
	for i := 0; ; i++ {
		count := len(buf)
		if counts != nil && i < len(counts) {
			count = counts[i]
		}
		n, err := df.ReadOnce(ctx, buf[:count], off)
		if err != nil {
			return all, fmt.Errorf("read at offset %d: %w", off, err)
		}
		if n == 0 {
			if counts != nil && i < len(counts) {
				return all, fmt.Errorf("end of directory after %d entries, %d expected", i, len(counts))
			}
			return all, nil
		}
		ds, err := styx.UnmarshalDirs(buf[:n])
		if err != nil {
			return all, fmt.Errorf("read at offset %d: bad entries: %w", off, err)
		}
		if counts != nil && len(ds) != 1 {
			return all, fmt.Errorf("read of %d bytes at offset %d gave %d entries, want 1", count, off, len(ds))
		}
		all = append(all, ds...)
		off += int64(n)
	}
}

// checkMode checks that the qid type of d agrees with its mode.
func (w *walker) checkMode(p string, d styx.Dir) {
	w.t.Helper()
	for _, b := range []struct {
		mode uint32
		qt   uint8
		name string
	}{{styx.DMDIR, styx.QTDIR, "DMDIR"}, {styx.DMAPPEND, styx.QTAPPEND, "DMAPPEND"}, {styx.DMEXCL, styx.QTEXCL, "DMEXCL"}, {styx.DMAUTH, styx.QTAUTH, "DMAUTH"}} {
		if (d.Mode&b.mode != 0) != (d.Qid.Type&b.qt != 0) {
			w.errorf("%s: mode %s and qid type %#x disagree on %s", p, plan9.PermString(d.Mode), d.Qid.Type, b.name)
		}
	}
}

// checkNames checks that the entries of the directory p have valid,
// distinct names.
func (w *walker) checkNames(p string, ents []styx.Dir) {
	w.t.Helper()
	names := make(map[string]bool, len(ents))
	for _, e := range ents {
		if !validName(e.Name) {
			w.errorf("%s: entry with bad name %q", p, e.Name)
		}
		if names[e.Name] {
			w.errorf("%s: two entries named %q", p, e.Name)
		}
		names[e.Name] = true
	}
}

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsRune(name, '/')
}

// diffEntry describes how b differs from a, or is "" if they agree. Atime
// is not compared, nor the Length, Mtime and qid version of files.
func diffEntry(a, b styx.Dir) string {
	var d []string
	diff := func(field string, x, y any) {
		if x != y {
			d = append(d, fmt.Sprintf("%s %v vs %v", field, x, y))
		}
	}
	diff("type", a.Type, b.Type)
	diff("dev", a.Dev, b.Dev)
	diff("qid.type", a.Qid.Type, b.Qid.Type)
	diff("qid.path", a.Qid.Path, b.Qid.Path)
	diff("mode", fmt.Sprintf("%s (%#o)", plan9.PermString(a.Mode), a.Mode), fmt.Sprintf("%s (%#o)", plan9.PermString(b.Mode), b.Mode))
	diff("name", a.Name, b.Name)
	diff("uid", a.Uid, b.Uid)
	diff("gid", a.Gid, b.Gid)
	diff("muid", a.Muid, b.Muid)
	if a.Mode&styx.DMDIR != 0 {
		diff("qid.vers", a.Qid.Vers, b.Qid.Vers)
		diff("mtime", a.Mtime, b.Mtime)
		diff("length", a.Length, b.Length)
	}
	return strings.Join(d, ", ")
}
