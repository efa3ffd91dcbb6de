package dht

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
)

func TestPeerStore(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newPeerStore(func() time.Time { return now }, time.Hour)
	var ih [20]byte
	ih[0] = 1
	// The library's store kept one of these (keyed by IP) and gave back
	// garbage; here the two ports are two peers, and IPv4-in-IPv6 is the
	// same peer as IPv4.
	s.AddPeer(ih, krpc.NodeAddr{IP: net.ParseIP("127.0.0.1").To4(), Port: 1})
	s.AddPeer(ih, krpc.NodeAddr{IP: net.ParseIP("127.0.0.1").To16(), Port: 1})
	s.AddPeer(ih, krpc.NodeAddr{IP: net.ParseIP("127.0.0.1"), Port: 2})
	s.AddPeer(ih, krpc.NodeAddr{IP: net.ParseIP("::1"), Port: 3})
	s.AddPeer(ih, krpc.NodeAddr{IP: net.ParseIP("0.0.0.0"), Port: 4})   // refused
	s.AddPeer(ih, krpc.NodeAddr{IP: net.IP{1, 2, 3}, Port: 5})          // refused
	s.AddPeer(ih, krpc.NodeAddr{IP: net.ParseIP("127.0.0.1"), Port: 0}) // refused
	got := make(map[netip.AddrPort]bool)
	for _, p := range s.GetPeers(ih) {
		ap, ok := addrPort(p)
		if !ok {
			t.Fatalf("bad peer %v", p)
		}
		got[ap] = true
	}
	want := []string{"127.0.0.1:1", "127.0.0.1:2", "[::1]:3"}
	if len(got) != len(want) {
		t.Errorf("peers %v, want %v", got, want)
	}
	for _, w := range want {
		if !got[netip.MustParseAddrPort(w)] {
			t.Errorf("peers %v lack %s", got, w)
		}
	}
	// Bounded per infohash, and expiring.
	for i := range maxPeersPerHash + 10 {
		s.AddPeer(ih, krpc.NodeAddr{IP: net.ParseIP("10.0.0.1"), Port: 100 + i})
	}
	if n := len(s.m[ih]); n != maxPeersPerHash {
		t.Errorf("%d peers kept, want %d", n, maxPeersPerHash)
	}
	if n := len(s.GetPeers(ih)); n != maxPeersReply {
		t.Errorf("%d peers given, want %d", n, maxPeersReply)
	}
	now = now.Add(2 * time.Hour)
	if p := s.GetPeers(ih); len(p) != 0 {
		t.Errorf("expired peers given: %v", p)
	}
	if len(s.m) != 0 {
		t.Errorf("expired infohash kept")
	}
}

func TestItemStore(t *testing.T) {
	s := newItemStore(3)
	var items []*bep44.Item
	for i := range 5 {
		it := &bep44.Item{V: []byte{byte(i)}}
		items = append(items, it)
		if err := s.Put(it); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.m) != 3 {
		t.Errorf("%d items kept, want 3", len(s.m))
	}
	for i, it := range items {
		_, err := s.Get(it.Target())
		if (i < 2) != (err != nil) {
			t.Errorf("item %d: %v", i, err)
		}
	}
}
