package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cheshire/internal/testutil"
)

// cluster is N real node processes on loopback, each with its own data
// directory, 9P over TLS on a port of its own, and a DHT node; together
// they are a private DHT swarm, bootstrapped through the first node.
type cluster struct {
	t     testing.TB
	nodes []*member
	boot  string // HOST:PORT of the first node's DHT
}

// member is one node of a cluster.
type member struct {
	*node
	key  string   // z-base-32, its /node/id
	args []string // serve's arguments, to restart it alike
}

// startCluster starts n nodes, one after another.
func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for range n {
		c.add()
	}
	return c
}

// add starts one more node with extra serve arguments.
func (c *cluster) add(extra ...string) *member {
	c.t.Helper()
	args := append([]string{"--listen", "tls!127.0.0.1!0"}, extra...)
	if c.boot != "" {
		args = append(args, "--dht-bootstrap", c.boot)
	}
	m := &member{node: startNode(c.t, shortTemp(c.t), args...), args: args}
	m.key = strings.TrimSpace(m.read("/node/id"))
	if c.boot == "" {
		c.boot = m.dhtAddr()
	}
	c.nodes = append(c.nodes, m)
	return m
}

// read reads a file of m's namespace, failing the test on error.
func (m *member) read(p string) string {
	m.t.Helper()
	out, err := m.run("", "9p", "read", p)
	if err != nil {
		m.t.Fatalf("read %s: %v", p, err)
	}
	return out
}

// ctl writes line to a ctl file of m's namespace.
func (m *member) ctl(file, line string) error {
	_, err := m.run(line+"\n", "9p", "write", file)
	return err
}

// status returns a field of m's /dht/status.
func (m *member) status(field string) string {
	for _, l := range strings.Split(m.read("/dht/status"), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == field {
			return v
		}
	}
	return ""
}

// dhtAddr is the HOST:PORT of m's DHT node.
func (m *member) dhtAddr() string {
	l := strings.TrimPrefix(m.status("listen"), "udp!")
	i := strings.LastIndex(l, "!")
	if i < 0 {
		m.t.Fatalf("no listen line in /dht/status")
	}
	return l[:i] + ":" + l[i+1:]
}

// tlsAddr is n's 9P-over-TLS dial string.
func (n *node) tlsAddr() string {
	n.t.Helper()
	out, err := n.run("", "9p", "read", "/node/addrs")
	if err != nil {
		n.t.Fatal(err)
	}
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "tls!") {
			return f
		}
	}
	n.t.Fatalf("no tls address in /node/addrs: %q", out)
	return ""
}

// kill ends m with SIGKILL: nothing is shut down cleanly.
func (m *member) kill() {
	m.cmd.Process.Signal(syscall.SIGKILL)
	m.cmd.Wait()
}

// partition cuts m off: SIGSTOP, so that its sockets stay open and
// connections to it are accepted by the kernel but nothing answers, as
// when the network between it and the others drops everything. heal
// ends it.
func (m *member) partition() { m.cmd.Process.Signal(syscall.SIGSTOP) }
func (m *member) heal()      { m.cmd.Process.Signal(syscall.SIGCONT) }

// restart starts m again on its data directory (on new ports: they are
// chosen afresh).
func (m *member) restart() {
	m.t.Helper()
	m.node = startNode(m.t, m.dir, m.args...)
}

