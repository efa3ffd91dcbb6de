package dht

import (
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
