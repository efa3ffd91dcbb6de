package git

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRefsReplacedWhole: a ref moved through the files is a new file
// renamed over the old one (another inode), never the old one rewritten
// in place, and no temporary file is left beside it.
func TestRefsReplacedWhole(t *testing.T) {
	t.Parallel()
	e, _, first, second := pushed(t)
	p := filepath.Join(e.r.dir, "demo.git", "refs", "heads", "main")
	inode := func() uint64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	before := inode()
	if err := e.writeOnly("demo/refs/heads/main", second+" "+first+"\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) != first {
		t.Errorf("ref file %q, want %s", b, first)
	}
	if inode() == before {
		t.Error("the ref file was rewritten in place")
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file %s left", d.Name())
		}
	}
}
