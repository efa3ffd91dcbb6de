package dht

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	dhtlib "cheshire/dht"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newSwarm starts n nodes on 127.0.0.1, each but the first bootstrapping
// from the first, and waits (bounded) until every node knows a few
// others. (The library's tests check the swarm itself: see
// cheshire/dht's newSwarm.)
func newSwarm(t *testing.T, n int) []*dhtlib.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var nodes []*dhtlib.Node
	t.Cleanup(func() {
		for _, nd := range nodes {
			if err := nd.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	for i := range n {
		opts := dhtlib.Options{Listen: "127.0.0.1:0", Key: newKey(t)}
		if i > 0 {
			opts.Bootstrap = []string{nodes[0].Addr().String()}
		}
		nd, err := dhtlib.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	// The first node knows the others only from their queries; it asks
	// them once they asked it, and they ask again.
	for round := range 2 {
		for i := 1; i < n; i++ {
			if err := nodes[i].Bootstrap(ctx); err != nil {
				t.Fatalf("bootstrap of node %d: %v", i, err)
			}
		}
		if round == 0 {
			nodes[0].Bootstrap(ctx)
		}
	}
	want := min(n-1, 4)
	for _, nd := range nodes {
		for nd.Stats().Nodes < want {
			select {
			case <-ctx.Done():
				t.Fatalf("node %v: %d nodes in its table, want %d", nd.Addr(), nd.Stats().Nodes, want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nodes
}

func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}
