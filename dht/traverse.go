package dht

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	adht "github.com/anacrolix/dht/v2"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
	"github.com/anacrolix/dht/v2/types"
)

// errNoNodes is the error of an operation with nowhere to start: an
// empty routing table and no bootstrap node.
var errNoNodes = errors.New("no nodes to ask: routing table empty and no bootstrap node")

// closeNode is one of the closest nodes a traversal found, with the token
// it gave for a put or an announce.
type closeNode struct {
	addr  netip.AddrPort
	token string
}

// traverse walks the DHT towards target, asking each node with query and
// handing each reply to onReply (called concurrently). It returns when no
// closer node is left to ask or ctx is done, with the K closest nodes
// that answered with a token, closest first. Every query the traversal
// started has returned when traverse does.
func (n *Node) traverse(ctx context.Context, target [20]byte,
	query func(ctx context.Context, a adht.Addr) adht.QueryResult,
	onReply func(from netip.AddrPort, r *krpc.Return)) ([]closeNode, error) {
	op := traversal.Start(traversal.OperationInput{
		Target: target,
		Alpha:  alpha,
		K:      K,
		DoQuery: func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			res := query(qctx, adht.NewAddr(addr.UDP()))
			r := res.Reply.R
			if ap, ok := addrPort(addr); ok {
				switch {
				case errors.Is(res.Err, adht.TransactionTimeout):
					n.quiet.mark(ap, n.now())
				case r != nil:
					n.quiet.heard(ap)
				}
			}
			if res.Err != nil || r == nil {
				return traversal.QueryResult{}
			}
			if from, ok := addrPort(addr); ok && onReply != nil {
				onReply(from, r)
			}
			tqr := res.TraversalQueryResult(addr)
			tqr.Nodes = unmapNodes(tqr.Nodes)
			tqr.Nodes6 = unmapNodes(tqr.Nodes6)
			if tok, ok := tqr.ClosestData.(string); !ok || tok == "" {
				tqr.ClosestData = nil
			}
			return tqr
		},
		NodeFilter: n.nodeFilter,
		DataFilter: func(data any) bool {
			tok, ok := data.(string)
			return ok && tok != ""
		},
	})
	defer func() {
		op.Stop()
		<-op.Stopped()
	}()
	start, err := n.srv.TraversalStartingNodes()
	if err != nil {
		return nil, errNoNodes
	}
	for i := range start {
		start[i].Addr = krpc.NodeAddrPort{AddrPort: unmap(start[i].Addr.AddrPort)}
	}
	if op.AddNodes(start) == 0 {
		return nil, errNoNodes
	}
	// The traversal's loop starts before the nodes are added, and may
	// have found itself stalled, with nothing to ask, before: the first
	// stall received can be that one. The second comes from a look at
	// the operation taken after the first was received, so after the
	// nodes were added.
	for range 2 {
		select {
		case <-op.Stalled():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	op.Stop()
	<-op.Stopped()
	var out []closeNode
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		tok, _ := e.Data.(string)
		if tok != "" {
			out = append(out, closeNode{addr: unmap(e.Addr.AddrPort), token: tok})
		}
	})
	return out, nil
}

// nodeFilter is the library's, and refuses the node itself.
func (n *Node) nodeFilter(a types.AddrMaybeId) bool {
	if a.Id.Ok && a.Id.Value.AsByteArray() == n.srv.ID() {
		return false
	}
	if unmap(a.Addr.AddrPort) == n.Addr() {
		return false
	}
	if n.quiet.is(unmap(a.Addr.AddrPort), n.now()) {
		return false
	}
	return n.srv.TraversalNodeFilter(a)
}

// unmap turns an IPv4-in-IPv6 address into IPv4.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// unmapNodes rewrites IPv4-in-IPv6 node addresses as IPv4, so that a node
// listed in both nodes and nodes6 is asked once.
func unmapNodes(nis []krpc.NodeInfo) []krpc.NodeInfo {
	for i := range nis {
		if ip4 := nis[i].Addr.IP.To4(); ip4 != nil {
			nis[i].Addr.IP = ip4
		}
	}
	return nis
}

// sendAll runs send for each node, at most K at once, and returns how
// many succeeded and the first error.
func sendAll(nodes []closeNode, send func(c closeNode) error) (int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ok    int
		first error
	)
	sem := make(chan struct{}, K)
	for _, c := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := send(c)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if first == nil {
				first = fmt.Errorf("%v: %w", c.addr, err)
			}
		}()
	}
	wg.Wait()
	return ok, first
}

// udpAddr is a library address of ap.
func udpAddr(ap netip.AddrPort) adht.Addr {
	return adht.NewAddr(net.UDPAddrFromAddrPort(ap))
}
