package dht

import (
	"net/netip"
	"sync"
	"time"
)

// QuietTTL is how long a node whose query timed out is left out of
// traversals, unless it is heard from first.
const QuietTTL = 5 * time.Minute

// maxQuiet bounds how many quiet nodes are remembered.
const maxQuiet = 4096

// quietNodes remembers the nodes whose queries timed out. A traversal
// waits for a query until it times out (seconds), and the library hands
// out a dead node again and again while other nodes' tables list it, so
// without this every lookup after a node dies would wait for it.
type quietNodes struct {
	mu sync.Mutex
	m  map[netip.AddrPort]time.Time // guarded by mu: address → when it went quiet
}

func newQuietNodes() *quietNodes { return &quietNodes{m: make(map[netip.AddrPort]time.Time)} }

// mark notes that ap did not answer at now.
func (q *quietNodes) mark(ap netip.AddrPort, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.m) >= maxQuiet {
		for k, t := range q.m {
			if now.Sub(t) > QuietTTL || len(q.m) >= maxQuiet {
				delete(q.m, k)
			}
		}
	}
	q.m[ap] = now
}

// heard forgets that ap was quiet: it answered or asked something.
func (q *quietNodes) heard(ap netip.AddrPort) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.m, ap)
}

// is reports whether ap went quiet less than QuietTTL before now.
func (q *quietNodes) is(ap netip.AddrPort, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.m[ap]
	if ok && now.Sub(t) > QuietTTL {
		delete(q.m, ap)
		return false
	}
	return ok
}

// len is how many nodes are quiet now.
func (q *quietNodes) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.m)
}
