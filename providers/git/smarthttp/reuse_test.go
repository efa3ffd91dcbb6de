package smarthttp

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/memory"
)

// TestReusePack makes a repository of two packs with deltas (ofs and,
// across packs, none) and loose objects, then reuses them into one
// pack of every object, with ofs-deltas and with ref-deltas only, and
// has git index-pack check each: every object there, every delta
// resolved. A subset asks for its bases too.
func TestReusePack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	dir := filepath.Join(t.TempDir(), "r")
	e.ok("", "init", "-q", dir)
	text := strings.Repeat("a line of text that repeats, so that git finds deltas\n", 200)
	for i := range 6 {
		e.commit(dir, "f", text+strings.Repeat("more\n", i))
	}
	e.ok(dir, "repack", "-a", "-d", "-q")
	for i := range 3 {
		e.commit(dir, "f", text+strings.Repeat("again\n", i))
	}
	e.ok(dir, "repack", "-d", "-q") // the loose objects into a second pack
	e.commit(dir, "g", text)        // and some left loose
	packs, _ := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "*.pack"))
	if len(packs) != 2 {
		t.Fatalf("%d packs, want 2", len(packs))
	}
	if !strings.Contains(e.ok(dir, "verify-pack", "-v", strings.TrimSuffix(packs[0], ".pack")+".idx", strings.TrimSuffix(packs[1], ".pack")+".idx"), "chain length") {
		t.Fatal("no deltas in the packs")
	}
	var all []plumbing.Hash
	for _, l := range strings.Split(strings.TrimSpace(e.ok(dir, "rev-list", "--objects", "--all")), "\n") {
		all = append(all, plumbing.NewHash(l[:40]))
	}
	repo := mustOpen(t, dir)
	check := func(name string, objects []plumbing.Hash, refDeltas bool, want int) {
		t.Helper()
		var b bytes.Buffer
		if err := reusePack(repo, objects, refDeltas, &b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := filepath.Join(t.TempDir(), "p")
		os.WriteFile(p+".pack", b.Bytes(), 0o644)
		cmd := exec.Command(gitBin, "index-pack", "-o", p+".idx", p+".pack")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: git index-pack: %v\n%s", name, err, out)
		}
		out := e.ok("", "verify-pack", "-v", p+".idx")
		if want > 1 && !strings.Contains(out, "chain length") {
			t.Fatalf("%s: no deltas kept:\n%s", name, out)
		}
		sc := packfile.NewScanner(bytes.NewReader(b.Bytes()))
		_, count, err := sc.Header()
		if err != nil {
			t.Fatal(err)
		}
		for range count {
			h, err := sc.NextObjectHeader()
			if err != nil {
				t.Fatal(err)
			}
			if refDeltas && h.Type == plumbing.OFSDeltaObject || !refDeltas && h.Type == plumbing.REFDeltaObject {
				t.Fatalf("%s: an object of type %s", name, h.Type)
			}
			if _, _, err := sc.NextObject(io.Discard); err != nil {
				t.Fatal(err)
			}
		}
		if got := packCountBytes(b.Bytes()); got < want || !strings.Contains(out, "p.pack: ok") {
			t.Fatalf("%s: %d objects, want at least %d:\n%s", name, got, want, out)
		}
	}
	check("all, ofs-delta", all, false, len(all))
	check("all, ref-delta", all, true, len(all))
	check("the last commit's blob", all[len(all)-1:], false, 1)

	mem, _ := gogit.Init(memory.NewStorage(), nil)
	if err := reusePack(mem, all, false, &bytes.Buffer{}); !errors.Is(err, errNoReuse) {
		t.Fatalf("in-memory repository: %v, want errNoReuse", err)
	}
	if err := reusePack(repo, []plumbing.Hash{plumbing.NewHash(strings.Repeat("1", 40))}, false, &bytes.Buffer{}); !errors.Is(err, errNoReuse) {
		t.Fatalf("missing object: %v, want errNoReuse", err)
	}
}

func packCountBytes(b []byte) int {
	if len(b) < 12 {
		return 0
	}
	return int(b[8])<<24 | int(b[9])<<16 | int(b[10])<<8 | int(b[11])
}
