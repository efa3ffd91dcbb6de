package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/internal/testutil"
)

// TestFindOnWalk: discovery on walk with real nodes. B and C export
// /projects/x to every key (announced in the DHT); A, which imported
// nothing, mounts #find at /net/find and lists /net/find/projects/x
// name by name; with the node it reached killed, the next walk after
// the cache's negative time finds the other holder; /projects is a
// directory (parents are announced too); an unknown path is not found.
func TestFindOnWalk(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 3)
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	holders := map[string]*member{}
	for _, m := range []*member{b, c} {
		share := filepath.Join(shortTemp(t), "x")
		os.Mkdir(share, 0700)
		os.WriteFile(filepath.Join(share, "readme"), []byte("from "+m.key+"\n"), 0600)
		if err := m.ctl("/ns/ctl", "mount -c '#host' /projects/x "+share); err != nil {
			t.Fatal(err)
		}
		if err := m.ctl("/ns/ctl", "export /projects/x ro to *"); err != nil {
			t.Fatal(err)
		}
		holders[m.key] = m
	}
	// Both have announced the path: A's DHT finds two holders.
	testutil.WaitFor(t, "two holders of /projects/x in the DHT", func() bool {
		out, err := a.run("find /projects/x\n", "9p", "rdwr", "/dht/ctl")
		return err == nil && strings.Count(out, "tcp!") >= 2
	})
	if err := a.ctl("/ns/ctl", "mount '#find' /net/find"); err != nil {
		t.Fatal(err)
	}
	// ls, through the node's 9p command: a walk of several names.
	ls, err := a.run("", "9p", "ls", "/net/find/projects/x")
	if err != nil || !strings.Contains(ls, "readme") {
		t.Fatalf("ls /net/find/projects/x: %q %v\n%s", ls, err, a.logs)
	}
	first := strings.TrimSpace(strings.TrimPrefix(a.read("/net/find/projects/x/readme"), "from "))
	m := holders[first]
	if m == nil {
		t.Fatalf("readme names %q, neither B nor C", first)
	}
	// Read-only, as exported.
	if _, err := a.run("no\n", "9p", "write", "/net/find/projects/x/readme"); err == nil {
		t.Error("write through a read-only export worked")
	}
	// The holder A reached dies; A finds the other one (the cached
	// import fails, is forgotten, and the next walk looks again).
	m.kill()
	testutil.WaitFor(t, "the other holder", func() bool {
		out, err := a.run("", "9p", "read", "/net/find/projects/x/readme")
		return err == nil && strings.TrimSpace(out) != "" && !strings.Contains(out, first)
	})
	// /projects, a parent of the exports, is a directory; a name no
	// node holds and nothing is announced below is not found.
	if _, err := a.run("", "9p", "stat", "/net/find/projects"); err != nil {
		t.Errorf("stat /net/find/projects: %v", err)
	}
	if out, err := a.run("", "9p", "ls", "/net/find/nothing"); err == nil || !strings.Contains(err.Error()+out, "not found") {
		t.Errorf("ls of a path no one holds: %q %v", out, err)
	}
}
