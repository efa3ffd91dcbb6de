package git

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/synth/synthtest"
)

// pushed makes repository demo with two commits pushed by the git
// command (a.txt changed by the second; sub/b.txt, an executable and a
// symlink), a lightweight tag v1 and an annotated tag v2 on the first.
// It returns the env, the clone and the two commits' hashes.
func pushed(t *testing.T) (e *testEnv, w, first, second string) {
	e = newEnv(t)
	e.mustWrite("ctl", "create demo")
	w = e.clone("demo")
	e.writeWork(w, "a.txt", "one\n", 0644)
	e.writeWork(w, "sub/b.txt", "bee\n", 0644)
	e.writeWork(w, "run.sh", "#!/bin/sh\necho hi\n", 0755)
	if err := os.Symlink("a.txt", filepath.Join(w, "link")); err != nil {
		t.Fatal(err)
	}
	e.git(w, "add", "-A")
	e.git(w, "commit", "-q", "-m", "first\n\nthe body")
	first = e.git(w, "rev-parse", "HEAD")
	e.git(w, "tag", "v1")
	e.git(w, "tag", "-a", "-m", "two", "v2")
	e.writeWork(w, "a.txt", "two\n", 0644)
	e.git(w, "commit", "-q", "-am", "second")
	second = e.git(w, "rev-parse", "HEAD")
	e.git(w, "push", "-q", "origin", "main", "--tags")
	return e, w, first, second
}

func TestReadRefsLogTree(t *testing.T) {
	t.Parallel()
	e, w, first, second := pushed(t)
	if got := e.read("demo/HEAD"); got != second+"\n" {
		t.Errorf("HEAD reads %q, want %s", got, second)
	}
	if got := e.read("demo/refs/heads/main"); got != second+"\n" {
		t.Errorf("refs/heads/main reads %q, want %s", got, second)
	}
	if got := e.read("demo/refs/tags/v1"); got != first+"\n" {
		t.Errorf("refs/tags/v1 reads %q, want %s", got, first)
	}
	log := e.read("demo/log")
	want := fmt.Sprintf("%s glenda@example.com 1700000000 second\n%s glenda@example.com 1700000000 first\n", second, first)
	if log != want {
		t.Errorf("log:\n%s\nwant:\n%s", log, want)
	}
	for _, c := range []struct{ path, want string }{
		{"demo/tree/main/a.txt", "two\n"},
		{"demo/tree/main/sub/b.txt", "bee\n"},
		{"demo/tree/main/link", "a.txt"},
		{"demo/tree/main/run.sh", "#!/bin/sh\necho hi\n"},
		{"demo/tree/v1/a.txt", "one\n"},
		{"demo/tree/v2/a.txt", "one\n"},
		{"demo/tree/" + first + "/a.txt", "one\n"},
	} {
		if got := e.read(c.path); got != c.want {
			t.Errorf("%s reads %q, want %q", c.path, got, c.want)
		}
	}
	for _, c := range []struct {
		path string
		mode uint32
		size uint64
	}{
		{"demo/tree/main/a.txt", 0444, 4},
		{"demo/tree/main/run.sh", 0555, 18},
		{"demo/tree/main/link", 0444, 5},
		{"demo/tree/main/sub", 0555 | 0x80000000, 0},
	} {
		d, err := e.stat(c.path)
		if err != nil {
			t.Errorf("stat %s: %v", c.path, err)
			continue
		}
		if d.Mode != c.mode || d.Length != c.size {
			t.Errorf("stat %s: mode %#o length %d, want %#o %d", c.path, d.Mode, d.Length, c.mode, c.size)
		}
	}
	if _, err := e.stat("demo/tree/nosuch"); err == nil {
		t.Error("tree/nosuch exists")
	}
	blob := e.git(w, "rev-parse", "HEAD:a.txt")
	if got := e.read("demo/object/" + blob); got != "two\n" {
		t.Errorf("object/%s reads %q", blob, got)
	}
	if got := e.read("demo/object/" + second); !strings.HasPrefix(got, "tree ") || !strings.HasSuffix(got, "\nsecond\n") {
		t.Errorf("object/%s (a commit) reads %q", second, got)
	}
	if _, err := e.stat("demo/object/" + strings.Repeat("1", 40)); err == nil {
		t.Error("object of a missing hash exists")
	}
	ctl := e.read("demo/ctl")
	if !strings.Contains(ctl, "branch main "+second+"\n") || !strings.Contains(ctl, "tag v1 "+first+"\n") {
		t.Errorf("demo/ctl reads %q", ctl)
	}
}