// published waits until m's record is stored by at least want nodes.
func (m *member) published(want int) {
	m.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var stored int
		fmt.Sscan(m.status("stored"), &stored)
		if stored >= want {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("record of %s stored by %d nodes, want %d; status:\n%s", m.key, stored, want, m.read("/dht/status"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCluster: 20 nodes bootstrap into one DHT swarm; node A imports
// node B by key alone and reads and writes B's export; an unexported
// path and an unknown key are refused; a partition between A and C
// makes A's operations on C fail, not hang; B killed makes A's
// operations fail fast; B restarted (on other ports) is found again by A; 300
// imports in one namespace.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 nodes")
	}
	start := time.Now()
	cl := startCluster(t, 20)
	t.Logf("20 nodes started in %v", time.Since(start))
	a, b := cl.nodes[15], cl.nodes[7]
	for _, m := range cl.nodes {
		var nodes int
		fmt.Sscan(m.status("nodes"), &nodes)
		if nodes == 0 {
			t.Errorf("node %s knows no DHT nodes", m.key)
		}
	}

	// B exports a host directory, mounted at /pub, to every key.
	share := filepath.Join(shortTemp(t), "share") // not in B's data dir, which #host never serves
	os.Mkdir(share, 0700)
	os.WriteFile(filepath.Join(share, "readme"), []byte("from b\n"), 0600)
	if err := b.ctl("/ns/ctl", "mount -c '#host' /pub "+share); err != nil {
		t.Fatal(err)
	}
	if err := b.ctl("/ns/ctl", "export /pub rw to *"); err != nil {
		t.Fatal(err)
	}
	b.published(3)
	// The record holds B's address and export.
	if _, err := a.run("lookup "+b.key+"\n", "9p", "write", "/dht/ctl"); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	rec := a.read("/dht/records/" + b.key)
	if !strings.Contains(rec, b.tlsAddr()) || !strings.Contains(rec, "export /pub") {
		t.Errorf("B's record as A sees it:\n%s", rec)
	}

	// A imports B by key alone.
	t0 := time.Now()
	out, err := a.run("", "import", b.key, "/n/b")
	if err != nil {
		t.Fatalf("import: %v\n%s", err, a.logs)
	}
	t.Logf("import by key took %v (a process, a DHT lookup, a TLS dial)", time.Since(t0))
	if strings.TrimSpace(out) != "/n/b" {
		t.Errorf("import printed %q", out)
	}
	if got := a.read("/n/b/pub/readme"); got != "from b\n" {
		t.Errorf("A reads B's export: %q", got)
	}
	if _, err := a.run("from a\n", "9p", "write", "/n/b/pub/note"); err != nil {
		t.Fatalf("A writes into B's export: %v", err)
	}
	if got := b.read("/pub/note"); got != "from a\n" {
		t.Errorf("B's /pub/note = %q", got)
	}
	if got := a.read("/ns/ns"); !strings.Contains(got, "import "+b.key+" /n/b") {
		t.Errorf("A's namespace does not record the import:\n%s", got)
	}
	if got := a.read("/ns/imports"); !strings.Contains(got, "state up") {
		t.Errorf("/ns/imports: %q", got)
	}
	// Only the export is there, and a tree of it can be imported alone.
	if _, err := a.run("", "9p", "read", "/n/b/node/id"); err == nil {
		t.Error("A reads B's /node/id, which is not exported")
	}
	if err := a.ctl("/ns/ctl", "import "+b.key+" /pub /n/bpub"); err != nil {
		t.Fatal(err)
	}
	if got := a.read("/n/bpub/readme"); got != "from b\n" {
		t.Errorf("/n/bpub/readme = %q", got)
	}
	if err := a.ctl("/ns/ctl", "import "+b.key+" /node /n/bnode"); err == nil || !strings.Contains(err.Error(), "file not found") {
		t.Errorf("import of an unexported path: %v, want file not found", err)
	}
	unknown := "yb" + b.key[2:] // another, valid-looking key
	if _, err := a.run("", "import", unknown, "/n/u"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("import of an unknown key: %v", err)
	}

	// C cut off by a partition: A's operations fail once the heartbeat
	// misses (2 s, then 3 s without an answer), and work again after.
	c := cl.nodes[3]
	c.run("", "9p", "create", "/tmp/pub/")
	if err := c.ctl("/ns/ctl", "export /tmp/pub rw to *"); err != nil {
		t.Fatal(err)
	}
	c.published(1)
	if _, err := a.run("", "import", c.key, "/n/c"); err != nil {
		t.Fatal(err)
	}
	c.partition()
	t0 = time.Now()
	_, err = a.run("", "9p", "ls", "/n/c/tmp/pub")
	took := time.Since(t0)
	c.heal()
	if err == nil || !strings.Contains(err.Error(), "remote node unreachable") {
		t.Errorf("ls across a partition: %v", err)
	}
	t.Logf("ls across a partition failed after %v: %v", took, err)
	testutil.WaitFor(t, "A to reach C after the partition", func() bool {
		_, err := a.run("", "9p", "ls", "/n/c/tmp/pub")
		return err == nil
	})

	// B killed: A's operations fail fast.
	b.kill()
	for range 3 {
		t0 = time.Now()
		_, err = a.run("", "9p", "read", "/n/b/pub/readme")
		took = time.Since(t0)
		if err == nil {
			t.Fatal("read from a killed node succeeded")
		}
		if strings.Contains(err.Error(), "remote node unreachable") {
			break
		}
	}
	if !strings.Contains(err.Error(), "remote node unreachable") {
		t.Fatalf("read from a killed node: %v", err)
	}
	t.Logf("read from the killed node failed in %v: %v", took, err)
	if took > 5*time.Second {
		t.Errorf("read from a killed node hung for %v", took)
	}

	// B restarted, on other ports: A finds it again through the DHT.
	b.restart()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := a.run("", "9p", "read", "/n/b/pub/readme")
		if err == nil && out == "from b\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A did not reach B again: %v\nA's imports:\n%s\nA's log:\n%s", err, a.read("/ns/imports"), a.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := a.read("/ns/imports"); !strings.Contains(got, b.tlsAddr()) {
		t.Errorf("A's imports do not show B's new address %s:\n%s", b.tlsAddr(), got)
	}

	// 300 imports into one namespace: every other node's export, many times.
	var lines strings.Builder
	for i := range 300 {
		m, p := cl.nodes[i%len(cl.nodes)], "/tmp/pub"
		if m == a || m == b {
			m, p = b, "/pub"
		}
		fmt.Fprintf(&lines, "import %s %s /n/many/%d\n", m.key, p, i)
	}
	for _, m := range cl.nodes {
		if m != a && m != b {
			m.run("", "9p", "create", "/tmp/pub/")
			if err := m.ctl("/ns/ctl", "export /tmp/pub ro to *"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, m := range cl.nodes {
		if m != a {
			m.published(1)
		}
	}
	t0 = time.Now()
	if _, err := a.run(lines.String(), "9p", "write", "-l", "/ns/ctl"); err != nil {
		t.Fatalf("300 imports: %v", err)
	}
	t.Logf("300 imports (19 nodes) through /ns/ctl took %v", time.Since(t0))
	if n := strings.Count(a.read("/ns/imports"), "\n"); n != 303 {
		t.Errorf("/ns/imports has %d lines, want 303", n)
	}
	// They come back after A restarts, from its namespace file.
	a.stop()
	a.restart()
	t0 = time.Now()
	root := a.client(userName(t))
	ctx := t.Context()
	for i := range 300 {
		f, err := root.WalkPath(ctx, fmt.Sprintf("/n/many/%d", i))
		if err != nil {
			t.Fatalf("after restart, /n/many/%d: %v", i, err)
		}
		if _, err := f.Stat(ctx); err != nil {
			t.Fatalf("after restart, stat /n/many/%d: %v", i, err)
		}
		f.Clunk(ctx)
	}
	t.Logf("after a restart, all 300 imports answered within %v", time.Since(t0))
	if n := strings.Count(a.read("/ns/ns"), "\nimport "); n < 300 {
		t.Errorf("after restart, %d imports in /ns/ns", n)
	}
}
