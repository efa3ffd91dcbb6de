package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"cheshire/plan9"
)

// TestHostIsTheOwners: #host and #host.ro are the node owner's alone,
// except below a path the owner grants; the data dir is never served.
func TestHostIsTheOwners(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t))
	pub := t.TempDir()
	os.MkdirAll(filepath.Join(pub, "sub"), 0755)
	os.WriteFile(filepath.Join(pub, "sub", "f"), []byte("granted\n"), 0644)
	as := func(user, stdin string, args ...string) (string, error) {
		return n.run(stdin, append([]string{"9p", "-u", user}, args...)...)
	}
	mustFail := func(what, want string, out string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q, %v; want an error with %q", what, out, err, want)
		}
	}
	for _, spec := range []string{"#host", "#host.ro"} {
		out, err := as("mallory", "mount -c '"+spec+"' /n/root /\n", "write", "/ns/ctl")
		mustFail("mallory mounts "+spec+" /", "permission denied", out, err)
	}
	// The owner may, but not the data dir, nor see it from above.
	if out, err := n.run("mount '#host.ro' /n/p "+pub+"\n", "9p", "write", "/ns/ctl"); err != nil {
		t.Fatalf("owner mounts %s: %v %s", pub, err, out)
	}
	out, err := n.run("mount '#host.ro' /n/d "+n.dir+"\n", "9p", "write", "/ns/ctl")
	mustFail("owner mounts the data dir", "data directory", out, err)
	if _, err := n.run("mount '#host.ro' /n/up "+filepath.Dir(n.dir)+"\n", "9p", "write", "/ns/ctl"); err != nil {
		t.Fatal(err)
	}
	if ls, err := n.run("", "9p", "ls", "/n/up"); err != nil || strings.Contains(ls, filepath.Base(n.dir)) {
		t.Errorf("data dir listed from its parent: %v\n%s", err, ls)
	}
	out, err = n.run("", "9p", "read", "/n/up/"+filepath.Base(n.dir)+"/ca/root.key")
	mustFail("read root.key from above", "not found", out, err)

	// A grant lets mallory in below it, read-only, and nowhere else.
	if out, err := n.run("grant "+pub+" ro to mallory\n", "9p", "write", "/modules/host/config"); err != nil {
		t.Fatalf("grant: %v %s", err, out)
	}
	if out, err := as("mallory", "mount '#host' /n/p "+filepath.Join(pub, "sub")+"\n", "write", "/ns/ctl"); err != nil {
		t.Fatalf("granted mount: %v %s", err, out)
	}
	if got, err := as("mallory", "", "read", "/n/p/f"); err != nil || got != "granted\n" {
		t.Errorf("read through the grant: %q %v", got, err)
	}
	out, err = as("mallory", "changed\n", "write", "/n/p/f")
	mustFail("write through a ro grant", "Read-only", out, err)
	out, err = as("mallory", "mount '#host' /n/q "+filepath.Dir(pub)+"\n", "write", "/ns/ctl")
	mustFail("mallory mounts above the grant", "permission denied", out, err)
	out, err = n.run("grant relative to mallory\n", "9p", "write", "/modules/host/config")
	mustFail("bad grant", "grant", out, err)
}

// TestExposeDataDir: with --expose-data-dir the owner reaches the data
// dir through #host; a user granted the path above it still does not.
func TestExposeDataDir(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t), "--expose-data-dir")
	if out, err := n.run("mount '#host.ro' /n/d "+n.dir+"\n", "9p", "write", "/ns/ctl"); err != nil {
		t.Fatalf("owner mounts the data dir: %v %s", err, out)
	}
	if got, err := n.run("", "9p", "read", "/n/d/ca/root.pem"); err != nil || !strings.Contains(got, "BEGIN CERTIFICATE") {
		t.Errorf("owner reads ca/root.pem: %q %v", got, err)
	}
	up := filepath.Dir(n.dir)
	if out, err := n.run("grant "+up+" to mallory\n", "9p", "write", "/modules/host.ro/config"); err != nil {
		t.Fatalf("grant: %v %s", err, out)
	}
	if out, err := n.run("mount '#host.ro' /n/d "+n.dir+"\n", "9p", "-u", "mallory", "write", "/ns/ctl"); err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Errorf("mallory mounts the data dir: %q %v", out, err)
	}
	if out, err := n.run("mount '#host.ro' /n/up "+up+"\n", "9p", "-u", "mallory", "write", "/ns/ctl"); err != nil {
		t.Fatalf("mallory mounts the granted parent: %v %s", err, out)
	}
	if out, err := n.run("", "9p", "-u", "mallory", "read", "/n/up/"+filepath.Base(n.dir)+"/identity.pem"); err == nil {
		t.Errorf("mallory read the node's key through the parent: %q", out)
	}
}

