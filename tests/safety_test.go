package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
