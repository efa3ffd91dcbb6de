package smarthttp

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlows runs the everyday flows of the git command against the
// handler, in order: push to an empty repository, clone, fast-forward
// push, fetch and pull, branches and their deletion, tags, refused and
// forced non-fast-forward pushes, a large push (probe, chunked body),
// and a fetch whose negotiation is large enough to be gzipped.
func TestFlows(t *testing.T) { protocols(t, flows) }

func flows(t *testing.T, e *env) {
	bare := e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	c1 := e.commit(work, "a", "one\n")
	e.ok(work, "remote", "add", "origin", e.url("", "r"))
	e.ok(work, "push", "-q", "origin", "main")
	if got := e.rev(bare, "refs/heads/main"); got != c1 {
		t.Fatalf("main after first push: %s, want %s", got, c1)
	}

	clone := filepath.Join(t.TempDir(), "clone")
	e.ok("", "clone", "-q", e.url("", "r"), clone)
	if got := e.readFile(filepath.Join(clone, "a")); got != "one\n" {
		t.Fatalf("cloned a: %q", got)
	}

	c2 := e.commit(work, "a", "two\n")
	e.ok(work, "push", "-q", "origin", "main")
	if got := e.rev(bare, "refs/heads/main"); got != c2 {
		t.Fatalf("main after fast-forward: %s, want %s", got, c2)
	}
	e.ok(clone, "fetch", "-q")
	if got := e.rev(clone, "origin/main"); got != c2 {
		t.Fatalf("fetched origin/main %s, want %s", got, c2)
	}
	c3 := e.commit(work, "b", "bee\n")
	e.ok(work, "push", "-q", "origin", "main")
	e.ok(clone, "pull", "-q", "--ff-only")
	if got := e.rev(clone, "HEAD"); got != c3 {
		t.Fatalf("pulled HEAD %s, want %s", got, c3)
	}

	// A branch pushed, then deleted by a push with no pack.
	e.ok(work, "push", "-q", "origin", "main:br")
	if !strings.Contains(e.refs("r"), "refs/heads/br") {
		t.Fatalf("no br after push:\n%s", e.refs("r"))
	}
	e.ok(work, "push", "-q", "origin", ":br")
	if strings.Contains(e.refs("r"), "refs/heads/br") {
		t.Fatalf("br after delete:\n%s", e.refs("r"))
	}

	// Tags, lightweight and annotated, reach a fetching clone.
	e.ok(work, "tag", "light")
	e.ok(work, "tag", "-a", "-m", "version 1", "v1", c2)
	e.ok(work, "push", "-q", "origin", "--tags")
	e.ok(clone, "fetch", "-q", "--tags")
	if got := e.rev(clone, "v1^{commit}"); got != c2 {
		t.Fatalf("v1 in clone %s, want %s", got, c2)
	}
	if got := e.ok(clone, "cat-file", "-t", "v1"); got != "tag\n" {
		t.Fatalf("v1 is a %q", got)
	}

	// A non-fast-forward is refused without --force, allowed with it.
	e.ok(clone, "reset", "-q", "--hard", c2)
	c4 := e.commit(clone, "c", "sea\n")
	e.fails("rejected", clone, "push", "origin", "main")
	if got := e.rev(bare, "refs/heads/main"); got != c3 {
		t.Fatalf("main after refused push: %s, want %s", got, c3)
	}
	e.ok(clone, "push", "-q", "--force", "origin", "main")
	if got := e.rev(bare, "refs/heads/main"); got != c4 {
		t.Fatalf("main after forced push: %s, want %s", got, c4)
	}
	// The work tree's view is now stale: its push is refused.
	c5 := e.commit(work, "d", "dee\n")
	e.fails("fetch first", work, "push", "origin", "main")
	e.ok(work, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
	e.ok(work, "push", "-q", "origin", "main")
	if e.rev(bare, "refs/heads/main") == c5 {
		t.Fatalf("main is not the merge")
	}

	// A push larger than http.postBuffer: git probes with a flush-pkt,
	// then sends the pack chunked.
	big := make([]byte, 3<<20)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(work, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok(work, "add", "big")
	e.ok(work, "commit", "-q", "-m", "big")
	e.ok(work, "-c", "http.postBuffer=65536", "push", "-q", "origin", "main")
	if got, want := e.rev(bare, "refs/heads/main"), e.rev(work, "HEAD"); got != want {
		t.Fatalf("main after big push: %s, want %s", got, want)
	}

	// A fetch by a clone with many commits of its own: its haves,
	// unknown to the server, are dropped, and its request is gzipped.
	e.ok(clone, "reset", "-q", "--hard", "origin/main")
	for i := range 60 {
		e.commit(clone, "n", strings.Repeat("x", i)+"\n")
	}
	e.ok(clone, "fetch", "-q", "origin")
	if got, want := e.rev(clone, "origin/main"), e.rev(work, "HEAD"); got != want {
		t.Fatalf("origin/main after fetch %s, want %s", got, want)
	}
	e.ok(clone, "fsck", "--no-progress")

	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.updates)
	if n < 8 {
		t.Errorf("Updated saw %d updates", n)
	}
	if e.seen["gzip"] == 0 || e.seen["probe"] == 0 {
		t.Errorf("gzipped requests %d, probes %d; want some of each", e.seen["gzip"], e.seen["probe"])
	}
}

// TestShallow clones with --depth 1, pulls into the shallow clone,
// then unshallows it.
func TestShallow(t *testing.T) { protocols(t, shallow) }

func shallow(t *testing.T, e *env) {
	e.bare("s")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	for i := range 5 {
		e.commit(work, "f", strings.Repeat("line\n", i+1))
	}
	e.ok(work, "push", "-q", e.url("", "s"), "main")

	sh := filepath.Join(t.TempDir(), "shallow")
	e.ok("", "clone", "-q", "--depth", "1", e.url("", "s"), sh)
	if got := strings.TrimSpace(e.ok(sh, "rev-list", "--count", "HEAD")); got != "1" {
		t.Fatalf("shallow clone has %s commits", got)
	}
	e.commit(work, "g", "gee\n")
	e.ok(work, "push", "-q", e.url("", "s"), "main")
	e.ok(sh, "pull", "-q", "--ff-only")
	if got, want := e.rev(sh, "HEAD"), e.rev(work, "HEAD"); got != want {
		t.Fatalf("shallow pull: HEAD %s, want %s", got, want)
	}
	e.ok(sh, "fetch", "-q", "--unshallow")
	if got := strings.TrimSpace(e.ok(sh, "rev-list", "--count", "HEAD")); got != "6" {
		t.Fatalf("unshallowed clone has %s commits", got)
	}
	e.ok(sh, "fsck", "--no-progress")
}

// TestManyFiles pushes a commit of 2,000 files in 40 directories, clones
// it back and compares the trees, then pushes a change of 100 of them
// and pulls it; a streaming listener hears each path once.
func TestManyFiles(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := newEnv(t, nil, func(o *Options) { o.Stream = func(string) PushListener { return rec } })
	e.bare("many")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	for i := range 2000 {
		p := filepath.Join(work, fmt.Sprintf("d%02d", i%40), fmt.Sprintf("f%04d", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(fmt.Sprintf("file %d\n", i)), 0o644)
	}
	e.ok(work, "add", "-A")
	e.ok(work, "commit", "-q", "-m", "many")
	e.ok(work, "push", "-q", e.url("", "many"), "main")
	if got := len(rec.take()); got != 2001 {
		t.Fatalf("heard %d lines for 2,000 files and a ref", got)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	e.ok("", "clone", "-q", e.url("", "many"), clone)
	if a, b := e.ok(work, "ls-tree", "-r", "HEAD"), e.ok(clone, "ls-tree", "-r", "HEAD"); a != b || strings.Count(a, "\n") != 2000 {
		t.Fatalf("cloned tree differs or is short: %d lines", strings.Count(b, "\n"))
	}
	for i := 0; i < 2000; i += 20 {
		os.WriteFile(filepath.Join(work, fmt.Sprintf("d%02d", i%40), fmt.Sprintf("f%04d", i)), []byte("changed\n"), 0o644)
	}
	e.ok(work, "commit", "-q", "-am", "100 changed")
	e.ok(work, "push", "-q", e.url("", "many"), "main")
	lines := rec.take()
	if len(lines) != 101 || !strings.HasPrefix(lines[0], "update ") {
		t.Fatalf("heard %d lines for 100 changes, first %q", len(lines), lines[0])
	}
	e.ok(clone, "pull", "-q", "--ff-only")
	if got := e.readFile(filepath.Join(clone, "d00", "f0000")); got != "changed\n" {
		t.Fatalf("pulled f0000: %q", got)
	}
}
