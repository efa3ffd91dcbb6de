package dht

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// How long a node whose query timed out is left out of traversals,
// unless it is heard from first: QuietFirst after one timeout, doubled
// at each further timeout, up to QuietTTL. A node that missed one query
// because the machine was busy is back soon; a dead node, which misses
// every query it is asked, is soon left out for QuietTTL.
const (
	QuietFirst = 15 * time.Second
	QuietTTL   = 5 * time.Minute
)

// maxQuiet bounds how many quiet nodes are remembered.
const maxQuiet = 4096

// quietNodes remembers the nodes whose queries timed out. A traversal
// waits for a query until it times out (seconds), and the library hands
// out a dead node again and again while other nodes' tables list it, so
// without this every lookup after a node dies would wait for it.
type quietNodes struct {
	first, max time.Duration // QuietFirst and QuietTTL, unless a test changed them

	mu sync.Mutex
	m  map[netip.AddrPort]quiet // guarded by mu
}

// quiet is what is known of a node that timed out.
type quiet struct {
	last time.Time     // its last timeout
	ttl  time.Duration // how long after last it is left out
}

// newQuietNodes returns an empty set; first and max, if not zero,
// replace QuietFirst and QuietTTL.
func newQuietNodes(first, max time.Duration) *quietNodes {
	if first <= 0 {
		first = QuietFirst
	}
	if max <= 0 {
		max = QuietTTL
	}
	return &quietNodes{first: first, max: max, m: make(map[netip.AddrPort]quiet)}
}

// mark notes that ap did not answer at now. A node that timed out before
// and has not been heard from since is left out twice as long as then.
func (q *quietNodes) mark(ap netip.AddrPort, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.m) >= maxQuiet {
		for k, e := range q.m {
			if now.Sub(e.last) > e.ttl || len(q.m) >= maxQuiet {
				delete(q.m, k)
			}
		}
	}
	e, ok := q.m[ap]
	switch {
	case !ok || now.Sub(e.last) > 2*q.max:
		e.ttl = q.first
	case now.Sub(e.last) > time.Second: // not a timeout of the same burst
		e.ttl = min(2*e.ttl, q.max)
	}
	e.last = now
	q.m[ap] = e
}

// heard forgets that ap was quiet: it answered or asked something.
func (q *quietNodes) heard(ap netip.AddrPort) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.m, ap)
}

// is reports whether ap is left out at now.
func (q *quietNodes) is(ap netip.AddrPort, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.m[ap]
	return ok && now.Sub(e.last) <= e.ttl
}

// len is how many nodes are left out at now.
func (q *quietNodes) len(now time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, e := range q.m {
		if now.Sub(e.last) <= e.ttl {
			n++
		}
	}
	return n
}

// encode writes the marks still in force at now, a line each:
// "ADDR:PORT LAST TTL", LAST in Unix nanoseconds, TTL in nanoseconds.
func (q *quietNodes) encode(now time.Time) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	var lines []string
	for ap, e := range q.m {
		if now.Sub(e.last) <= e.ttl {
			lines = append(lines, fmt.Sprintf("%s %d %d\n", ap, e.last.UnixNano(), int64(e.ttl)))
		}
	}
	slices.Sort(lines)
	return []byte(strings.Join(lines, ""))
}

// decode adds the marks of data (as encode writes them) that are still
// in force at now; lines it cannot read are skipped (the file is the
// node's own, so they can only come from a torn or older version).
func (q *quietNodes) decode(data []byte, now time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || len(q.m) >= maxQuiet {
			continue
		}
		ap, err1 := netip.ParseAddrPort(f[0])
		last, err2 := strconv.ParseInt(f[1], 10, 64)
		ttl, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || ttl <= 0 || time.Duration(ttl) > q.max {
			continue
		}
		e := quiet{last: time.Unix(0, last), ttl: time.Duration(ttl)}
		if now.Sub(e.last) > e.ttl || e.last.After(now) {
			continue
		}
		q.m[ap] = e
		n++
	}
	return n
}
