package git

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestEvents pushes with the git command and announces the push with
// Pushed, moves refs through the files, and reads REPO/events: a line
// per path changed and a ref line per ref moved, in order.
func TestEvents(t *testing.T) {
	t.Parallel()
	e, w, first, second := pushed(t)
	if got := e.read("demo/events"); got != "" {
		t.Fatalf("events before any announcement: %q", got)
	}
	blob := func(rev string) string { return e.git(w, "rev-parse", rev) }
	var want strings.Builder
	check := func(what string) {
		t.Helper()
		if got := e.read("demo/events"); got != want.String() {
			t.Fatalf("events after %s:\n%s\nwant:\n%s", what, got, want.String())
		}
	}

	// The push that made main, then the one that moved it; the tags.
	h := plumbing.NewHash
	e.r.Pushed("demo", []RefUpdate{
		{Name: "refs/heads/main", Old: plumbing.ZeroHash, New: h(second)},
		{Name: "refs/tags/v2", Old: plumbing.ZeroHash, New: h(blob("v2"))},
	})
	e.r.Pushed("nope", []RefUpdate{{Name: "refs/heads/main", New: h(second)}})
	for _, p := range []string{"a.txt", "link", "run.sh", "sub/b.txt"} {
		want.WriteString("create " + p + " " + blob(second+":"+p) + "\n")
	}
	want.WriteString("ref refs/heads/main " + zeroHash + " " + second + "\n")
	for _, p := range []string{"a.txt", "link", "run.sh", "sub/b.txt"} {
		want.WriteString("create " + p + " " + blob(first+":"+p) + "\n")
	}
	want.WriteString("ref refs/tags/v2 " + zeroHash + " " + blob("v2") + "\n")
	check("the first pushes")

	// Change a file, make one with a space, remove one, chmod one.
	e.writeWork(w, "a.txt", "three\n", 0644)
	e.writeWork(w, "new dir/c.txt", "see\n", 0644)
	if err := os.Remove(w + "/sub/b.txt"); err != nil {
		t.Fatal(err)
	}
	e.writeWork(w, "run.sh", "#!/bin/sh\necho hi\n", 0644)
	e.git(w, "add", "-A")
	e.git(w, "commit", "-q", "-m", "third")
	third := e.git(w, "rev-parse", "HEAD")
	e.git(w, "push", "-q", "origin", "main")
	e.r.Pushed("demo", []RefUpdate{{Name: "refs/heads/main", Old: h(second), New: h(third)}})
	want.WriteString("update a.txt " + blob(third+":a.txt") + "\n")
	want.WriteString("create 'new dir/c.txt' " + blob(third+":new dir/c.txt") + "\n")
	want.WriteString("update run.sh " + blob(third+":run.sh") + "\n")
	want.WriteString("delete sub/b.txt\n")
	want.WriteString("ref refs/heads/main " + second + " " + third + "\n")
	check("a push")

	// Moves through the files: a write, a commit, a branch made and
	// removed.
	e.mustWrite("demo/refs/heads/main", third+" "+second)
	want.WriteString("update a.txt " + blob(second+":a.txt") + "\n")
	want.WriteString("delete 'new dir/c.txt'\n")
	want.WriteString("update run.sh " + blob(second+":run.sh") + "\n")
	want.WriteString("create sub/b.txt " + blob(second+":sub/b.txt") + "\n")
	want.WriteString("ref refs/heads/main " + third + " " + second + "\n")
	check("a write of main")

	e.mustWrite("demo/work/main/a.txt", "four\n")
	e.mustWrite("demo/ctl", "commit main four")
	fourth := strings.TrimSpace(e.read("demo/refs/heads/main"))
	e.git(w, "fetch", "-q")
	want.WriteString("update a.txt " + e.git(w, "rev-parse", fourth+":a.txt") + "\n")
	want.WriteString("ref refs/heads/main " + second + " " + fourth + "\n")
	check("a commit")

	if err := e.create("demo/refs/heads", "b", 0664, first+"\n"); err != nil {
		t.Fatal(err)
	}
	if err := e.remove("demo/refs/heads/b"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a.txt", "link", "run.sh", "sub/b.txt"} {
		want.WriteString("create " + p + " " + blob(first+":"+p) + "\n")
	}
	want.WriteString("ref refs/heads/b " + zeroHash + " " + first + "\n")
	for _, p := range []string{"a.txt", "link", "run.sh", "sub/b.txt"} {
		want.WriteString("delete " + p + "\n")
	}
	want.WriteString("ref refs/heads/b " + first + " " + zeroHash + "\n")
	check("a branch made and removed")

	// A refused write tells nothing.
	wantErr(t, "stale write", e.writeOnly("demo/refs/heads/main", first+" "+second+"\n"), "moved")
	check("a refused write")
}

// TestPushEvents tells two pushes at once through Begin: the first is
// told live, line by line; the second, begun while the first is being
// told, comes whole after it; a refused command says why; a ref moved
// through the files meanwhile is moved at once and told after.
func TestPushEvents(t *testing.T) {
	t.Parallel()
	e, _, first, second := pushed(t)
	h := plumbing.NewHash
	a := e.r.Begin("demo")
	b := e.r.Begin("demo")
	a.Path("create", "x y", h(first))
	b.Path("delete", "gone", plumbing.ZeroHash)
	if got, want := e.read("demo/events"), "create 'x y' "+first+"\n"; got != want {
		t.Fatalf("events while a push is told: %q, want %q", got, want)
	}
	// A ref moved meanwhile does not wait; its lines do.
	if err := e.writeOnly("demo/refs/heads/main", second+" "+first+"\n"); err != nil {
		t.Fatal(err)
	}
	bDone := make(chan bool)
	go func() {
		b.Ref("refs/heads/b", plumbing.ZeroHash, h(first), "")
		b.Done() // waits for a
		close(bDone)
	}()
	a.Ref("refs/heads/main", h(first), h(second), "stale info")
	a.Done()
	<-bDone
	e.r.Begin("nope").Done() // no such repository: nothing told, nothing held
	got := e.read("demo/events")
	want := "create 'x y' " + first + "\n" +
		"refused refs/heads/main " + first + " " + second + " 'stale info'\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("events:\n%s\nwant first:\n%s", got, want)
	}
	rest := strings.TrimPrefix(got, want)
	pushB := "delete gone\nref refs/heads/b " + zeroHash + " " + first + "\n"
	if !strings.Contains(rest, pushB) || !strings.Contains(rest, "ref refs/heads/main "+second+" "+first+"\n") {
		t.Fatalf("events after the live push:\n%s", rest)
	}
}

// TestPushTellsWatchers: a ref a push moves is told to the module's
// watchers (module.Env's Changed) as a change of its file: created,
// written, removed; a refused one is not.
func TestPushTellsWatchers(t *testing.T) {
	t.Parallel()
	e, _, first, second := pushed(t)
	var got []string
	f := func(op, path, newPath string) { got = append(got, op+" "+path) }
	e.r.changed.Store(&f)
	h := plumbing.NewHash
	p := e.r.Begin("demo")
	p.Ref("refs/heads/new", plumbing.ZeroHash, h(first), "")
	p.Ref("refs/heads/main", h(first), h(second), "")
	p.Ref("refs/heads/old", h(first), plumbing.ZeroHash, "")
	p.Ref("refs/heads/no", h(first), h(second), "stale info")
	p.Done()
	want := []string{"create /demo/refs/heads/new", "write /demo/refs/heads/main", "remove /demo/refs/heads/old"}
	if !slices.Equal(got, want) {
		t.Errorf("told %q, want %q", got, want)
	}
}
