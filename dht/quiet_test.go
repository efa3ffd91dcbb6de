package dht

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/types"
)

// TestQuietNodes: a node that died is waited for once, then left out of
// the traversals that follow, until it is heard from again.
func TestQuietNodes(t *testing.T) {
	nodes := newSwarm(t, 8)
	pub, dead, asker := nodes[1], nodes[2], nodes[5]
	if _, err := pub.Publish(opCtx(t), []byte("v")); err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr()
	dead.Close()
	t0 := time.Now()
	if _, err := asker.Lookup(opCtx(t), pub.PublicKey()); err != nil {
		t.Fatal(err)
	}
	first := time.Since(t0)
	if !asker.quiet.is(deadAddr, asker.now()) {
		t.Fatalf("the dead node %v is not remembered as quiet (first lookup %v)", deadAddr, first)
	}
	t0 = time.Now()
	if _, err := asker.Lookup(opCtx(t), pub.PublicKey()); err != nil {
		t.Fatal(err)
	}
	t.Logf("lookup with a dead node in the swarm: %v; the next, leaving it out: %v", first, time.Since(t0))
	if asker.nodeFilter(types.AddrMaybeId{Addr: krpc.NodeAddrPort{AddrPort: deadAddr}}) {
		t.Error("the quiet node passes the traversal's filter")
	}
	asker.quiet.heard(deadAddr)
	if asker.quiet.is(deadAddr, asker.now()) {
		t.Error("a node heard from is still quiet")
	}
	if asker.quiet.mark(deadAddr, asker.now().Add(-2*QuietTTL)); asker.quiet.is(deadAddr, asker.now()) {
		t.Error("a node quiet for longer than QuietTTL is still left out")
	}
}

// TestQuietGrows: one timeout leaves a node out for QuietFirst; each
// further timeout, not of the same burst, doubles that up to QuietTTL;
// being heard from forgets it all.
func TestQuietGrows(t *testing.T) {
	t.Parallel()
	q := newQuietNodes(0, 0)
	ap := netip.MustParseAddrPort("127.0.0.1:6881")
	t0 := time.Unix(1700000000, 0)
	q.mark(ap, t0)
	q.mark(ap, t0.Add(100*time.Millisecond)) // the same burst
	if !q.is(ap, t0.Add(QuietFirst)) || q.is(ap, t0.Add(QuietFirst+time.Second)) {
		t.Errorf("after one timeout: not left out for exactly %v", QuietFirst)
	}
	at := t0.Add(QuietFirst + 2*time.Second)
	want := QuietFirst
	for range 10 {
		q.mark(ap, at)
		want = min(2*want, QuietTTL)
		if !q.is(ap, at.Add(want)) || q.is(ap, at.Add(want+time.Second)) {
			t.Fatalf("after a timeout at %v: not left out for exactly %v", at.Sub(t0), want)
		}
		at = at.Add(want + 2*time.Second)
	}
	q.heard(ap)
	q.mark(ap, at)
	if q.is(ap, at.Add(QuietFirst+time.Second)) {
		t.Errorf("after being heard from, a timeout left it out longer than %v", QuietFirst)
	}
}

// TestQuietFile: the quiet nodes a node noted are still quiet in the
// node that follows it on the same QuietFile; marks that ran out, and
// lines that cannot be read, are left out.
func TestQuietFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "dht", "quiet")
	n, err := New(Options{Listen: "127.0.0.1:0", QuietFile: file})
	if err != nil {
		t.Fatal(err)
	}
	dead := netip.MustParseAddrPort("127.0.0.1:9")
	n.quiet.mark(dead, n.now())
	n.quiet.m[netip.MustParseAddrPort("127.0.0.1:10")] = quiet{last: n.now().Add(-time.Hour), ttl: time.Second} // ran out
	n.Close()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(data), "\n"); got != 1 || !strings.HasPrefix(string(data), "127.0.0.1:9 ") {
		t.Fatalf("quiet file:\n%s", data)
	}
	os.WriteFile(file, append(data, "garbage\n127.0.0.1:11 x 5\n::1 1 1\n"...), 0o600)
	m, err := New(Options{Listen: "127.0.0.1:0", QuietFile: file})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.quiet.is(dead, m.now()) || m.quiet.len(m.now()) != 1 {
		t.Fatalf("after a restart: %d quiet, %v quiet: %v", m.quiet.len(m.now()), dead, m.quiet.is(dead, m.now()))
	}
}
