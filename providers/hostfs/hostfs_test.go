package hostfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cheshire/plan9"
	"cheshire/providers/hostfs"
	"cheshire/styx"
)

// serve exports dir on a loopback styx server and returns the attached
// root fid.
func serve(t testing.TB, dir string, ro bool, opts ...hostfs.Option) *styx.Fid {
	t.Helper()
	h, err := hostfs.New(dir, ro, opts...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &styx.Server{Attacher: h}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); s.Close(); <-done; h.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	c, err := styx.Dial(ctx, "tcp!127.0.0.1!"+port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	root, err := c.Attach(ctx, nil, "glenda", "")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func walk(t testing.TB, root *styx.Fid, path string) *styx.Fid {
	t.Helper()
	f, err := root.WalkPath(context.Background(), path)
	if err != nil {
		t.Fatalf("walk %s: %v", path, err)
	}
	return f
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %q", what, err, want)
	}
}

func readFile(t testing.TB, root *styx.Fid, path string) string {
	t.Helper()
	ctx := context.Background()
	f := walk(t, root, path)
	defer f.Clunk(ctx)
	if err := f.Open(ctx, styx.OREAD); err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	b, err := f.ReadAll(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func TestNewNotDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, nil, 0644)
	if _, err := hostfs.New(p, false); err == nil {
		t.Error("New on a plain file succeeded")
	}
	if _, err := hostfs.New(p+"nope", false); err == nil {
		t.Error("New on a missing directory succeeded")
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.Chmod(dir, 0755) // new files inherit from it, whatever the umask
	root := serve(t, dir, false)

	// mkdir, create, write, read.
	_, d, _ := root.Walk(ctx)
	if err := d.Create(ctx, "sub", styx.DMDIR|0755, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	if q := d.Qid(); q.Type != styx.QTDIR {
		t.Errorf("created directory qid %v", q)
	}
	d.Clunk(ctx)
	if fi, err := os.Stat(filepath.Join(dir, "sub")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0755 {
		t.Fatalf("host directory: %v %v", fi, err)
	}
	f := walk(t, root, "sub")
	if err := f.Create(ctx, "a", 0640, styx.ORDWR); err != nil {
		t.Fatal(err)
	}
	if n, err := f.WriteAt(ctx, []byte("hello, world"), 0); err != nil || n != 12 {
		t.Fatalf("write: %d %v", n, err)
	}
	st, err := f.Stat(ctx)
	if err != nil || st.Name != "a" || st.Length != 12 || st.Mode != 0640 || st.Uid == "" || st.Qid.Type != styx.QTFILE {
		t.Fatalf("stat %v %v", st, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "sub", "a")); fi == nil || fi.Mode().Perm() != 0640 {
		t.Errorf("host mode %v", fi)
	}
	f.Clunk(ctx)
	if got := readFile(t, root, "sub/a"); got != "hello, world" {
		t.Errorf("read %q", got)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "sub", "a"))
	if string(b) != "hello, world" {
		t.Errorf("host has %q", b)
	}

	// Exclusive create.
	f = walk(t, root, "sub")
	wantErr(t, "create existing", f.Create(ctx, "a", 0644, styx.OWRITE), plan9.ErrExist)
	f.Clunk(ctx)

	// Permissions of new files: Plan 9's rule, not the umask.
	os.Mkdir(filepath.Join(dir, "perm"), 0777)
	os.Chmod(filepath.Join(dir, "perm"), 0775)
	for _, c := range []struct {
		name      string
		perm, got uint32
	}{{"f", 0666, 0664}, {"d", styx.DMDIR | 0777, 0775}, {"x", 0777, 0775}} {
		f = walk(t, root, "perm")
		if err := f.Create(ctx, c.name, c.perm, styx.OREAD); err != nil {
			t.Fatal(err)
		}
		f.Clunk(ctx)
		if fi, err := os.Stat(filepath.Join(dir, "perm", c.name)); err != nil || uint32(fi.Mode().Perm()) != c.got {
			t.Errorf("create %s %#o: host mode %v %v, want %#o", c.name, c.perm, fi.Mode(), err, c.got)
		}
	}
	os.RemoveAll(filepath.Join(dir, "perm"))

	// The version changes with the contents.
	f = walk(t, root, "sub/a")
	st1, _ := f.Stat(ctx)
	if err := f.Open(ctx, styx.OWRITE); err != nil {
		t.Fatal(err)
	}
	f.WriteAt(ctx, []byte("HELLO, WORLD!"), 0)
	st2, _ := f.Stat(ctx)
	if st1.Qid.Path != st2.Qid.Path || st1.Qid.Vers == st2.Qid.Vers || st2.Length != 13 {
		t.Errorf("qid after write %v, before %v", st2.Qid, st1.Qid)
	}
	f.Clunk(ctx)

	// Rename (with the muid Linux sends), truncate, chmod, mtime.
	f = walk(t, root, "sub/a")
	nd := styx.NullDir()
	nd.Name = "b"
	nd.Muid = "nobody"
	if err := f.Wstat(ctx, nd); err != nil {
		t.Fatalf("rename: %v", err)
	}
	nd = styx.NullDir()
	nd.Length = 5
	nd.Mode = 0600
	nd.Mtime = 1000000000
	if err := f.Wstat(ctx, nd); err != nil {
		t.Fatalf("truncate, chmod, mtime: %v", err)
	}
	st, _ = f.Stat(ctx)
	if st.Name != "b" || st.Length != 5 || st.Mode != 0600 || st.Mtime != 1000000000 {
		t.Errorf("after wstat: %v", st)
	}
	fi, err := os.Stat(filepath.Join(dir, "sub", "b"))
	if err != nil || fi.Size() != 5 || fi.Mode().Perm() != 0600 || fi.ModTime().Unix() != 1000000000 {
		t.Errorf("host after wstat: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub", "a")); !os.IsNotExist(err) {
		t.Errorf("old name still there: %v", err)
	}
	nd = styx.NullDir()
	nd.Mode = styx.DMDIR | 0700
	wantErr(t, "wstat DMDIR", f.Wstat(ctx, nd), plan9.ErrConvert)
	nd = styx.NullDir()
	nd.Uid = "someoneelse"
	wantErr(t, "wstat uid", f.Wstat(ctx, nd), plan9.ErrPerm)
	nd.Uid = st.Uid // unchanged: fine
	nd.Gid = st.Gid
	if err := f.Wstat(ctx, nd); err != nil {
		t.Errorf("wstat unchanged uid: %v", err)
	}
	f.Clunk(ctx)
	if got := readFile(t, root, "sub/b"); got != "HELLO" {
		t.Errorf("after truncate: %q", got)
	}

	// Rename onto an existing name fails.
	os.WriteFile(filepath.Join(dir, "sub", "c"), []byte("c"), 0644)
	f = walk(t, root, "sub/b")
	nd = styx.NullDir()
	nd.Name = "c"
	wantErr(t, "rename onto existing", f.Wstat(ctx, nd), plan9.ErrExist)
	f.Clunk(ctx)

	// OTRUNC.
	f = walk(t, root, "sub/c")
	if err := f.Open(ctx, styx.OWRITE|styx.OTRUNC); err != nil {
		t.Fatal(err)
	}
	f.Clunk(ctx)
	if fi, _ := os.Stat(filepath.Join(dir, "sub", "c")); fi == nil || fi.Size() != 0 {
		t.Errorf("OTRUNC left %v", fi)
	}

	// ORCLOSE.
	f = walk(t, root, "sub")
	if err := f.Create(ctx, "tmp", 0644, styx.OWRITE|styx.ORCLOSE); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub", "tmp")); err != nil {
		t.Fatal(err)
	}
	f.Clunk(ctx)
	if _, err := os.Stat(filepath.Join(dir, "sub", "tmp")); !os.IsNotExist(err) {
		t.Errorf("ORCLOSE file still there: %v", err)
	}

	// Plan 9 permission check, even when the node runs as root.
	os.WriteFile(filepath.Join(dir, "ro"), []byte("x"), 0444)
	f = walk(t, root, "ro")
	wantErr(t, "open 0444 for writing", f.Open(ctx, styx.OWRITE), plan9.ErrPerm)
	f.Clunk(ctx)

	// Remove: non-empty directory, then file and directory.
	f = walk(t, root, "sub")
	wantErr(t, "remove non-empty", f.Remove(ctx), plan9.ErrNotEmpty)
	for _, p := range []string{"sub/b", "sub/c", "sub"} {
		if err := walk(t, root, p).Remove(ctx); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Errorf("sub still there: %v", err)
	}
	_, _, err = root.Walk(ctx, "sub")
	wantErr(t, "walk removed", err, plan9.ErrNotFound)
	_, root2, _ := root.Walk(ctx)
	wantErr(t, "remove root", root2.Remove(ctx), plan9.ErrPerm)
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0644)
	os.Mkdir(filepath.Join(dir, "d"), 0755)
	root := serve(t, dir, true)

	isROFS := func(what string, err error) {
		t.Helper()
		if err == nil || plan9.Errno(err.Error()) != syscall.EROFS {
			t.Errorf("%s: error %v, want EROFS", what, err)
		}
	}
	for _, mode := range []uint8{styx.OWRITE, styx.ORDWR, styx.OREAD | styx.OTRUNC, styx.OREAD | styx.ORCLOSE} {
		f := walk(t, root, "f")
		isROFS(fmt.Sprintf("open mode %#x", mode), f.Open(ctx, mode))
		f.Clunk(ctx)
	}
	d := walk(t, root, "d")
	isROFS("create", d.Create(ctx, "new", 0644, styx.OWRITE))
	d.Clunk(ctx)
	isROFS("remove", walk(t, root, "f").Remove(ctx))
	f := walk(t, root, "f")
	for _, set := range []func(*styx.Dir){
		func(d *styx.Dir) { d.Name = "g" },
		func(d *styx.Dir) { d.Length = 0 },
		func(d *styx.Dir) { d.Mode = 0604 },
		func(d *styx.Dir) { d.Mtime = 12345 },
	} {
		nd := styx.NullDir()
		set(&nd)
		isROFS("wstat "+nd.String(), f.Wstat(ctx, nd))
	}
	if err := f.Wstat(ctx, styx.NullDir()); err != nil {
		t.Errorf("no-op wstat: %v", err)
	}
	f.Clunk(ctx)
	if got := readFile(t, root, "f"); got != "data" {
		t.Errorf("read %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "data" {
		t.Errorf("host file changed: %q", b)
	}
}

func TestDotDotAtRoot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "inside"), []byte("in"), 0644)
	os.Mkdir(filepath.Join(dir, "sub"), 0755)
	root := serve(t, dir, false)
	st, _ := root.Stat(ctx)
	qids, f, err := root.Walk(ctx, "..", "..", "sub", "..", "..")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []styx.Qid{qids[0], qids[1], qids[4]} {
		if q.Path != st.Qid.Path {
			t.Errorf("walk .. from the root: qid %v, root %v", q, st.Qid)
		}
	}
	fst, _ := f.Stat(ctx)
	if fst.Qid.Path != st.Qid.Path || fst.Name != "/" {
		t.Errorf("stat after .. walk: %v", fst)
	}
	f.Clunk(ctx)
	if got := readFile(t, root, "../../../inside"); got != "in" {
		t.Errorf("read ../../../inside: %q", got)
	}
}

