package dns

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"cheshire/internal/testutil"

	"github.com/miekg/dns"
)

// limitedServer is a test server with small TCP caps.
func limitedServer(t *testing.T, conns, perClient int) *testServer {
	t.Helper()
	return serverWith(t, Options{TCPConns: conns, TCPPerClient: perClient})
}

// serverWith is a test server with options opts, serving zone
// example.test.
func serverWith(t *testing.T, opts Options) *testServer {
	t.Helper()
	opts.Owner = "glenda"
	s, err := New(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddZone("example.test"); err != nil {
		t.Fatal(err)
	}
	pc, l := listenPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	return &testServer{Server: s, t: t, addr: pc.LocalAddr().String(), port: port}
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	return c
}

// tcpQuery asks for the SOA of example.test over TCP from 127.0.0.1.
func tcpQuery(ts *testServer) error {
	q := new(dns.Msg)
	q.SetQuestion("example.test.", dns.TypeSOA)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second,
		Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}}
	r, _, err := c.Exchange(q, ts.addr)
	if err == nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1) {
		err = &net.AddrError{Err: "bad answer " + r.String()}
	}
	return err
}

// TestTCPFloodOneClient: one client (127.0.0.2) renews idle connections
// as fast as it can, past its cap, while another (127.0.0.1) asks 20
// queries over TCP: every one is answered, and the flooder never holds
// more than its cap.
func TestTCPFloodOneClient(t *testing.T) {
	t.Parallel()
	ts := limitedServer(t, 16, 4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if len(held) == 40 {
				held[0].Close()
				held = held[1:]
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			c, err := d.Dial("tcp", ts.addr)
			if err != nil {
				continue
			}
			held = append(held, c)
		}
	})
	// Let the flood pass the cap before asking.
	testutil.WaitFor(t, "the flood to pass its cap", func() bool { return ts.stats.tcpShed.Load() >= 20 })
	for i := range 20 {
		if err := tcpQuery(ts); err != nil {
			t.Errorf("query %d during the flood: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if err := tcpQuery(ts); err != nil {
		t.Errorf("query after the flood: %v", err)
	}
	ts.tcp.mu.Lock()
	n := ts.tcp.byClient[clientOf(netip.MustParseAddr("127.0.0.2"))]
	ts.tcp.mu.Unlock()
	if n > 4 {
		t.Errorf("127.0.0.2 holds %d connections, over its cap of 4", n)
	}
	t.Logf("shed %d connections", ts.stats.tcpShed.Load())
}

// TestTCPFloodManyClients: 8 clients hold 4 idle connections each, twice
// what the server serves at once; a ninth client's queries are still
// answered, during and after, and the longest-idle connections are what
// gives way.
func TestTCPFloodManyClients(t *testing.T) {
	t.Parallel()
	ts := limitedServer(t, 16, 4)
	var held []net.Conn
	for i := range 8 {
		for range 4 {
			held = append(held, dialFrom(t, net.IPv4(127, 0, 0, byte(2+i)).String(), ts.addr))
		}
	}
	testutil.WaitFor(t, "32 connections accepted", func() bool { return ts.stats.tcpShed.Load() == 16 })
	if n := ts.tcp.count(); n != 16 {
		t.Errorf("%d connections served, want 16", n)
	}
	for i := range 10 {
		if err := tcpQuery(ts); err != nil {
			t.Errorf("query %d during the flood: %v", i, err)
		}
	}
	if n := ts.tcp.count(); n > 16 {
		t.Errorf("%d connections served, over the cap of 16", n)
	}
	// Room was made by closing the longest-idle connections, in the
	// order they came; the others still answer.
	shed := int(ts.stats.tcpShed.Load())
	if shed < 17 {
		t.Errorf("%d connections shed, want at least 17", shed)
	}
	for i, c := range held {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if i < shed {
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("connection %d: read %v, want EOF", i, err)
			}
			continue
		}
		q := new(dns.Msg)
		q.SetQuestion("example.test.", dns.TypeSOA)
		dc := &dns.Conn{Conn: c}
		if err := dc.WriteMsg(q); err != nil {
			t.Errorf("connection %d: %v", i, err)
		} else if r, err := dc.ReadMsg(); err != nil || len(r.Answer) != 1 {
			t.Errorf("connection %d: %v %v", i, r, err)
		}
	}
	for _, c := range held {
		c.Close()
	}
	testutil.WaitFor(t, "the flood's connections to end", func() bool { return ts.tcp.count() == 0 })
	if err := tcpQuery(ts); err != nil {
		t.Errorf("query after the flood: %v", err)
	}
}