func TestMoveRefs(t *testing.T) {
	t.Parallel()
	e, w, first, second := pushed(t)
	e.mustWrite("demo/refs/heads/main", first+"\n")
	if got := e.git(e.bare("demo"), "rev-parse", "main"); got != first {
		t.Errorf("after a write of main, git says it is %s, want %s", got, first)
	}
	if got := e.read("demo/HEAD"); got != first+"\n" {
		t.Errorf("HEAD reads %q after main moved", got)
	}
	// Compare-and-swap: lost, then won.
	err := e.writeOnly("demo/refs/heads/main", second+" "+first+"\n")
	wantErr(t, "CAS from a stale hash", err, fmt.Sprintf("git: refs/heads/main moved: is %s, not %s", first, second))
	e.mustWrite("demo/refs/heads/main", first+" "+second)
	if got := e.read("demo/refs/heads/main"); got != second+"\n" {
		t.Errorf("main reads %q after CAS, want %s", got, second)
	}
	// HEAD moves the branch it names.
	e.mustWrite("demo/HEAD", second+" "+first)
	if got := e.git(e.bare("demo"), "rev-parse", "main"); got != first {
		t.Errorf("after a write of HEAD, main is %s, want %s", got, first)
	}
	tree := e.git(w, "rev-parse", "HEAD^{tree}")
	for _, c := range []struct{ data, want string }{
		{"zzz", "git: bad hash"},
		{strings.Repeat("a", 40), "git: no object"},
		{tree, "is a tree, not a commit"},
		{"a b c", "want NEWHASH or OLDHASH NEWHASH"},
	} {
		wantErr(t, "write "+c.data, e.writeOnly("demo/refs/heads/main", c.data+"\n"), c.want)
	}
	if got := e.read("demo/refs/heads/main"); got != first+"\n" {
		t.Errorf("main reads %q after refused writes, want %s", got, first)
	}
	// A tag may name any object.
	e.mustWrite("demo/refs/tags/v1", tree)
	if got := e.git(e.bare("demo"), "rev-parse", "v1"); got != tree {
		t.Errorf("tag v1 is %s, want the tree %s", got, tree)
	}
}

func TestBranchCreateRemove(t *testing.T) {
	t.Parallel()
	e, _, first, _ := pushed(t)
	if err := e.create("demo/refs/heads", "feature", 0664, first+"\n"); err != nil {
		t.Fatalf("create feature: %v", err)
	}
	if got := e.git(e.bare("demo"), "rev-parse", "feature"); got != first {
		t.Errorf("feature is %s, want %s", got, first)
	}
	if got := e.read("demo/refs/heads/feature"); got != first+"\n" {
		t.Errorf("feature reads %q", got)
	}
	if got := e.read("demo/tree/feature/a.txt"); got != "one\n" {
		t.Errorf("tree/feature/a.txt reads %q", got)
	}
	// An empty create leaves nothing.
	if err := e.create("demo/refs/heads", "empty", 0664, ""); err != nil {
		t.Fatalf("create empty: %v", err)
	}
	if _, err := e.stat("demo/refs/heads/empty"); err == nil {
		t.Error("refs/heads/empty exists after a create without a write")
	}
	wantErr(t, "create with a bad hash", e.create("demo/refs/heads", "bad", 0664, "nothex\n"), "git: bad hash")
	wantErr(t, "create a bad name", e.create("demo/refs/heads", "x.lock", 0664, first), "git: bad ref name")
	// Branches with '/' are directories.
	e.git(e.bare("demo"), "branch", "dev/one", first)
	if got := e.read("demo/refs/heads/dev/one"); got != first+"\n" {
		t.Errorf("refs/heads/dev/one reads %q", got)
	}
	if err := e.remove("demo/refs/heads/feature"); err != nil {
		t.Fatalf("remove feature: %v", err)
	}
	if out := e.git(e.bare("demo"), "branch", "--list", "feature"); out != "" {
		t.Errorf("git still lists feature: %q", out)
	}
	if _, err := e.stat("demo/refs/heads/feature"); err == nil {
		t.Error("refs/heads/feature still there")
	}
}