func TestSymlinks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub", "deep"), 0755)
	os.WriteFile(filepath.Join(dir, "sub", "deep", "f"), []byte("deep"), 0644)
	for link, target := range map[string]string{
		"etc":     "/etc",                 // absolute, outside
		"up":      "../../../../../../..", // relative, outside
		"upetc":   "sub/../../etc",
		"absin":   filepath.Join(dir, "sub"), // absolute, even though inside
		"dangle":  "nowhere",
		"insub":   "sub/deep",
		"insidef": "sub/deep/f",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	root := serve(t, dir, false)
	for _, p := range []string{"etc", "etc/passwd", "up", "up/etc/passwd", "upetc/passwd", "absin/deep/f"} {
		_, _, err := root.Walk(ctx, styx.SplitPath(p)...)
		wantErr(t, "walk "+p, err, plan9.ErrPerm)
	}
	_, _, err := root.Walk(ctx, "dangle")
	wantErr(t, "walk dangle", err, plan9.ErrNotFound)

	// Links inside work, including a walk through one and back with "..".
	if got := readFile(t, root, "insidef"); got != "deep" {
		t.Errorf("read insidef: %q", got)
	}
	if got := readFile(t, root, "insub/f"); got != "deep" {
		t.Errorf("read insub/f: %q", got)
	}
	if got := readFile(t, root, "insub/../insidef"); got != "deep" {
		t.Errorf("read insub/../insidef: %q", got)
	}

	// A listing shows the links that can be followed, as what they name.
	d := walk(t, root, ".")
	if err := d.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	ds, err := d.ReadDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ds {
		names = append(names, e.Name)
		if e.Name == "insub" && e.Qid.Type != styx.QTDIR {
			t.Errorf("insub listed as %v", e)
		}
	}
	if got := strings.Join(names, " "); got != "insidef insub sub" {
		t.Errorf("listing %q", got)
	}
}

