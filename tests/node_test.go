package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeIdentityAndSocket(t *testing.T) {
	dir := shortTemp(t)
	n := startNode(t, dir)
	fi, err := os.Stat(n.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	ki, err := os.Stat(filepath.Join(dir, "identity.pem"))
	if err != nil || ki.Mode().Perm() != 0600 {
		t.Errorf("identity key: %v %v", ki, err)
	}
	id, err := n.run("", "9p", "read", "/node/id")
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(id)) != 52 {
		t.Errorf("/node/id = %q, want a 52-character key", id)
	}
	// A second node on the same directory is refused, clearly.
	out, err := exec.Command(binary(t), "serve", "--dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another cheshire node is running") {
		t.Errorf("second node: %v\n%s", err, out)
	}
	// The key survives a restart.
	n.stop()
	n2 := startNode(t, dir)
	id2, err := n2.run("", "9p", "read", "/node/id")
	if err != nil || id2 != id {
		t.Errorf("id after restart %q (%v), want %q", id2, err, id)
	}
}

func TestNamespaceCtl(t *testing.T) {
	dir := shortTemp(t)
	n := startNode(t, dir)
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := n.run(stdin, args...)
		if err != nil {
			t.Fatalf("cheshire %v: %v", args, err)
		}
		return out
	}
	nsText := must("", "9p", "read", "/ns/ns")
	for _, want := range []string{"mount '#node' /node", "mount -c '#tmp' /tmp"} {
		if !strings.Contains(nsText, want) {
			t.Errorf("/ns/ns lacks %q:\n%s", want, nsText)
		}
	}
	must("hello\n", "9p", "write", "/tmp/greeting")
	_, err := n.run("", "9p", "create", "/tmp/greeting")
	if err == nil || !strings.Contains(err.Error(), "file already exists") {
		t.Errorf("create existing: %v", err)
	}
	must("bind /tmp /n/t\n", "9p", "write", "/ns/ctl")
	if got := must("", "9p", "read", "/n/t/greeting"); got != "hello\n" {
		t.Errorf("through bind: %q", got)
	}
	// A bad ctl line is refused with a message naming it, and changes nothing.
	_, err = n.run("frob /a /b\n", "9p", "write", "/ns/ctl")
	if err == nil || !strings.Contains(err.Error(), `unknown control message "frob /a /b"`) {
		t.Errorf("bad verb: %v", err)
	}
	_, err = n.run("bind /nonexistent /n/x\n", "9p", "write", "/ns/ctl")
	if err == nil || !strings.Contains(err.Error(), "file not found") {
		t.Errorf("bind of missing path: %v", err)
	}
	// The namespace survives a restart.
	n.stop()
	n2 := startNode(t, dir)
	if got, _ := n2.run("", "9p", "read", "/ns/ns"); !strings.Contains(got, "bind /tmp /n/t") {
		t.Errorf("namespace after restart:\n%s", got)
	}
	// A host directory mounted through ctl.
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f.txt"), []byte("from the host\n"), 0644)
	if _, err := n2.run("mount '#host.ro' /n/h "+host+"\n", "9p", "write", "/ns/ctl"); err != nil {
		t.Fatal(err)
	}
	if got, _ := n2.run("", "9p", "read", "/n/h/f.txt"); got != "from the host\n" {
		t.Errorf("host file: %q", got)
	}
	if _, err := n2.run("x", "9p", "write", "/n/h/f.txt"); err == nil {
		t.Errorf("write to read-only export succeeded")
	}
	if got, _ := n2.run("", "9p", "ls", "/n/h"); got != "f.txt\n" {
		t.Errorf("ls host: %q", got)
	}
}