func TestCtl(t *testing.T) {
	t.Parallel()
	e, _, _, second := pushed(t)
	if got := e.read("demo/HEAD"); got != second+"\n" {
		t.Fatalf("HEAD reads %q", got)
	}
	e.mustWrite("ctl", "create empty")
	if got := e.read("empty/HEAD"); got != "" {
		t.Errorf("HEAD of an empty repository reads %q, want nothing", got)
	}
	if got := e.read("empty/log"); got != "" {
		t.Errorf("log of an empty repository reads %q", got)
	}
	for _, c := range []struct{ msg, want string }{
		{"create demo", "file already exists"},
		{"create .hidden", "bad repository name"},
		{"create a!b", "bad repository name"},
		{"create " + strings.Repeat("x", 65), "bad repository name"},
		{"create ctl", "reserved"},
		{"create", "bad # args"},
		{"rm nosuch", "no such repository"},
		{"fork nosuch copy", "no such repository"},
		{"fork demo empty", "file already exists"},
		{"fork demo ../up", "bad repository name"},
		{"frob x", "unknown control message"},
	} {
		wantErr(t, c.msg, e.write("ctl", c.msg), c.want)
	}
	e.mustWrite("ctl", "fork demo copy")
	if got := e.read("copy/refs/heads/main"); got != second+"\n" {
		t.Errorf("fork's main reads %q, want %s", got, second)
	}
	w := e.clone("copy")
	if got := e.git(w, "rev-parse", "HEAD"); got != second {
		t.Errorf("clone of the fork is at %s, want %s", got, second)
	}
	if got := e.read("ctl"); got != "repo copy\nrepo demo\nrepo empty\n" {
		t.Errorf("ctl reads %q", got)
	}
	e.mustWrite("ctl", "rm copy")
	if _, err := os.Stat(e.bare("copy")); !os.IsNotExist(err) {
		t.Errorf("copy.git still on disk: %v", err)
	}
	if _, err := e.stat("copy"); err == nil {
		t.Error("copy still served")
	}
	// A new Repos on the directory finds the repositories.
	r2, err := New(e.dir, Options{Owner: "glenda"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r2.Names(), " "); got != "demo empty" {
		t.Errorf("reloaded: %s", got)
	}
	if p, err := r2.Path("demo"); err != nil || p != e.bare("demo") {
		t.Errorf("Path(demo) = %q, %v", p, err)
	}
	g, err := r2.Open("demo")
	if err != nil {
		t.Fatal(err)
	}
	if h, err := g.Head(); err != nil || h.Hash().String() != second {
		t.Errorf("Open(demo).Head() = %v, %v", h, err)
	}
	if _, err := r2.Open("nosuch"); err == nil {
		t.Error("Open(nosuch) succeeded")
	}
}

func TestWorkCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("ctl", "create w")
	wantErr(t, "commit of nothing", e.write("w/ctl", "commit main nothing"), "nothing to commit")
	if err := e.create("w/work/main", "hello.txt", 0664, "hello\n"); err != nil {
		t.Fatalf("create hello.txt: %v", err)
	}
	if err := e.create("w/work/main", "d", 0775|0x80000000, ""); err != nil {
		t.Fatalf("mkdir d: %v", err)
	}
	if err := e.create("w/work/main/d", "x", 0664, "ex\n"); err != nil {
		t.Fatalf("create d/x: %v", err)
	}
	if got := e.read("w/work/main/d/x"); got != "ex\n" {
		t.Errorf("work/main/d/x reads %q", got)
	}
	e.mustWrite("w/ctl", "commit main 'the first'")
	head := strings.TrimSpace(e.read("w/HEAD"))
	if got := e.read("w/log"); !strings.HasPrefix(got, head+" glenda@cheshire ") || !strings.HasSuffix(got, " the first\n") {
		t.Errorf("log reads %q", got)
	}
	if got := e.read("w/tree/main/d/x"); got != "ex\n" {
		t.Errorf("tree/main/d/x reads %q", got)
	}
	w := e.clone("w")
	if b, err := os.ReadFile(filepath.Join(w, "hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("clone's hello.txt: %q, %v", b, err)
	}
	for _, p := range []string{"w/work/main/hello.txt", "w/work/main/d/x"} {
		if got, err := testutil.ReadFile(e.ctx, e.root, p); err != nil || got == "" {
			t.Errorf("%s, from the tip, reads %q, %v", p, got, err)
		}
	}
	// Change, remove, commit again on top.
	e.mustWrite("w/work/main/hello.txt", "bye\n")
	wantErr(t, "remove a full directory", e.remove("w/work/main/d"), "not empty")
	if err := e.remove("w/work/main/d/x"); err != nil {
		t.Fatal(err)
	}
	if err := e.remove("w/work/main/d"); err != nil {
		t.Fatal(err)
	}
	e.mustWrite("w/ctl", "commit main second")
	if got := e.read("w/tree/main/hello.txt"); got != "bye\n" {
		t.Errorf("tree/main/hello.txt reads %q", got)
	}
	if _, err := e.stat("w/tree/main/d"); err == nil {
		t.Error("tree/main/d still there")
	}
	e.git(w, "pull", "-q")
	if out := e.git(w, "log", "--format=%an %ae %s"); out != "glenda glenda@cheshire second\nglenda glenda@cheshire the first" {
		t.Errorf("git log:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(w, "d")); !os.IsNotExist(err) {
		t.Errorf("d in the pulled clone: %v", err)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	e, _, _, _ := pushed(t)
	e.mustWrite("ctl", "create empty")
	synthtest.TestServer(t, e.r, "glenda")
}

// TestCASRace: of writers racing to move main from the same hash, one
// wins and the others are told it moved; forty zeros as OLD means "not
// there yet".
func TestCASRace(t *testing.T) {
	t.Parallel()
	e, _, first, second := pushed(t)
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() { errs <- e.writeOnly("demo/refs/heads/main", second+" "+first+"\n") }()
	}
	won := 0
	for range n {
		if err := <-errs; err == nil {
			won++
		} else if !strings.Contains(err.Error(), "moved") {
			t.Errorf("a losing writer was told %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d writers won, want 1", won)
	}
	wantErr(t, "zeros on an existing ref", e.writeOnly("demo/refs/heads/main", zeroHash+" "+first+"\n"), "moved")
	if err := e.create("demo/refs/heads", "fresh", 0664, zeroHash+" "+first); err != nil {
		t.Errorf("create with zeros as OLD: %v", err)
	}
}
