package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"cheshire/dht"
	"cheshire/nodekey"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

// BenchmarkKeyToMount measures how long a node takes from a key alone to
// the mounted root of that node's export: a DHT lookup of the key's
// record in a swarm of 50 nodes on loopback, a TLS dial pinned to the
// key, a 9P attach and a walk. The anchor, in the same run, is the same
// import with the address known (no lookup). The target is under 200 ms.
// Run:
//
//	go test -run '^$' -bench KeyToMount -benchtime 50x ./importers/remote
func BenchmarkKeyToMount(b *testing.B) {
	const swarm = 50
	ctx := context.Background()
	var nodes []*dht.Node
	b.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
	})
	for i := range swarm {
		o := dht.Options{Listen: "127.0.0.1:0"}
		if i > 0 {
			o.Bootstrap = []string{nodes[0].Addr().String()}
		}
		n, err := dht.New(o)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for range 2 {
		for _, n := range nodes {
			n.Bootstrap(bctx)
		}
	}
	// B serves 9P over TLS and publishes its record from its own DHT
	// node, the 51st of the swarm.
	bid, err := nodekey.Load(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	bdht, err := dht.New(dht.Options{Listen: "127.0.0.1:0", Key: bid.Private, Bootstrap: []string{nodes[0].Addr().String()}})
	if err != nil {
		b.Fatal(err)
	}
	nodes = append(nodes, bdht)
	bdht.Bootstrap(bctx)
	cfg, _ := bid.ServerTLS()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &styx.Server{Attacher: tmp.New("b")}
	go srv.Serve(ctx, tls.NewListener(l, cfg))
	b.Cleanup(func() { srv.Close() })
	addr := fmt.Sprintf("tls!127.0.0.1!%d", l.Addr().(*net.TCPAddr).Port)
	value, _, err := Record{Addrs: []string{addr}}.Encode(dht.MaxValue)
	if err != nil {
		b.Fatal(err)
	}
	stored, err := bdht.Publish(bctx, value)
	if err != nil {
		b.Fatal(err)
	}
	// A looks up through its own DHT node, in the swarm like the others.
	adht := nodes[swarm/2]
	aid, _ := nodekey.Load(b.TempDir())
	byDHT := func(ctx context.Context, key ed25519.PublicKey) ([]string, error) {
		r, err := adht.Lookup(ctx, key)
		if err != nil {
			return nil, err
		}
		rec, err := ParseRecord(r.Value)
		if err != nil {
			return nil, err
		}
		return rec.Addrs, nil
	}
	known := func(ctx context.Context, key ed25519.PublicKey) ([]string, error) { return []string{addr}, nil }
	mount := func(resolve func(context.Context, ed25519.PublicKey) ([]string, error)) time.Duration {
		start := time.Now()
		im := New(Options{Resolve: resolve, Dial: TLSDialer(aid), Uname: "a"})
		r, err := im.Import(ctx, bid.Public, "", true)
		if err != nil {
			b.Fatal(err)
		}
		_, f, err := r.Walk(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		f.Clunk()
		r.Clunk()
		im.Close()
		return took
	}
	var viaDHT, direct time.Duration
	b.ResetTimer()
	for range b.N {
		viaDHT += mount(byDHT)
		direct += mount(known)
	}
	b.StopTimer()
	n := time.Duration(b.N)
	b.ReportMetric(float64((viaDHT/n).Microseconds())/1000, "ms-key-to-mount")
	b.ReportMetric(float64((direct/n).Microseconds())/1000, "ms-by-address")
	b.ReportMetric(float64(viaDHT)/float64(direct), "ratio")
	b.ReportMetric(float64(stored), "nodes-storing")
}
