package dht

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/plan9"
)

// advertHolder holds the advert a test changes.
type advertHolder struct {
	mu sync.Mutex
	a  Advert
}

func (h *advertHolder) get() Advert {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Advert{Value: bytes.Clone(h.a.Value), Paths: slices.Clone(h.a.Paths), Port: h.a.Port}
}

func (h *advertHolder) set(a Advert) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.a = a
}

// advertOptions are a module's defaults for the tests: loopback only,
// quick retries.
func advertOptions(t *testing.T) Options {
	return Options{wrapConn: watched(t), advertBackoff: 20 * time.Millisecond, advertMaxBackoff: 250 * time.Millisecond,
		quietFirst: testQuiet, quietMax: testQuiet}
}

// advertiser is what the dht module does with an Advertiser: nodes of
// one Memory, run one at a time, each advertised.
type advertiser struct {
	adv  Advertiser
	mem  *Memory
	key  ed25519.PrivateKey
	opts Options
}

// running is a node of an advertiser, with its advertising loop.
type running struct {
	n      *Node
	cancel context.CancelFunc
	done   chan struct{}
	closed bool
}

// startNode starts a node of m listening on listen (m's default if
// empty), advertised until stopNode or the end of the test.
func startNode(t *testing.T, m *advertiser, listen string) *running {
	t.Helper()
	o := m.opts
	o.Key, o.Log, o.Memory = m.key, testLog(), m.mem
	if listen != "" {
		o.Listen = listen
	}
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		m.adv.Run(ctx, n)
	}()
	t.Cleanup(func() { stopNode(t, r) })
	return r
}

// stopNode ends r's advertising loop and closes its node.
func stopNode(t *testing.T, r *running) {
	t.Helper()
	if r.closed {
		return
	}
	r.closed = true
	r.cancel()
	if err := r.n.Close(); err != nil {
		t.Error(err)
	}
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Error("advertising loop still running after Close")
	}
}

// statusText is what the tests read of a node's state: its counts and,
// as the dht provider's status file shows them, its advert lines.
func statusText(nd *Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%+v\n", nd.Stats())
	s := nd.AdvertStatus()
	if s.Seq != 0 {
		fmt.Fprintf(&b, "advert published seq %d stored %d\n", s.Seq, s.Stored)
	}
	if s.Err != "" {
		fmt.Fprintf(&b, "advert error %s\n", s.Err)
	}
	if s.Retry > 0 {
		fmt.Fprintf(&b, "advert retry %v\n", s.Retry)
	}
	if len(s.Paths) > 0 {
		fmt.Fprintf(&b, "advert paths %s\n", plan9.Join(s.Paths))
		fmt.Fprintf(&b, "advert port %d\n", s.Port)
	}
	return b.String()
}

// eventually calls check until it returns nil, failing the test with its
// last error when the wait ends.
//
// d is what the condition takes on an idle machine; the wait is many
// times longer, a guard against a hang rather than a budget, since a
// loaded machine (the race detector, a parallel go test) is many times
// slower at DHT traversals.
func eventually(t *testing.T, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(12 * d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || t.Context().Err() != nil {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitRecord waits until nd's Lookup of pub gives value, and returns the
// record.
func waitRecord(t *testing.T, nd *Node, pub ed25519.PublicKey, value string) Record {
	t.Helper()
	var r Record
	eventually(t, 10*time.Second, func() error {
		var err error
		r, err = nd.Lookup(opCtx(t), pub)
		if err != nil {
			return err
		}
		if string(r.Value) != value {
			return fmt.Errorf("lookup: %q, want %q", r.Value, value)
		}
		return nil
	})
	return r
}

// waitFind waits until nd's Find of path gives want.
func waitFind(t *testing.T, nd *Node, path string, want netip.AddrPort) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		peers, err := nd.Find(opCtx(t), path)
		if err != nil {
			return err
		}
		if !slices.Contains(peers, want) {
			return fmt.Errorf("find %s: %v, want %v", path, peers, want)
		}
		return nil
	})
}

// waitStatus waits until the status of nd matches every one of want and
// none of not, and returns it.
func waitStatus(t *testing.T, nd *Node, want []string, not []string) string {
	t.Helper()
	var st string
	eventually(t, 10*time.Second, func() error {
		st = statusText(nd)
		for _, w := range want {
			if !regexp.MustCompile("(?m)" + w).MatchString(st) {
				return fmt.Errorf("status lacks %q:\n%s", w, st)
			}
		}
		for _, w := range not {
			if regexp.MustCompile("(?m)" + w).MatchString(st) {
				return fmt.Errorf("status has %q:\n%s", w, st)
			}
		}
		return nil
	})
	return st
}

