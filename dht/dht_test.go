package dht

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/int160"
)

// swarmSize is how many nodes the tests run.
const swarmSize = 10

// testLog is the tests' logger: silent unless DHT_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("DHT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// loopbackOnly is a socket that refuses to send anywhere but loopback,
// and reports it.
type loopbackOnly struct {
	net.PacketConn
	t *testing.T
}

func (c loopbackOnly) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || !ua.IP.IsLoopback() {
		c.t.Errorf("packet to %v: not loopback", addr)
		return 0, errors.New("test: not loopback")
	}
	return c.PacketConn.WriteTo(p, addr)
}

// watched makes every packet of a node pass the loopback check.
func watched(t *testing.T) func(net.PacketConn) net.PacketConn {
	return func(c net.PacketConn) net.PacketConn { return loopbackOnly{c, t} }
}

// newSwarm starts n nodes on 127.0.0.1, each but the first bootstrapping
// from the first, and waits (bounded) until every node knows a few others.
func newSwarm(t *testing.T, n int) []*Node {
	t.Helper()
	return newSwarmVia(t, n, "")
}

// newSwarmVia is newSwarm whose first node bootstraps from via (HOST:PORT)
// if not empty.
func newSwarmVia(t *testing.T, n int, via string) []*Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var nodes []*Node
	t.Cleanup(func() {
		for _, nd := range nodes {
			if err := nd.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	for i := range n {
		opts := Options{Listen: "127.0.0.1:0", Key: newKey(t), Log: testLog(), wrapConn: watched(t),
			quietFirst: testQuiet, quietMax: testQuiet}
		if i > 0 {
			opts.Bootstrap = []string{nodes[0].Addr().String()}
		} else if via != "" {
			opts.Bootstrap = []string{via}
		}
		nd, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	// The first node knows the others only from their queries: its
	// table calls them good, and gives them out, once they answered it.
	// So: the others ask it, it asks them, and the others ask again.
	bootstrap := func(i int) {
		if err := nodes[i].Bootstrap(ctx); err != nil && i > 0 {
			t.Fatalf("bootstrap of node %d: %v", i, err)
		}
	}
	if via != "" {
		// While its table is empty: a traversal starts from the table
		// once it holds nodes, and via would never be asked.
		bootstrap(0)
	}
	for i := 1; i < n; i++ {
		bootstrap(i)
	}
	bootstrap(0)
	for i := 1; i < n; i++ {
		bootstrap(i)
	}
	want := min(n-1, 4)
	for _, nd := range nodes {
		for nd.Stats().Nodes < want {
			select {
			case <-ctx.Done():
				var b strings.Builder
				for _, x := range nodes {
					fmt.Fprintf(&b, "\n%v: %+v", x.Addr(), x.Peers())
				}
				t.Fatalf("node %v: %d nodes in its table, want %d; tables:%s", nd.Addr(), nd.Stats().Nodes, want, b.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nodes
}

// testQuiet is how long the nodes of test swarms leave out a node that
// timed out: on a loaded machine under -race every node is slow now and
// then, and a swarm of ten cannot spare one for QuietTTL. TestQuietNodes
// asks again well within it.
const testQuiet = 10 * time.Second

func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSwarm(t *testing.T) {
	base := runtime.NumGoroutine()
	nodes := newSwarm(t, swarmSize)
	t.Run("tables", func(t *testing.T) {
		for _, nd := range nodes {
			st := nd.Stats()
			if st.Nodes < 4 || st.GoodNodes < 1 {
				t.Errorf("node %v: %+v", nd.Addr(), st)
			}
			peers := nd.Peers()
			seen := make(map[netip.Addr]map[uint16]bool)
			for _, p := range peers {
				if !p.Addr.Addr().Is4() || !p.Addr.Addr().IsLoopback() {
					t.Errorf("peer %v: not unmapped loopback IPv4", p.Addr)
				}
				if seen[p.Addr.Addr()] == nil {
					seen[p.Addr.Addr()] = make(map[uint16]bool)
				}
				if seen[p.Addr.Addr()][p.Addr.Port()] {
					t.Errorf("peer %v listed twice", p.Addr)
				}
				seen[p.Addr.Addr()][p.Addr.Port()] = true
			}
		}
	})
	a, b := nodes[3], nodes[7]
	t.Run("publish and lookup", func(t *testing.T) {
		ctx := opCtx(t)
		stored, err := a.Publish(ctx, []byte("hello from a"))
		if err != nil {
			t.Fatal(err)
		}
		if stored < K/2 {
			t.Errorf("stored on %d nodes, want at least %d", stored, K/2)
		}
		r, err := b.Lookup(ctx, a.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Value) != "hello from a" || r.From < 1 {
			t.Errorf("lookup: %+v", r)
		}
		t.Logf("stored on %d, fetched from %d", stored, r.From)
	})
	t.Run("oversize", func(t *testing.T) {
		_, err := a.Publish(opCtx(t), make([]byte, MaxValue+1))
		if !errors.Is(err, ErrTooBig) {
			t.Errorf("publish of %d bytes: %v", MaxValue+1, err)
		}
		if _, err := a.Publish(opCtx(t), bytes.Repeat([]byte("x"), MaxValue)); err != nil {
			t.Errorf("publish of %d bytes: %v", MaxValue, err)
		}
	})
	t.Run("announce and find", func(t *testing.T) {
		ctx := opCtx(t)
		n, err := a.Announce(ctx, "/n/cheshire/music", 5640)
		if err != nil {
			t.Fatal(err)
		}
		if n < K/2 {
			t.Errorf("announce accepted by %d nodes", n)
		}
		want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 5640)
		var peers []netip.AddrPort
		for range 50 { // the store takes the announce in a goroutine
			peers, err = b.Find(ctx, "/n/cheshire/music")
			if err != nil {
				t.Fatal(err)
			}
			if len(peers) > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(peers) != 1 || peers[0] != want {
			t.Errorf("find: %v, want [%v]", peers, want)
		}
		none, err := b.Find(ctx, "/nowhere")
		if err != nil || len(none) != 0 {
			t.Errorf("find of unannounced path: %v, %v", none, err)
		}
	})
	t.Run("forged", func(t *testing.T) { testForged(t, nodes, a, b) })
	t.Run("stale", func(t *testing.T) { testStale(t, nodes, a, b) })
	t.Run("republish", func(t *testing.T) {
		ctx := opCtx(t)
		before := a.own()
		n, err := a.Republish(ctx)
		if err != nil || n < K/2 {
			t.Fatalf("republish: %d, %v", n, err)
		}
		if after := a.own(); after.seq != before.seq || after.stored != n {
			t.Errorf("republish changed seq %d to %d, stored %d", before.seq, after.seq, after.stored)
		}
		if _, err := b.Republish(ctx); !errors.Is(err, ErrNothing) {
			t.Errorf("republish with nothing published: %v", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		for _, nd := range nodes {
			if err := nd.Close(); err != nil {
				t.Error(err)
			}
		}
		base := base + 1 // this subtest's
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > base {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines after close, %d before:\n%s", g, base, firstLines(string(buf), 80))
		}
	})
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// closestTo returns the k nodes whose ids are closest to tg, but those
// of not.
func closestTo(nodes []*Node, tg [20]byte, k int, not ...*Node) []*Node {
	var out []*Node
	for _, nd := range nodes {
		if !slices.Contains(not, nd) {
			out = append(out, nd)
		}
	}
	dist := func(nd *Node) int160.T {
		return int160.Distance(int160.FromByteArray(nd.ID()), int160.FromByteArray(tg))
	}
	slices.SortFunc(out, func(x, y *Node) int { return dist(x).Cmp(dist(y)) })
	return out[:k]
}

// plant stores item in nd's BEP 44 store as if it had been put there,
// through the library's checks; then, if forge is set, replaces it with a
// copy changed by forge, which the checks do not see.
func plant(t *testing.T, nd *Node, item *bep44.Item, forge func(*bep44.Item)) {
	t.Helper()
	if err := nd.items.Del(item.Target()); err != nil {
		t.Fatal(err)
	}
	if err := bep44.NewWrapper(nd.items, ItemTTL).Put(item); err != nil {
		t.Fatalf("plant: %v", err)
	}
	if forge != nil {
		// A copy keeps the time the wrapper stamped on the item, which
		// is unexported; the stored item is never changed in place.
		forged := *item
		forge(&forged)
		if err := nd.items.Put(&forged); err != nil {
			t.Fatal(err)
		}
	}
}

// signed is a valid mutable item of value under key.
func signed(t *testing.T, key ed25519.PrivateKey, seq int64, value string) *bep44.Item {
	t.Helper()
	it, err := bep44.NewItem([]byte(value), nil, seq, 0, key)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

func testForged(t *testing.T, nodes []*Node, a, b *Node) {
	ctx := opCtx(t)
	// A key with only forged records: a changed value on one node, a
	// signature by another key on another.
	pk := newKey(t)
	pub := pk.Public().(ed25519.PublicKey)
	near := closestTo(nodes, target(pub), 2, b)
	plant(t, near[0], signed(t, pk, 5, "real"), func(it *bep44.Item) { it.V = []byte("evil") })
	other := newKey(t)
	plant(t, near[1], signed(t, pk, 6, "real"), func(it *bep44.Item) {
		copy(it.Sig[:], bep44.Sign(other, nil, it.Seq, []byte("4:real")))
	})
	before := b.Stats().Forged
	_, err := b.Lookup(ctx, pub)
	if !errors.Is(err, ErrForged) {
		t.Fatalf("lookup of forged records: %v", err)
	}
	if got := b.Stats().Forged - before; got != 2 {
		t.Errorf("forged count went up by %d, want 2", got)
	}
	t.Logf("refused: %v", err)

	// A forged record with a higher seq than a's real one loses to it.
	holder := closestTo(nodes, target(a.PublicKey()), 1, a, b)[0]
	if _, err := holder.items.Get(target(a.PublicKey())); err != nil {
		t.Fatalf("the node closest to a's key does not hold its record: %v", err)
	}
	real, err := b.Lookup(ctx, a.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	forged := signed(t, a.key, real.Seq+1000, "evil")
	plant(t, holder, forged, func(it *bep44.Item) { it.V = []byte("evil twin") })
	before = b.Stats().Forged
	r, err := b.Lookup(ctx, a.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != real.Seq || !bytes.Equal(r.Value, real.Value) {
		t.Errorf("lookup with a forged higher seq gave seq %d %q, want %d %q", r.Seq, r.Value, real.Seq, real.Value)
	}
	if got := b.Stats().Forged - before; got != 1 {
		t.Errorf("forged count went up by %d, want 1", got)
	}
	// Put the real record back for the tests that follow.
	plant(t, holder, signed(t, a.key, real.Seq, string(real.Value)), nil)
}

func testStale(t *testing.T, nodes []*Node, a, b *Node) {
	ctx := opCtx(t)
	seen, err := b.Lookup(ctx, a.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	// Every node forgets a's record and holds an older one, validly
	// signed: as after a rollback, or a replay of an old record.
	old := seen.Seq - 10
	for _, nd := range nodes {
		plant(t, nd, signed(t, a.key, old, "old news"), nil)
	}
	before := b.Stats().Stale
	_, err = b.Lookup(ctx, a.PublicKey())
	if !errors.Is(err, ErrStale) {
		t.Fatalf("lookup of an older record: %v", err)
	}
	if got := b.Stats().Stale - before; got != 1 {
		t.Errorf("stale count went up by %d, want 1", got)
	}
	t.Logf("refused: %v", err)
	// A node that never saw the newer one takes the older one.
	c := nodes[5]
	if r, err := c.Lookup(ctx, a.PublicKey()); err != nil || r.Seq != old {
		t.Errorf("fresh node: %+v, %v", r, err)
	}
	// a publishes again: its seq is above everything seen.
	if _, err := a.Publish(ctx, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	r, err := b.Lookup(ctx, a.PublicKey())
	if err != nil || string(r.Value) != "fresh" || r.Seq <= seen.Seq {
		t.Errorf("after republish: %+v, %v", r, err)
	}
}

func TestMaintainLoop(t *testing.T) {
	nodes := newSwarm(t, 4)
	n, err := New(Options{Listen: "127.0.0.1:0", Key: newKey(t), Log: testLog(), wrapConn: watched(t),
		Bootstrap:      []string{nodes[0].Addr().String()},
		republishEvery: 50 * time.Millisecond, reannounceEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := opCtx(t)
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(ctx, []byte("again and again")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Announce(ctx, "/loop", 0); err != nil {
		t.Fatal(err)
	}
	seq := n.own().seq
	for st := n.Stats(); st.Published < 3 || st.Announced < 3; st = n.Stats() {
		select {
		case <-ctx.Done():
			t.Fatalf("after %v: %+v", ctx.Err(), st)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if o := n.own(); o.seq != seq || o.stored == 0 {
		t.Errorf("republished seq %d (was %d), stored %d", o.seq, seq, o.stored)
	}
	// The implied port is the node's UDP port.
	peers, err := nodes[1].Find(ctx, "/loop")
	if err != nil || len(peers) != 1 || peers[0] != n.Addr() {
		t.Errorf("find: %v, %v; want [%v]", peers, err, n.Addr())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Lookup(ctx, nodes[0].PublicKey()); err == nil {
		t.Error("lookup after close succeeded")
	}
}

func TestLonely(t *testing.T) {
	// No bootstrap: the node sends nothing but to itself, and its
	// operations fail at once for want of nodes.
	n, err := New(Options{Listen: "127.0.0.1:0", wrapConn: watched(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if len(n.boot) != 0 {
		t.Errorf("bootstrap list %v", n.boot)
	}
	ctx := opCtx(t)
	if _, err := n.Publish(ctx, []byte("x")); !errors.Is(err, errNoNodes) {
		t.Errorf("publish: %v", err)
	}
	if _, err := n.Lookup(ctx, n.PublicKey()); !errors.Is(err, errNoNodes) {
		t.Errorf("lookup: %v", err)
	}
	if _, err := n.Find(ctx, "/x"); !errors.Is(err, errNoNodes) {
		t.Errorf("find: %v", err)
	}
	if _, err := n.Lookup(ctx, []byte("short")); err == nil {
		t.Error("lookup of a short key succeeded")
	}
	if _, err := n.Announce(ctx, "", 1); err == nil {
		t.Error("announce of an empty path succeeded")
	}
	if _, err := New(Options{Listen: "tcp!127.0.0.1!0"}); err == nil {
		t.Error("tcp listen accepted")
	}
	if _, err := New(Options{Listen: "127.0.0.1:0", Key: ed25519.PrivateKey("short")}); err == nil {
		t.Error("short key accepted")
	}
	if _, err := New(Options{Listen: "127.0.0.1:0", Bootstrap: []string{"nohost"}}); err == nil {
		t.Error("bootstrap without port accepted")
	}
}

// TestFindOwnStore: the node an announce was stored at finds it too,
// though a traversal asks only other nodes (with two nodes, the
// announcer itself holds nothing; a lookup of #find used to come back
// empty once the other holders were gone).
func TestFindOwnStore(t *testing.T) {
	t.Parallel()
	nodes := newSwarm(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := opCtx(t)
	if _, err := a.Announce(ctx, "/own", 5641); err != nil {
		t.Fatal(err)
	}
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 5641)
	testutil.WaitFor(t, "b to find a's announce", func() bool {
		peers, err := b.Find(ctx, "/own")
		return err == nil && len(peers) == 1 && peers[0] == want
	})
}
