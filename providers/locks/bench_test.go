package locks

import (
	"testing"

	"cheshire/internal/testutil"
)

// BenchmarkLockRoundTrip: acquire and release of one lock, one after
// the other, on a 3-node group over loopback TLS, from the leader and
// from a follower (which forwards both to the leader).
func BenchmarkLockRoundTrip(b *testing.B) {
	ctx := b.Context()
	nodes := []*testNode{startNode(b, 0), startNode(b, 0), startNode(b, 0)}
	if err := nodes[0].g.Bootstrap(ctx); err != nil {
		b.Fatal(err)
	}
	testutil.WaitFor(b, "a leader", nodes[0].g.IsLeader)
	for _, n := range nodes[1:] {
		if err := nodes[0].g.AddVoter(ctx, n.g.ID(), n.g.Addr(), true); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		n    *testNode
	}{{"leader", nodes[0]}, {"follower", nodes[1]}} {
		b.Run(bc.name, func(b *testing.B) {
			owner := bc.n.l.newOwner()
			for b.Loop() {
				if _, err := bc.n.l.Acquire(ctx, "bench", owner, true); err != nil {
					b.Fatal(err)
				}
				if err := bc.n.l.Release("bench", owner); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
