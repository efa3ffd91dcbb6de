package dht

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// Bounds of what other nodes can make this node keep.
const (
	maxPeersPerHash = 128  // peers kept for one infohash
	maxHashes       = 4096 // infohashes with peers
	maxPeersReply   = 64   // peers given in one get_peers reply
)

// peerStore keeps the peers announced to this node, keyed by infohash and
// address:port (the library's InMemory keys by IP alone and decodes its
// keys as addresses). IPv4-in-IPv6 addresses are unmapped, so an IPv4
// peer is kept once. Peers expire after ttl.
type peerStore struct {
	now func() time.Time
	ttl time.Duration

	mu sync.Mutex
	m  map[peer_store.InfoHash]map[netip.AddrPort]time.Time // guarded by mu: when announced
}

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore(now func() time.Time, ttl time.Duration) *peerStore {
	return &peerStore{now: now, ttl: ttl, m: make(map[peer_store.InfoHash]map[netip.AddrPort]time.Time)}
}

// AddPeer records that na announced ih.
func (s *peerStore) AddPeer(ih peer_store.InfoHash, na krpc.NodeAddr) {
	ap, ok := addrPort(na)
	if !ok || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	peers := s.m[ih]
	if peers == nil {
		if len(s.m) >= maxHashes {
			s.expireLocked(now)
			if len(s.m) >= maxHashes {
				return
			}
		}
		peers = make(map[netip.AddrPort]time.Time)
		s.m[ih] = peers
	}
	if _, ok := peers[ap]; !ok && len(peers) >= maxPeersPerHash {
		var oldest netip.AddrPort
		var ot time.Time
		for a, t := range peers {
			if ot.IsZero() || t.Before(ot) {
				oldest, ot = a, t
			}
		}
		delete(peers, oldest)
	}
	peers[ap] = now
}

// GetPeers returns the live peers of ih, the latest announced first.
func (s *peerStore) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	now := s.now()
	s.mu.Lock()
	type pt struct {
		ap netip.AddrPort
		t  time.Time
	}
	var live []pt
	for ap, t := range s.m[ih] {
		if now.Sub(t) > s.ttl {
			delete(s.m[ih], ap)
			continue
		}
		live = append(live, pt{ap, t})
	}
	if len(s.m[ih]) == 0 {
		delete(s.m, ih)
	}
	s.mu.Unlock()
	slices.SortFunc(live, func(a, b pt) int { return b.t.Compare(a.t) })
	if len(live) > maxPeersReply {
		live = live[:maxPeersReply]
	}
	out := make([]krpc.NodeAddr, 0, len(live))
	for _, p := range live {
		out = append(out, krpc.NodeAddr{IP: p.ap.Addr().AsSlice(), Port: int(p.ap.Port())})
	}
	return out
}

// expireLocked drops expired peers and empty infohashes.
func (s *peerStore) expireLocked(now time.Time) {
	for ih, peers := range s.m {
		for ap, t := range peers {
			if now.Sub(t) > s.ttl {
				delete(peers, ap)
			}
		}
		if len(peers) == 0 {
			delete(s.m, ih)
		}
	}
}

// itemStore is a bep44.Store of at most max items: when full, a new
// target replaces the item stored longest ago. The library's wrapper
// checks signatures and sequence numbers and expires items.
type itemStore struct {
	max int

	mu    sync.Mutex
	m     map[bep44.Target]*bep44.Item // guarded by mu
	added map[bep44.Target]uint64      // guarded by mu: order of arrival
	next  uint64                       // guarded by mu
}

var _ bep44.Store = (*itemStore)(nil)

func newItemStore(max int) *itemStore {
	return &itemStore{max: max, m: make(map[bep44.Target]*bep44.Item), added: make(map[bep44.Target]uint64)}
}

func (s *itemStore) Put(i *bep44.Item) error {
	t := i.Target()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[t]; !ok && len(s.m) >= s.max {
		var oldest bep44.Target
		first := true
		var on uint64
		for k, n := range s.added {
			if first || n < on {
				oldest, on, first = k, n, false
			}
		}
		delete(s.m, oldest)
		delete(s.added, oldest)
	}
	s.m[t] = i
	s.added[t] = s.next
	s.next++
	return nil
}

func (s *itemStore) Get(t bep44.Target) (*bep44.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.m[t]
	if !ok {
		return nil, bep44.ErrItemNotFound
	}
	return i, nil
}

func (s *itemStore) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, t)
	delete(s.added, t)
	return nil
}

// maxRecords is how many fetched records a node remembers.
const maxRecords = 1024

// maxAnnounced is how many paths a node keeps announcing.
const maxAnnounced = 256

// A Memory is what a node knows that may outlive it (a module's nodes,
// one after another, share one): the records fetched, the highest seq
// seen for each key, its own last record and announced paths, the counts
// and the state of its advertising.
type Memory struct {
	mu        sync.Mutex
	records   map[string]Record // guarded by mu: by key (z-base-32)
	seen      map[string]int64  // guarded by mu: highest valid seq seen by key
	own       *ownRecord        // guarded by mu: last published, nil if none
	announced map[string]int    // guarded by mu: path → port (0: implied)
	counts    Stats             // guarded by mu: the counters only
	advert    advertState       // guarded by mu: the advertising loop's
}

// ownRecord is the node's last published record.
type ownRecord struct {
	value  []byte
	seq    int64
	sig    [64]byte
	stored int       // nodes that accepted the last put
	when   time.Time // of the last put
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{records: make(map[string]Record), seen: make(map[string]int64), announced: make(map[string]int)}
}

func (m *Memory) stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts
}

// count changes the counters under the lock.
func (m *Memory) count(f func(c *Stats)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.counts)
}

// keep records r as the last record fetched for its key.
func (m *Memory) keep(key string, r Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.records[key]; !ok && len(m.records) >= maxRecords {
		var oldest string
		var ot time.Time
		for k, rr := range m.records {
			if oldest == "" || rr.When.Before(ot) {
				oldest, ot = k, rr.When
			}
		}
		delete(m.records, oldest)
	}
	m.records[key] = r
}
