package tests

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNineOverTLS: node B listens for 9P over mutual TLS; node A, whose
// key B lists as user alice, reads and writes B's namespace as alice; a
// node B does not know is refused with "permission denied"; a client
// pinning the wrong key refuses B; garbage on the TLS port changes
// nothing.
func TestNineOverTLS(t *testing.T) {
	a := startNode(t, shortTemp(t))
	b := startNode(t, shortTemp(t), "--listen", "tls!127.0.0.1!0")
	c := startNode(t, shortTemp(t))
	aKey := strings.TrimSpace(must9p(t, a, "read", "/node/id"))
	bKey := strings.TrimSpace(must9p(t, b, "read", "/node/id"))
	tlsAddr := b.tlsAddr()
	os.WriteFile(filepath.Join(b.dir, "users"), []byte("# remote users\nalice "+aKey+"\n"), 0600)

	remote := func(n *node, key string, args ...string) (string, error) {
		return n.run("", append([]string{"9p", "-a", tlsAddr, "-k", key}, args...)...)
	}
	if got, err := remote(a, bKey, "read", "/node/id"); err != nil || strings.TrimSpace(got) != bKey {
		t.Fatalf("A reads B's /node/id over TLS: %q, %v", got, err)
	}
	if _, err := a.run("hello from alice\n", "9p", "-a", tlsAddr, "-k", bKey, "write", "/tmp/note"); err != nil {
		t.Fatalf("A writes to B: %v", err)
	}
	if got := must9p(t, b, "read", "/tmp/note"); got != "hello from alice\n" {
		t.Errorf("B's /tmp/note = %q", got)
	}
	if got, err := remote(a, bKey, "stat", "/tmp/note"); err != nil || !strings.Contains(got, "alice") {
		t.Errorf("the file's owner should be alice: %q, %v", got, err)
	}
	if _, err := remote(c, bKey, "read", "/node/id"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unknown node C: %v, want permission denied", err)
	}
	// Exports: C sees only what B exports to it, read-only if so.
	cKey := strings.TrimSpace(must9p(t, c, "read", "/node/id"))
	must9p(t, b, "create", "/tmp/pub/")
	b.run("public\n", "9p", "write", "/tmp/pub/readme")
	if _, err := b.run("export /tmp/pub ro to "+cKey+"\n", "9p", "write", "/ns/ctl"); err != nil {
		t.Fatalf("export: %v", err)
	}
	if got := must9p(t, b, "read", "/ns/exports"); !strings.Contains(got, "/tmp/pub ro "+cKey) {
		t.Errorf("/ns/exports: %q", got)
	}
	if got, err := remote(c, bKey, "read", "/tmp/pub/readme"); err != nil || got != "public\n" {
		t.Errorf("C reads the export: %q, %v\n%s", got, err, b.logs)
	}
	if _, err := remote(c, bKey, "read", "/node/id"); err == nil {
		t.Error("C reads /node/id, which is not exported")
	}
	if _, err := c.run("x\n", "9p", "-a", tlsAddr, "-k", bKey, "write", "/tmp/pub/readme"); err == nil {
		t.Error("C wrote a read-only export")
	}
	// The view holds the export and the empty /n and /mnt of any namespace.
	if got, err := remote(c, bKey, "ls", "/"); err != nil || strings.Join(slices.Sorted(slices.Values(strings.Fields(got))), " ") != "mnt n tmp" {
		t.Errorf("C's view of /: %q, %v", got, err)
	}
	if got, err := remote(c, bKey, "ls", "/tmp"); err != nil || strings.TrimSpace(got) != "pub" {
		t.Errorf("C's view of /tmp: %q, %v", got, err)
	}
	// A local user cannot reach another's namespace through #export.
	if _, err := b.run("mount '#export' /n/x 'root!/'\n", "9p", "write", "/ns/ctl"); err == nil {
		t.Error("mount of #export from a local namespace succeeded")
	}
	if _, err := remote(a, aKey, "read", "/node/id"); err == nil || !strings.Contains(err.Error(), "not the expected") {
		t.Errorf("pinning the wrong key: %v", err)
	}
	g, err := net.DialTimeout("tcp", strings.ReplaceAll(strings.TrimPrefix(tlsAddr, "tls!"), "!", ":"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("\x13\x00\x00\x00d\xff\xff\xff\xff\x00\x00\x06\x009P2000"))
	g.Close()
	if got, err := remote(a, bKey, "read", "/node/id"); err != nil || strings.TrimSpace(got) != bKey {
		t.Errorf("after garbage: %q, %v", got, err)
	}
}

func must9p(t *testing.T, n *node, args ...string) string {
	t.Helper()
	out, err := n.run("", append([]string{"9p"}, args...)...)
	if err != nil {
		t.Fatalf("9p %v: %v", args, err)
	}
	return out
}