func TestBigPipelined(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	root := serve(t, dir, false)
	_, f, _ := root.Walk(ctx)
	if err := f.Create(ctx, "big", 0644, styx.ORDWR); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>12)
	}
	if n, err := f.WriteAt(ctx, big, 0); err != nil || n != len(big) {
		t.Fatalf("write %d %v", n, err)
	}
	got := make([]byte, len(big)+100)
	n, err := f.ReadAt(ctx, got, 0)
	if n != len(big) || !bytes.Equal(got[:n], big) {
		t.Fatalf("read back %d bytes (%v), want %d", n, err, len(big))
	}
	f.Clunk(ctx)
	host, _ := os.ReadFile(filepath.Join(dir, "big"))
	if !bytes.Equal(host, big) {
		t.Error("host file differs")
	}
}

func TestReadDirChunks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n = 100
	for i := range n {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte(strings.Repeat("x", i)), 0644)
	}
	root := serve(t, dir, false)
	d := walk(t, root, ".")
	if err := d.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	var all []byte
	buf := make([]byte, 150) // about two entries a read
	reads := 0
	for {
		m, err := d.ReadOnce(ctx, buf, int64(len(all)))
		if err != nil {
			t.Fatal(err)
		}
		if m == 0 {
			break
		}
		all = append(all, buf[:m]...)
		reads++
	}
	ds, err := styx.UnmarshalDirs(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != n || reads < n/3 {
		t.Fatalf("%d entries in %d reads", len(ds), reads)
	}
	for i, e := range ds {
		if want := fmt.Sprintf("f%03d", i); e.Name != want || e.Length != uint64(i) || e.Mode&^0177 != 0600 {
			t.Fatalf("entry %d: %v, want %s", i, e, want)
		}
	}
	// Rereading from offset 0 sees changes.
	os.Remove(filepath.Join(dir, "f000"))
	m, err := d.ReadOnce(ctx, buf, 0)
	if err != nil || m == 0 {
		t.Fatal(m, err)
	}
	if ds, _ := styx.UnmarshalDirs(buf[:m]); len(ds) == 0 || ds[0].Name != "f001" {
		t.Errorf("reread: %v", ds)
	}
}