func TestAdvert(t *testing.T) {
	nodes := newSwarm(t, 9) // the advertiser is a tenth: K nodes can store its record
	b := nodes[4]
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	h := &advertHolder{a: Advert{Value: []byte("v1"), Paths: []string{"/n/adv/a", "/n/adv/b"}, Port: 5650}}
	opts := advertOptions(t)
	opts.Bootstrap = []string{nodes[0].Addr().String()} // the default; the config has no bootstrap line
	m := &advertiser{key: key, opts: opts, mem: NewMemory()}
	m.adv.Set(h.get) // before Run
	// The same port for every node (see the dht provider's TestModule).
	cfg := fmt.Sprintf("udp!127.0.0.1!%d", testutil.FreeUDPPort(t))
	in := startNode(t, m, cfg)
	top := t // nodes started in subtests live on after them
	at := func(port int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	}

	var seq int64
	t.Run("publish", func(t *testing.T) {
		seq = waitRecord(t, b, pub, "v1").Seq
		waitFind(t, b, "/n/adv/a", at(5650))
		waitFind(t, nodes[7], "/n/adv/b", at(5650))
		// Retried until K nodes stored it, then left to the hourly republish.
		st := waitStatus(t, in.n, []string{
			fmt.Sprintf(`^advert published seq \d+ stored %d$`, K),
			`^advert paths /n/adv/a /n/adv/b$`,
			`^advert port 5650$`,
		}, []string{`^advert retry `, `^advert error `})
		t.Logf("status:\n%s", st)
	})

	t.Run("readvertise", func(t *testing.T) {
		// A path announced by hand is not the advert's: it stays.
		if _, err := in.n.Announce(opCtx(t), "/n/by/hand", 5651); err != nil {
			t.Fatal(err)
		}
		h.set(Advert{Value: []byte("v2"), Paths: []string{"/n/adv/a", "/n/adv/c", "/n/adv/a"}, Port: 5650})
		done := make(chan struct{})
		go func() { // from another goroutine, many times: never blocks
			defer close(done)
			for range 100 {
				m.adv.Wake()
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Readvertise blocked")
		}
		r := waitRecord(t, b, pub, "v2")
		if r.Seq <= seq {
			t.Errorf("seq %d after readvertise, was %d", r.Seq, seq)
		}
		seq = r.Seq
		waitFind(t, b, "/n/adv/c", at(5650))
		waitStatus(t, in.n, []string{`^advert paths /n/adv/a /n/adv/c$`}, nil)
		ann := in.n.Announced()
		for _, p := range []string{"/n/adv/a", "/n/adv/c", "/n/by/hand"} {
			if _, ok := ann[p]; !ok {
				t.Errorf("%s not announced: %v", p, ann)
			}
		}
		if _, ok := ann["/n/adv/b"]; ok {
			t.Errorf("/n/adv/b, no longer advertised, still announced: %v", ann)
		}
	})

	t.Run("restart", func(t *testing.T) {
		before := m.mem.stats().Published
		stopNode(t, in)
		m.adv.Wake() // stopped: nothing to tell, and no block
		in = startNode(top, m, cfg)
		eventually(t, 10*time.Second, func() error {
			if got := m.mem.stats().Published; got <= before {
				return fmt.Errorf("published %d times, %d before the restart", got, before)
			}
			return nil
		})
		// The value did not change: put again with its seq.
		waitStatus(t, in.n, []string{fmt.Sprintf(`^advert published seq %d stored \d+$`, seq)}, nil)
		if r := waitRecord(t, nodes[6], pub, "v2"); r.Seq != seq {
			t.Errorf("seq %d after restart, was %d", r.Seq, seq)
		}
		waitFind(t, nodes[6], "/n/adv/c", at(5650))
	})

	t.Run("oversize", func(t *testing.T) {
		h.set(Advert{Value: bytes.Repeat([]byte("x"), 1200), Paths: []string{"/n/adv/a"}, Port: 5650})
		m.adv.Wake()
		st := waitStatus(t, in.n, []string{
			`^advert error dht: publish: value too big: 1200 bytes, at most 996$`,
			`^advert published seq \d+ `, // the last one stored
			`^advert paths /n/adv/a$`,
		}, []string{`^advert retry `}) // a retry would not make it fit
		// The seq is the last round's of v2: a round of an unchanged
		// value that stored it nowhere (a slow machine) publishes it
		// anew, with a new seq. The oversized round came after it.
		if m := regexp.MustCompile(`(?m)^advert published seq (\d+) `).FindStringSubmatch(st); m != nil {
			seq, _ = strconv.ParseInt(m[1], 10, 64)
		}
		t.Logf("status:\n%s", st)
		// The node keeps working, for itself and for others.
		if _, err := nodes[2].Publish(opCtx(t), []byte("other")); err != nil {
			t.Fatal(err)
		}
		if r, err := in.n.Lookup(opCtx(t), nodes[2].PublicKey()); err != nil || string(r.Value) != "other" {
			t.Errorf("advertiser's lookup: %+v, %v", r, err)
		}
		if r, err := b.Lookup(opCtx(t), pub); err != nil || r.Seq != seq {
			t.Errorf("lookup of the advertiser: %+v, %v", r, err)
		}
		near := closestTo(append(slices.Clone(nodes), in.n), target(nodes[2].PublicKey()), K, nodes[2])
		if slices.Contains(near, in.n) {
			if _, err := in.n.items.Get(target(nodes[2].PublicKey())); err != nil {
				t.Errorf("the advertiser, among the closest, does not store others' records: %v", err)
			}
		}
		// A fitting value again clears the error.
		h.set(Advert{Value: []byte("v3"), Paths: []string{"/n/adv/a"}, Port: 5650})
		m.adv.Wake()
		waitRecord(t, b, pub, "v3")
		waitStatus(t, in.n, nil, []string{`^advert error `})
	})

	t.Run("bad advert", func(t *testing.T) {
		h.set(Advert{Value: []byte("v3"), Paths: []string{"/n/adv/a"}, Port: 70000})
		m.adv.Wake()
		waitStatus(t, in.n, []string{`^advert error dht: advert: bad port 70000$`, `^advert paths /n/adv/a$`}, []string{`^advert retry `})
		h.set(Advert{Value: []byte("v3"), Paths: []string{"", "/n/adv/a"}, Port: 5650})
		m.adv.Wake()
		waitStatus(t, in.n, []string{`^advert error dht: advert "": empty path$`, `^advert paths '' /n/adv/a$`}, []string{`^advert retry `})
		if _, ok := in.n.Announced()["/n/adv/a"]; !ok {
			t.Errorf("/n/adv/a no longer announced: %v", in.n.Announced())
		}
	})

	t.Run("no advert", func(t *testing.T) {
		m.adv.Set(nil)
		eventually(t, 10*time.Second, func() error {
			if ann := in.n.Announced(); len(ann) != 1 {
				return fmt.Errorf("announced %v, want only /n/by/hand", ann)
			}
			return nil
		})
		waitStatus(t, in.n, []string{`^advert published seq `}, []string{`^advert paths `})
	})
}

func TestAdvertAlone(t *testing.T) {
	// The advertiser starts first, with no node to publish to: it
	// retries until the nodes that start later join through it.
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	opts := advertOptions(t)
	opts.Listen = "127.0.0.1:0" // the default; the config is empty
	m := &advertiser{key: key, opts: opts, mem: NewMemory()}
	in := startNode(t, m, "")
	m.adv.Set(func() Advert { return Advert{Value: []byte("early"), Paths: []string{"/n/early"}} }) // after Start
	st := waitStatus(t, in.n, []string{`^advert error dht: publish: no nodes to ask`, `^advert retry \S+$`}, nil)
	t.Logf("alone:\n%s", st)
	if o := in.n.own(); o != nil {
		t.Logf("stored %d", o.stored)
	}

	nodes := newSwarmVia(t, 8, in.n.Addr().String())
	// The advertiser learns of the swarm only from queries it gets:
	// node 0's bootstrap through it, which may have timed out on a
	// loaded machine. Until it knows a node, node 0 pings it.
	eventually(t, 10*time.Second, func() error {
		if in.n.Stats().Nodes > 0 {
			return nil
		}
		res := nodes[0].srv.Ping(net.UDPAddrFromAddrPort(in.n.Addr()))
		return fmt.Errorf("the advertiser knows no node (node 0's ping: %v)", res.Err)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("advertiser at the end:\n%s", statusText(in.n))
			t.Logf("asker at the end:\n%s\n%v", statusText(nodes[5]), nodes[5].Peers())
		}
	})
	waitRecord(t, nodes[5], pub, "early")
	waitFind(t, nodes[3], "/n/early", in.n.Addr()) // port 0: the node's UDP port
	waitStatus(t, in.n, []string{`^advert published seq \d+ stored [1-8]$`}, []string{`^advert error `})
}
