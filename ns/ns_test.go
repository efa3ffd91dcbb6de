package ns_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

func cmds(t *testing.T, text string) []plan9.NSCmd {
	t.Helper()
	c, err := plan9.ParseNS(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup serves a manager over loopback and returns a client root fid.
func setup(t *testing.T, m *ns.Manager, user string) *styx.Fid {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &styx.Server{Attacher: m}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Serve(ctx, l)
	t.Cleanup(func() { cancel(); s.Close() })
	host, port, _ := net.SplitHostPort(l.Addr().String())
	c, err := styx.Dial(ctx, "tcp!"+host+"!"+port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	root, err := c.Attach(ctx, nil, user, "")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func mkfile(t *testing.T, root *styx.Fid, dir, name, content string) {
	t.Helper()
	ctx := context.Background()
	d, err := root.WalkPath(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Create(ctx, name, 0644, styx.OWRITE); err != nil {
		t.Fatalf("create %s/%s: %v", dir, name, err)
	}
	if _, err := d.WriteAt(ctx, []byte(content), 0); err != nil {
		t.Fatal(err)
	}
	d.Clunk(ctx)
}

func cat(t *testing.T, root *styx.Fid, p string) string {
	t.Helper()
	ctx := context.Background()
	f, err := root.WalkPath(ctx, p)
	if err != nil {
		t.Fatalf("walk %s: %v", p, err)
	}
	defer f.Clunk(ctx)
	if err := f.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	b, err := f.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ls(t *testing.T, root *styx.Fid, p string) []string {
	t.Helper()
	ctx := context.Background()
	f, err := root.WalkPath(ctx, p)
	if err != nil {
		t.Fatalf("walk %s: %v", p, err)
	}
	defer f.Clunk(ctx)
	if err := f.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	ds, err := f.ReadDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	return names
}

func TestUnionAndDotDot(t *testing.T) {
	ctx := context.Background()
	m := ns.NewManager(ns.WithDefaults(cmds(t, "mount -c #a /a\nmount -c #b /b\n")))
	m.Register("#a", tmp.New("glenda"))
	m.Register("#b", tmp.New("glenda"))
	root := setup(t, m, "glenda")
	mkfile(t, root, "/a", "x", "from a")
	mkfile(t, root, "/a", "both", "a's")
	mkfile(t, root, "/b", "y", "from b")
	mkfile(t, root, "/b", "both", "b's")

	space, _ := m.Namespace(ctx, "glenda")
	if err := space.Bind(ctx, "/b", "/a", ns.MAFTER); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ls(t, root, "/a"), " "); got != "both x y" {
		t.Errorf("union listing %q", got)
	}
	if got := cat(t, root, "/a/both"); got != "a's" {
		t.Errorf("union lookup order: got %q", got)
	}
	if got := cat(t, root, "/a/y"); got != "from b" {
		t.Errorf("after member: got %q", got)
	}
	// .. crosses the mount back to the root of the namespace.
	if got := cat(t, root, "/a/../b/y"); got != "from b" {
		t.Errorf("dotdot: got %q", got)
	}
	// -b puts b first; create goes to the first -c member.
	if err := space.Bind(ctx, "/b", "/a", ns.MBEFORE|ns.MCREATE); err != nil {
		t.Fatal(err)
	}
	if got := cat(t, root, "/a/both"); got != "b's" {
		t.Errorf("before member: got %q", got)
	}
	mkfile(t, root, "/a", "new", "n")
	if got := cat(t, root, "/b/new"); got != "n" {
		t.Errorf("create went elsewhere: %q", got)
	}
	want := "mount -c '#a' /a\nmount -c '#b' /b\nbind -a /b /a\nbind -bc /b /a\n"
	if got := space.String(); got != want {
		t.Errorf("ns output:\n%s\nwant:\n%s", got, want)
	}
	if err := space.Unmount(ctx, "/b", "/a"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ls(t, root, "/a"), " "); got != "both x" {
		t.Errorf("after unmount: %q", got)
	}
	// A union without -c members forbids creation.
	if err := space.Bind(ctx, "/b", "/a", ns.MREPL); err != nil {
		t.Fatal(err)
	}
	d, _ := root.WalkPath(ctx, "/a")
	if err := d.Create(ctx, "z", 0644, styx.OWRITE); err == nil || !strings.Contains(err.Error(), "forbids creation") {
		t.Errorf("create in union without -c: %v", err)
	}
	if _, _, err := root.Walk(ctx, "a", "nonexistent"); !errors.Is(err, plan9.ErrNotFound) {
		t.Errorf("walk missing: %v", err)
	}
}

func TestNamespaceFilePersists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	shared := tmp.New("glenda")
	mk := func() *ns.Manager {
		m := ns.NewManager(ns.WithDir(dir), ns.WithDefaults(cmds(t, "mount -c #t /tmp\n")))
		m.Register("#t", shared)
		return m
	}
	m := mk()
	space, err := m.Namespace(ctx, "glenda")
	if err != nil {
		t.Fatal(err)
	}
	if err := space.Bind(ctx, "/tmp", "/n/t", ns.MREPL); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(space); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "users", "glenda"))
	if !strings.Contains(string(data), "bind /tmp /n/t") {
		t.Fatalf("namespace file:\n%s", data)
	}
	m2 := mk()
	root := setup(t, m2, "glenda")
	mkfile(t, root, "/tmp", "f", "hello")
	if got := cat(t, root, "/n/t/f"); got != "hello" {
		t.Errorf("after restart: %q", got)
	}
}

// TestNamespaceFiles: user names that would collide with the node's own
// files are refused, a file from the old place is moved, an unparsable
// one is kept aside and the defaults used, and concurrent saves leave a
// whole file.
func TestNamespaceFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	m := ns.NewManager(ns.WithDir(dir), ns.WithDefaults(cmds(t, "mount -c #t /tmp\n")))
	m.Register("#t", tmp.New("glenda"))
	for _, bad := range []string{"", ".", "..", "a/b", "x\x00", "key:abc", ".hidden", "tab\there", "new\nline", strings.Repeat("u", 65), "\xff"} {
		if _, err := m.Namespace(ctx, bad); err == nil {
			t.Errorf("user %q accepted", bad)
		}
	}
	// "exports" is a user like any other: its file is not the exports.
	if err := m.AddExport(ns.Export{User: "glenda", Path: "/tmp", RO: true, To: "*"}); err != nil {
		t.Fatal(err)
	}
	ex, err := m.Namespace(ctx, "exports")
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Bind(ctx, "/tmp", "/n/x", ns.MREPL); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(ex); err != nil {
		t.Fatal(err)
	}
	if es, err := m.Exports(); err != nil || len(es) != 1 {
		t.Fatalf("exports after user \"exports\" saved: %v %v", es, err)
	}
	// The old place moves; a bad file is kept aside.
	os.WriteFile(filepath.Join(dir, "old"), []byte("mount -c #t /tmp\nbind /tmp /n/old\n"), 0600)
	sp, err := m.Namespace(ctx, "old")
	if err != nil || !strings.Contains(sp.String(), "/n/old") {
		t.Fatalf("old file not used: %v\n%s", err, sp.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "users", "old")); err != nil {
		t.Errorf("old file not moved: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "users", "broken"), []byte("bind 'unterminated\n"), 0600)
	sp, err = m.Namespace(ctx, "broken")
	if err != nil || !strings.Contains(sp.String(), "#t") {
		t.Fatalf("broken file: %v\n%s", err, sp)
	}
	if _, err := os.Stat(filepath.Join(dir, "users", ".broken.bad")); err != nil {
		t.Errorf("broken file not kept aside: %v", err)
	}
	// Concurrent saves: every read of the file parses.
	g, err := m.Namespace(ctx, "glenda")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			if err := m.Save(g); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 200; i++ {
		if err := g.Bind(ctx, "/tmp", fmt.Sprintf("/n/%d", i%5), ns.MREPL); err != nil {
			t.Fatal(err)
		}
		if err := m.Save(g); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "users", "glenda"))
		if err != nil || !strings.Contains(string(data), "mount -c '#t' /tmp") {
			t.Fatalf("save %d: %v\n%s", i, err, data)
		}
	}
	<-done
}

// TestUnusedNamespacesDropped: a namespace no fid uses is dropped from
// memory, its file kept; one in use stays; a remote key's view goes
// with its last fid.
func TestUnusedNamespacesDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	m := ns.NewManager(ns.WithDir(dir), ns.WithDefaults(cmds(t, "mount -c #t /tmp\n")), ns.WithIdleDrop(0))
	m.Register("#t", tmp.New("glenda"))
	t.Cleanup(m.Close)
	spaces := func() map[string]bool {
		out := map[string]bool{}
		for _, n := range m.Spaces() {
			out[n.User()] = true
		}
		return out
	}
	waitSpaces := func(what string, cond func(map[string]bool) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // a hang guard, not a budget
		for !cond(spaces()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: namespaces in memory: %v", what, spaces())
			}
			time.Sleep(time.Millisecond)
		}
	}
	// glenda keeps a fid; 200 passers-by attach and clunk.
	keep, err := m.Attach(ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		f, err := m.Attach(ctx, fmt.Sprintf("u%d", i), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, w, err := f.Walk(ctx, []string{"tmp"})
		if err != nil {
			t.Fatal(err)
		}
		f.Clunk()
		w.Clunk() // the last fid goes after the root's
	}
	waitSpaces("passers-by dropped", func(s map[string]bool) bool { return len(s) == 1 && s["glenda"] })

	// A changed namespace comes back from its file.
	f, err := m.Attach(ctx, "u7", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := m.Namespace(ctx, "u7")
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bind(ctx, "/tmp", "/n/t", ns.MREPL); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(sp); err != nil {
		t.Fatal(err)
	}
	f.Clunk()
	waitSpaces("u7 dropped", func(s map[string]bool) bool { return !s["u7"] })
	f, err = m.Attach(ctx, "u7", "/n/t", nil)
	if err != nil {
		t.Fatalf("u7's bind after the drop: %v", err)
	}
	f.Clunk()
	keep.Clunk()
	waitSpaces("all dropped", func(s map[string]bool) bool { return len(s) == 0 })
}

// nsWithCtl is a manager keeping its files in a temporary directory,
// whose default namespace mounts a tmp tree on /tmp and #ns on /ns, and
// glenda's root in it, clunked at the end of the test.
func nsWithCtl(t *testing.T) (*ns.Manager, styx.File) {
	t.Helper()
	m := ns.NewManager(ns.WithDir(t.TempDir()), ns.WithDefaults(cmds(t, "mount -c #t /tmp\nmount #ns /ns\n")))
	m.Register("#t", tmp.New("glenda"))
	m.RegisterPerNS("#ns", func(n *ns.Namespace) styx.Attacher { return ns.Files(n) })
	t.Cleanup(m.Close)
	root, err := m.Attach(context.Background(), "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Clunk() })
	return m, root
}

// TestExportsInBatch: export and unexport lines are part of their
// write's all-or-none, checked in order, and saved once.
func TestExportsInBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, root := nsWithCtl(t)
	ctl := func(text string) error {
		_, f, err := root.Walk(ctx, []string{"ns", "ctl"})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Clunk()
		if _, err := f.Open(ctx, styx.OWRITE); err != nil {
			t.Fatal(err)
		}
		_, err = f.Write(ctx, []byte(text), 0)
		return err
	}
	exports := func() string {
		es, err := m.Exports()
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, e := range es {
			s = append(s, e.String())
		}
		return strings.Join(s, "; ")
	}
	if err := ctl("export /tmp to *\n"); err != nil {
		t.Fatal(err)
	}
	before := exports()
	// A bad last line: neither the unexport nor the new export happen.
	err := ctl("unexport /tmp\nexport /tmp rw to *\nbind /nonexistent /n/x\n")
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad third line: %v", err)
	}
	if got := exports(); got != before {
		t.Errorf("exports changed by a refused write: %q, was %q", got, before)
	}
	// Lines see the lines before them: unexporting twice fails.
	err = ctl("unexport /tmp\nunexport /tmp\n")
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "not exported") {
		t.Fatalf("second unexport: %v", err)
	}
	if got := exports(); got != before {
		t.Errorf("exports changed by a refused write: %q, was %q", got, before)
	}
	if err := ctl("unexport /tmp\nexport /tmp rw to *\n"); err != nil {
		t.Fatal(err)
	}
	if got := exports(); got != "glenda /tmp rw *" {
		t.Errorf("exports after a good write: %q", got)
	}
}