func TestFIFONotOpened(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0666); err != nil {
		t.Skip(err)
	}
	root := serve(t, dir, false)
	f := walk(t, root, "fifo")
	errc := make(chan error, 1)
	go func() { errc <- f.Open(ctx, styx.OREAD) }()
	select {
	case err := <-errc:
		wantErr(t, "open fifo", err, plan9.ErrPerm)
	case <-time.After(10 * time.Second):
		t.Fatal("open of a FIFO blocked")
	}
}

// TestHidden: the node's data dir is not reachable from an export above
// it, by its name, a symbolic link or a hard link, and cannot be
// exported itself.
func TestHidden(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	top := t.TempDir()
	data := filepath.Join(top, "home", ".cheshire")
	os.MkdirAll(filepath.Join(data, "ca"), 0700)
	os.WriteFile(filepath.Join(data, "ca", "root.key"), []byte("secret"), 0600)
	os.WriteFile(filepath.Join(top, "home", "notes"), []byte("fine"), 0600)
	os.Symlink(".cheshire", filepath.Join(top, "home", "dlink"))
	os.Symlink(".cheshire/ca/root.key", filepath.Join(top, "home", "klink"))
	os.Link(filepath.Join(data, "ca", "root.key"), filepath.Join(top, "hard"))
	root := serve(t, top, false, hostfs.WithHidden(data))
	if got := readFile(t, root, "home/notes"); got != "fine" {
		t.Fatalf("notes: %q", got)
	}
	for _, p := range []string{"home/.cheshire", "home/.cheshire/ca/root.key", "home/dlink", "home/dlink/ca", "home/klink", "hard"} {
		f, err := root.WalkPath(ctx, p)
		if err == nil {
			f.Clunk(ctx)
		}
		wantErr(t, "walk "+p, err, plan9.ErrNotFound)
	}
	home := walk(t, root, "home")
	defer home.Clunk(ctx)
	if err := home.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	ds, err := home.ReadDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Name == ".cheshire" || d.Name == "dlink" || d.Name == "klink" {
			t.Errorf("%s listed", d.Name)
		}
	}
	if _, err := hostfs.New(filepath.Join(data, "ca"), true, hostfs.WithHidden(data)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export of the data dir's ca: %v", err)
	}
}
