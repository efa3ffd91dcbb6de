package ns_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"cheshire/ns"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

// watched is a tmp tree that publishes its changes to a hub, as the
// module gate does for every provider: a Watcher device for tests.
type watched struct {
	a   styx.Attacher
	hub *ns.Hub
}

func (w *watched) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	f, err := w.a.Attach(ctx, uname, aname, auth)
	if err != nil {
		return nil, err
	}
	return &wfile{File: f, hub: w.hub, path: "/"}, nil
}

type wfile struct {
	styx.File
	hub  *ns.Hub
	path string
}

func (f *wfile) Watch(ctx context.Context, p string, recursive bool, emit func(ns.Event)) (func(), error) {
	return f.hub.Watch(path.Join(f.path, p), recursive, emit), nil
}

func (f *wfile) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	q, nf, err := f.File.Walk(ctx, names)
	if nf == nil {
		return q, nil, err
	}
	return q, &wfile{File: nf, hub: f.hub, path: path.Join(append([]string{f.path}, names...)...)}, err
}

func (f *wfile) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	nf, iou, err := f.File.Create(ctx, name, perm, mode)
	if err != nil {
		return nil, 0, err
	}
	p := path.Join(f.path, name)
	f.hub.Publish(ns.Event{Op: "create", Path: p})
	return &wfile{File: nf, hub: f.hub, path: p}, iou, nil
}

func (f *wfile) Write(ctx context.Context, b []byte, off int64) (int, error) {
	n, err := f.File.Write(ctx, b, off)
	if err == nil {
		f.hub.Publish(ns.Event{Op: "write", Path: f.path, Vers: f.File.Qid().Vers})
	}
	return n, err
}

func (f *wfile) Remove(ctx context.Context) error {
	if err := f.File.Remove(ctx); err != nil {
		return err
	}
	f.hub.Publish(ns.Event{Op: "remove", Path: f.path})
	return nil
}

func (f *wfile) Wstat(ctx context.Context, d styx.Dir) error {
	if err := f.File.Wstat(ctx, d); err != nil {
		return err
	}
	if d.Name != "" && d.Name != path.Base(f.path) {
		old := f.path
		f.path = path.Join(path.Dir(f.path), d.Name)
		f.hub.Publish(ns.Event{Op: "rename", Path: old, New: f.path})
	}
	return nil
}

// watchNS serves a manager whose namespace mounts a watched tmp tree on
// /tmp (and a second one after it, a union) and #ns on /ns, with opts.
func watchNS(t *testing.T, opts ...ns.Option) *styx.Fid {
	t.Helper()
	opts = append([]ns.Option{ns.WithDefaults(cmds(t, "mount -c #t /tmp\nmount -a #u /tmp\nmount -c #u /u\nmount #ns /ns\nmount #plain /plain\n"))}, opts...)
	m := ns.NewManager(opts...)
	m.Register("#t", &watched{a: tmp.New("glenda"), hub: new(ns.Hub)})
	m.Register("#u", &watched{a: tmp.New("glenda"), hub: new(ns.Hub)})
	m.Register("#plain", tmp.New("glenda"))
	m.RegisterPerNS("#ns", func(n *ns.Namespace) styx.Attacher { return ns.Files(n) })
	t.Cleanup(m.Close)
	return setup(t, m, "glenda")
}

// openWatch opens /ns/watch and writes line to it.
func openWatch(t *testing.T, root *styx.Fid, line string) (*styx.Fid, error) {
	t.Helper()
	ctx := context.Background()
	f, err := root.WalkPath(ctx, "/ns/watch")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(ctx, styx.ORDWR); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteOnce(ctx, []byte(line), 0); err != nil {
		f.Clunk(ctx)
		return nil, err
	}
	t.Cleanup(func() { f.Clunk(context.Background()) })
	return f, nil
}

// lines reads events from w until want lines have come.
func lines(t *testing.T, w *styx.Fid, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	buf := make([]byte, 8192)
	for len(got) < want {
		n, err := w.ReadOnce(ctx, buf, 0)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		text := string(buf[:n])
		if !strings.HasSuffix(text, "\n") {
			t.Fatalf("read gave a part of a line: %q", text)
		}
		got = append(got, strings.Split(strings.TrimSuffix(text, "\n"), "\n")...)
	}
	return got
}

