package dht

import (
	"context"
	"crypto/sha1"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/int160"
	"github.com/anacrolix/dht/v2/krpc"
)

// PathSalt is appended to a path before hashing it into the infohash it
// is announced on, so that Cheshire's paths do not collide with torrents.
const PathSalt = "cheshire-path-v1"

// maxPath is the longest path Announce and Find take.
const maxPath = 1024

// PathHash is the infohash a path is announced on: sha1(path + PathSalt).
func PathHash(path string) [20]byte { return sha1.Sum([]byte(path + PathSalt)) }

func checkPath(path string) error {
	switch {
	case path == "":
		return fmt.Errorf("empty path")
	case len(path) > maxPath:
		return fmt.Errorf("path of %d bytes, at most %d", len(path), maxPath)
	}
	return nil
}

// getPeers runs a get_peers traversal for ih and returns the peers the
// nodes gave and this node's own store holds (a traversal asks other
// nodes only, and the peer announced to us may be the one left), each
// once (IPv4 unmapped), sorted, and the closest nodes with tokens.
func (n *Node) getPeers(ctx context.Context, ih [20]byte) ([]netip.AddrPort, []closeNode, error) {
	id := int160.FromByteArray(ih)
	var mu sync.Mutex
	seen := make(map[netip.AddrPort]bool)
	for _, na := range n.peers.GetPeers(ih) {
		if ap, ok := addrPort(na); ok && !ap.Addr().IsUnspecified() {
			seen[ap] = true
		}
	}
	closest, err := n.traverse(ctx, ih,
		func(ctx context.Context, a adht.Addr) adht.QueryResult {
			return n.srv.GetPeers(ctx, a, id, false, adht.QueryRateLimiting{})
		},
		func(from netip.AddrPort, r *krpc.Return) {
			mu.Lock()
			defer mu.Unlock()
			for _, v := range r.Values {
				if ap, ok := addrPort(v); ok && !ap.Addr().IsUnspecified() && len(seen) < 4*maxPeersReply {
					seen[ap] = true
				}
			}
		})
	mu.Lock()
	defer mu.Unlock()
	peers := make([]netip.AddrPort, 0, len(seen))
	for ap := range seen {
		peers = append(peers, ap)
	}
	slices.SortFunc(peers, netip.AddrPort.Compare)
	return peers, closest, err
}

// Announce announces this node as a peer of path (announce_peer on
// PathHash(path)) to the closest nodes, with port, or the node's UDP
// port if port is 0, and keeps announcing it every ReannounceInterval
// until Close. It returns how many nodes accepted the announce; none is
// an error.
func (n *Node) Announce(ctx context.Context, path string, port int) (int, error) {
	if err := checkPath(path); err != nil {
		return 0, fmt.Errorf("dht: announce: %w", err)
	}
	if port < 0 || port > 65535 {
		return 0, fmt.Errorf("dht: announce %s: bad port %d", path, port)
	}
	n.mem.mu.Lock()
	if _, ok := n.mem.announced[path]; !ok && len(n.mem.announced) >= maxAnnounced {
		n.mem.mu.Unlock()
		return 0, fmt.Errorf("dht: announce %s: already announcing %d paths", path, maxAnnounced)
	}
	n.mem.announced[path] = port
	n.mem.mu.Unlock()
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	return n.announce(ctx, path, port)
}

// announce announces path once.
func (n *Node) announce(ctx context.Context, path string, port int) (int, error) {
	ih := PathHash(path)
	_, closest, err := n.getPeers(ctx, ih)
	if err != nil {
		return 0, fmt.Errorf("dht: announce %s: %w", path, err)
	}
	ok, firstErr := sendAll(closest, func(c closeNode) error {
		p := port
		args := krpc.MsgArgs{InfoHash: ih, Port: &p, Token: c.token}
		if port == 0 {
			args.ImpliedPort = true
			p = int(n.Addr().Port())
		}
		return n.srv.Query(ctx, udpAddr(c.addr), "announce_peer", adht.QueryInput{MsgArgs: args}).ToError()
	})
	n.mem.count(func(c *Stats) { c.Announced++ })
	n.log.Info("dht: announced", "path", path, "port", port, "accepted", ok, "asked", len(closest))
	if ok == 0 {
		if firstErr != nil {
			return 0, fmt.Errorf("dht: announce %s: no node accepted it (%d asked; %v)", path, len(closest), firstErr)
		}
		return 0, fmt.Errorf("dht: announce %s: no node accepted it (%d asked)", path, len(closest))
	}
	return ok, nil
}

// reannounce announces every announced path again.
func (n *Node) reannounce() {
	n.mem.mu.Lock()
	paths := make(map[string]int, len(n.mem.announced))
	for p, port := range n.mem.announced {
		paths[p] = port
	}
	n.mem.mu.Unlock()
	for p, port := range paths {
		ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
		_, err := n.announce(ctx, p, port)
		cancel()
		if n.ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Warn("dht: reannounce", "err", err)
		}
	}
}

// Find returns the peers announced for path (get_peers on
// PathHash(path)), each once, sorted. None found is not an error.
func (n *Node) Find(ctx context.Context, path string) ([]netip.AddrPort, error) {
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("dht: find: %w", err)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	peers, _, err := n.getPeers(ctx, PathHash(path))
	if err != nil {
		return nil, fmt.Errorf("dht: find %s: %w", path, err)
	}
	if len(peers) > 0 {
		n.mem.count(func(c *Stats) { c.Found++ })
	}
	return peers, nil
}

// Announced returns the paths the node announces and their ports (0:
// the node's UDP port).
func (n *Node) Announced() map[string]int {
	n.mem.mu.Lock()
	defer n.mem.mu.Unlock()
	out := make(map[string]int, len(n.mem.announced))
	for p, port := range n.mem.announced {
		out[p] = port
	}
	return out
}
