package dht

import (
	"crypto/rand"
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// TestFloodSurvived: a node takes junk datagrams, malformed and
// well-formed queries for random targets, announces with bad tokens and
// puts with forged signatures, from many source ports, and goes on:
// records still publish and resolve through it, its peer store stays
// within its caps and no goroutines pile up.
func TestFloodSurvived(t *testing.T) {
	t.Parallel()
	nodes := newSwarm(t, 5)
	victim := nodes[0]
	base := runtime.NumGoroutine()
	var socks []net.PacketConn
	for range 8 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		socks = append(socks, pc)
	}
	to := net.UDPAddrFromAddrPort(victim.Addr())
	send := func(i int, b []byte) {
		socks[i%len(socks)].WriteTo(b, to) // loss is the flood's problem
	}
	rnd := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	var id krpc.ID
	copy(id[:], rnd(20))
	query := func(i int, q string, a krpc.MsgArgs) {
		a.ID = id
		b, err := bencode.Marshal(krpc.Msg{T: fmt.Sprint(i), Y: "q", Q: q, A: &a})
		if err != nil {
			t.Fatal(err)
		}
		send(i, b)
	}
	for i := range 6000 {
		switch i % 6 {
		case 0:
			send(i, rnd(1+i%1400)) // junk
		case 1:
			send(i, []byte(fmt.Sprintf("d1:t%d:%s1:y1:q1:q%d:%se", 2, "xx", 4, "ping"))) // no arguments
		case 2:
			var tg krpc.ID
			copy(tg[:], rnd(20))
			query(i, "get_peers", krpc.MsgArgs{InfoHash: tg})
		case 3:
			var tg krpc.ID
			copy(tg[:], rnd(20))
			query(i, "announce_peer", krpc.MsgArgs{InfoHash: tg, Port: new(int), Token: string(rnd(8))})
		case 4:
			var tg krpc.ID
			copy(tg[:], rnd(20))
			query(i, "get", krpc.MsgArgs{Target: tg})
		case 5:
			var k [32]byte
			var sig [64]byte
			copy(k[:], rnd(32))
			copy(sig[:], rnd(64))
			query(i, "put", krpc.MsgArgs{V: "evil", K: k, Sig: sig, Seq: new(int64), Token: string(rnd(8))})
		}
	}
	// Nothing of the flood was kept: bad tokens and forged signatures.
	victim.peers.mu.Lock()
	peers := len(victim.peers.m)
	victim.peers.mu.Unlock()
	victim.items.mu.Lock()
	items := len(victim.items.m)
	victim.items.mu.Unlock()
	if peers != 0 || items != 0 {
		t.Errorf("after the flood the node keeps %d infohashes of peers and %d items", peers, items)
	}
	// The swarm still works through the flooded node.
	if _, err := victim.Publish(opCtx(t), []byte("after the flood")); err != nil {
		t.Fatalf("publish from the flooded node: %v", err)
	}
	if r, err := nodes[3].Lookup(opCtx(t), victim.PublicKey()); err != nil || string(r.Value) != "after the flood" {
		t.Errorf("lookup of the flooded node's record: %+v, %v", r, err)
	}
	if n := runtime.NumGoroutine(); n > base+50 {
		t.Errorf("%d goroutines after the flood, %d before", n, base)
	}
}
