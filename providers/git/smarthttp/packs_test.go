package smarthttp

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClonePacks: a clone of a repository whose objects are all in one
// pack (after git gc) is served that pack and verifies (fsck); once a
// push adds a second pack, a clone is served a built pack, kept in the
// cache, which a second clone of the same refs reuses.
func TestClonePacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	repo := e.bare("p")
	work := filepath.Join(t.TempDir(), "w")
	e.ok(filepath.Dir(work), "init", "-q", work)
	for i, f := range []string{"a", "b", "c"} {
		e.commit(work, f, f+" text "+string(rune('0'+i))+"\n")
	}
	e.ok(work, "push", "-q", repo, "main")
	e.ok(repo, "gc", "-q")
	if f := wholePack(mustOpen(t, repo)); f == nil {
		t.Fatal("after gc the repository is not one pack")
	} else {
		f.Close()
	}
	dst := t.TempDir()
	e.ok(dst, "clone", "-q", e.url("", "p"), "one")
	e.ok(filepath.Join(dst, "one"), "fsck", "--strict")
	if got := e.readFile(filepath.Join(dst, "one", "c")); got != "c text 2\n" {
		t.Errorf("cloned c = %q", got)
	}

	e.commit(work, "d", "d text\n")
	e.ok(work, "push", "-q", e.url("", "p"), "main") // a second pack
	if f := wholePack(mustOpen(t, repo)); f != nil {
		f.Close()
		t.Fatal("a push left the repository one pack")
	}
	e.ok(dst, "clone", "-q", e.url("", "p"), "two")
	e.ok(filepath.Join(dst, "two"), "fsck", "--strict")
	cached := func() int {
		ents, _ := filepath.Glob(filepath.Join(e.packDir(), "pack-*"))
		return len(ents)
	}
	n := cached()
	if n == 0 {
		t.Fatal("no pack was cached")
	}
	e.ok(dst, "clone", "-q", e.url("", "p"), "three")
	e.ok(filepath.Join(dst, "three"), "fsck", "--strict")
	if cached() != n {
		t.Errorf("the second clone of the same refs built another pack (%d, was %d)", cached(), n)
	}
	if _, err := os.Stat(filepath.Join(dst, "three", "d")); err != nil {
		t.Errorf("the clone after the push lacks d: %v", err)
	}
}