// touch creates dir/name, writing nothing.
func touch(t *testing.T, root *styx.Fid, dir, name string) {
	t.Helper()
	ctx := context.Background()
	d, err := root.WalkPath(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Clunk(ctx)
	if err := d.Create(ctx, name, 0644, styx.OREAD); err != nil {
		t.Fatalf("create %s/%s: %v", dir, name, err)
	}
}

// TestWatchEvents: create, write, rename (wstat of the name) and remove
// under /tmp come as lines with the namespace's paths, from either
// member of the union; a watch that is not recursive does not see
// below its entries, one that is does.
func TestWatchEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := watchNS(t)
	w, err := openWatch(t, root, "watch /tmp\n")
	if err != nil {
		t.Fatal(err)
	}
	rw, err := openWatch(t, root, "watch /tmp recursive")
	if err != nil {
		t.Fatal(err)
	}
	mkfile(t, root, "/tmp", "a", "hello")
	f, err := root.WalkPath(ctx, "/tmp/a")
	if err != nil {
		t.Fatal(err)
	}
	d := styx.NullDir()
	d.Name = "b"
	if err := f.Wstat(ctx, d); err != nil {
		t.Fatal(err)
	}
	f.Clunk(ctx)
	dir, _ := root.WalkPath(ctx, "/tmp")
	if err := dir.Create(ctx, "sub", styx.DMDIR|0755, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	dir.Clunk(ctx)
	mkfile(t, root, "/tmp/sub", "deep", "x")
	f, _ = root.WalkPath(ctx, "/tmp/b")
	if err := f.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"create /tmp/a", "write /tmp/a 1", "rename /tmp/a /tmp/b", "create /tmp/sub", "remove /tmp/b"}
	if got := lines(t, w, len(want)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("watch /tmp:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantR := []string{"create /tmp/a", "write /tmp/a 1", "rename /tmp/a /tmp/b", "create /tmp/sub", "create /tmp/sub/deep", "write /tmp/sub/deep 1", "remove /tmp/b"}
	if got := lines(t, rw, len(wantR)); strings.Join(got, "\n") != strings.Join(wantR, "\n") {
		t.Errorf("watch /tmp recursive:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantR, "\n"))
	}
}

// TestWatchMounts: a change in the union's second member, made through
// another path it is mounted at (/u), is told with the path watched
// (/tmp); a recursive watch of / sees into what is mounted below it.
func TestWatchMounts(t *testing.T) {
	t.Parallel()
	root := watchNS(t)
	w, err := openWatch(t, root, "watch /tmp")
	if err != nil {
		t.Fatal(err)
	}
	all, err := openWatch(t, root, "watch / recursive")
	if err != nil {
		t.Fatal(err)
	}
	touch(t, root, "/u", "z")
	if got := lines(t, w, 1); got[0] != "create /tmp/z" {
		t.Errorf("watch /tmp: %q, want create /tmp/z", got)
	}
	got := lines(t, all, 2)
	if strings.Join(got, ";") != "create /tmp/z;create /u/z" && strings.Join(got, ";") != "create /u/z;create /tmp/z" {
		t.Errorf("watch / recursive: %q, want the create at /tmp/z and /u/z", got)
	}
}

// TestWatchBadInput: a missing path, a path whose device tells nothing,
// a bad option and a second watch on one open are errors at the write,
// in words that map to an errno other than EIO.
func TestWatchBadInput(t *testing.T) {
	t.Parallel()
	root := watchNS(t)
	for line, want := range map[string]string{
		"watch /tmp/nonexistent":   "file not found",
		"watch tmp":                "must be absolute",
		"watch /tmp sideways":      "bad watch option",
		"watch":                    "bad # args",
		"unwatch /tmp":             "unknown control message",
		"watch /plain":             "not supported",
		"watch /tmp recursive x y": "bad # args",
	} {
		if _, err := openWatch(t, root, line); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", line, err, want)
		}
	}
	w, err := openWatch(t, root, "watch /tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteOnce(context.Background(), []byte("watch /tmp"), 0); err == nil || !strings.Contains(err.Error(), "already watching") {
		t.Errorf("second watch on one open: %v", err)
	}
}

// TestWatchCap: a user holds at most the cap of watches; a clunk gives
// one back.
func TestWatchCap(t *testing.T) {
	t.Parallel()
	root := watchNS(t, ns.WithMaxWatches(2))
	a, err := openWatch(t, root, "watch /tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openWatch(t, root, "watch /tmp"); err != nil {
		t.Fatal(err)
	}
	if _, err := openWatch(t, root, "watch /tmp"); err == nil || !strings.Contains(err.Error(), "too many watches: at most 2 per user") {
		t.Fatalf("third watch: %v", err)
	}
	a.Clunk(context.Background())
	if _, err := openWatch(t, root, "watch /tmp"); err != nil {
		t.Fatalf("after a clunk: %v", err)
	}
}

// TestWatchOverflow: a reader that falls behind gets the queue's
// events, then "overflow N" for those dropped, then the events after.
func TestWatchOverflow(t *testing.T) {
	t.Parallel()
	root := watchNS(t)
	w, err := openWatch(t, root, "watch /tmp")
	if err != nil {
		t.Fatal(err)
	}
	const extra = 10
	for i := range ns.WatchQueue + extra {
		touch(t, root, "/tmp", fmt.Sprint("f", i))
	}
	got := lines(t, w, ns.WatchQueue+1)
	if got[0] != "create /tmp/f0" || got[ns.WatchQueue-1] != fmt.Sprint("create /tmp/f", ns.WatchQueue-1) {
		t.Errorf("first and last kept: %q, %q", got[0], got[ns.WatchQueue-1])
	}
	if last := got[len(got)-1]; last != fmt.Sprint("overflow ", extra) {
		t.Errorf("after the queue: %q, want overflow %d", last, extra)
	}
	touch(t, root, "/tmp", "after")
	if got := lines(t, w, 1); got[0] != "create /tmp/after" {
		t.Errorf("after the overflow: %q", got)
	}
}

// TestWatchFlush: a read waiting for events ends when its request is
// flushed, and the watch goes on.
func TestWatchFlush(t *testing.T) {
	t.Parallel()
	root := watchNS(t)
	w, err := openWatch(t, root, "watch /tmp")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := w.ReadOnce(ctx, make([]byte, 100), 0)
		done <- err
	}()
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a flushed read returned no error")
	}
	touch(t, root, "/tmp", "x")
	if got := lines(t, w, 1); got[0] != "create /tmp/x" {
		t.Errorf("after a flush: %q", got)
	}
}