// TestNinepWriteTruncates: `cheshire 9p write` replaces the file, as
// plan9port's 9p write does; shorter text leaves no old tail.
func TestNinepWriteTruncates(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t))
	for _, text := range []string{"a long line of text\n", "short\n"} {
		if out, err := n.run(text, "9p", "write", "/tmp/f"); err != nil {
			t.Fatalf("write: %v %s", err, out)
		}
	}
	if got, err := n.run("", "9p", "read", "/tmp/f"); err != nil || got != "short\n" {
		t.Errorf("after two writes: %q %v", got, err)
	}
}

// TestNamespaceFileSurvivesKill: kill -9 in the middle of a storm of
// concurrent /ns/ctl writes, again and again; after each restart the
// namespace file parses and /ns is there.
func TestNamespaceFileSurvivesKill(t *testing.T) {
	t.Parallel()
	dir := shortTemp(t)
	const rounds, writers = 50, 4
	for round := 0; round < rounds; round++ {
		n := startNode(t, dir)
		var wg sync.WaitGroup
		started := make(chan struct{}, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					line := fmt.Sprintf("bind /tmp /n/w%d\nbind -a /node /n/w%d\n", w, w)
					if _, err := n.run(line, "9p", "write", "/ns/ctl"); err != nil {
						return // the node was killed
					}
					if i == 2 {
						started <- struct{}{}
					}
				}
			}()
		}
		for w := 0; w < writers; w++ {
			<-started // every writer has saved a few times; the storm is on
		}
		n.cmd.Process.Kill()
		n.cmd.Wait()
		wg.Wait()
		data, err := os.ReadFile(filepath.Join(dir, "ns", "users", userName(t)))
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, err := plan9.ParseNS(bytes.NewReader(data)); err != nil || !strings.Contains(string(data), "/ns") {
			t.Fatalf("round %d: namespace file %v:\n%s", round, err, data)
		}
	}
	n := startNode(t, dir)
	if ls, err := n.run("", "9p", "ls", "/ns"); err != nil || !strings.Contains(ls, "ctl") {
		t.Fatalf("after %d kills: ls /ns: %v %q", rounds, err, ls)
	}
}

// TestNamespaceCtlAllOrNone: the lines of one /ns/ctl write change the
// namespace together or not at all, and an unmount undone by a later bad
// line leaves the mount working.
func TestNamespaceCtlAllOrNone(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t))
	if out, err := n.run("hello\n", "9p", "write", "/tmp/f"); err != nil {
		t.Fatal(out, err)
	}
	before, err := n.run("", "9p", "read", "/ns/ns")
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.run("bind /tmp /n/a\nunmount /tmp\nbind /nonexistent /n/b\n", "9p", "write", "/ns/ctl")
	if err == nil || !strings.Contains(err.Error(), "line 3: bind") {
		t.Fatalf("bad third line: %q %v", out, err)
	}
	if after, _ := n.run("", "9p", "read", "/ns/ns"); after != before {
		t.Errorf("namespace changed by a refused write:\n%s\nwas\n%s", after, before)
	}
	if got, err := n.run("", "9p", "read", "/tmp/f"); err != nil || got != "hello\n" {
		t.Errorf("/tmp after an undone unmount: %q %v", got, err)
	}
	if _, err := n.run("bind /tmp /n/a\nbind -a /node /n/a\n", "9p", "write", "/ns/ctl"); err != nil {
		t.Fatal(err)
	}
	if ls, err := n.run("", "9p", "ls", "/n/a"); err != nil || !strings.Contains(ls, "f") || !strings.Contains(ls, "id") {
		t.Errorf("both lines applied: %q %v", ls, err)
	}
}