// TestWatchRead: a read shorter than a line gets the line in pieces.
func TestWatchRead(t *testing.T) {
	t.Parallel()
	root := watchNS(t)
	w, err := openWatch(t, root, "watch /tmp")
	if err != nil {
		t.Fatal(err)
	}
	touch(t, root, "/tmp", "long name")
	ctx := context.Background()
	var got string
	buf := make([]byte, 5)
	for !strings.HasSuffix(got, "\n") {
		n, err := w.ReadOnce(ctx, buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		got += string(buf[:n])
	}
	if got != "create '/tmp/long name'\n" {
		t.Errorf("read in pieces: %q", got)
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{"create /a", "write /a 3", "rename /a /b", "overflow 7", "lost /n/b", "wstat '/a b'", "write /a x", "rename /a", "", "'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ns.ParseEvent(line)
		if err != nil {
			return
		}
		again, err := ns.ParseEvent(e.String())
		if err != nil || again != e {
			t.Fatalf("%q parsed as %+v, whose line %q gives %+v, %v", line, e, e.String(), again, err)
		}
	})
}

// TestWatchService: a remote key that is no user attaches "#watch" and
// watches a path of its view of the exports (here read-only): a file
// made in the exporting user's /tmp is told with the view's path; a
// path not exported to it is not found.
func TestWatchService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := ns.NewManager(ns.WithDir(t.TempDir()), ns.WithWatchService(),
		ns.WithDefaults(cmds(t, "mount -c #t /tmp\nmount #ns /ns\n")))
	m.Register("#t", &watched{a: tmp.New("glenda"), hub: new(ns.Hub)})
	m.RegisterPerNS("#ns", func(n *ns.Namespace) styx.Attacher { return ns.Files(n) })
	t.Cleanup(m.Close)
	root := setup(t, m, "glenda")
	ctl, err := root.WalkPath(ctx, "/ns/ctl")
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Open(ctx, styx.OWRITE); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.WriteOnce(ctx, []byte("export /tmp ro to *\n"), 0); err != nil {
		t.Fatal(err)
	}
	ctl.Clunk(ctx)

	pub, _, _ := ed25519.GenerateKey(nil)
	svc, err := m.AttachKey(ctx, pub, "#watch")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Clunk()
	open := func(line string) (styx.File, error) {
		_, w, err := svc.Walk(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Open(ctx, styx.ORDWR); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(ctx, []byte(line), 0); err != nil {
			w.Clunk()
			return nil, err
		}
		return w, nil
	}
	if _, err := open("watch /ns"); err == nil || !strings.Contains(err.Error(), "file not found") {
		t.Errorf("watch of a path not exported: %v", err)
	}
	w, err := open("watch /tmp")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Clunk()
	touch(t, root, "/tmp", "x")
	buf := make([]byte, 100)
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	n, err := w.Read(rctx, buf, 0)
	if err != nil || string(buf[:n]) != "create /tmp/x\n" {
		t.Errorf("the view's event: %q, %v", buf[:n], err)
	}
}
