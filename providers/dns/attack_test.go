package dns

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Attacks the server already survives, kept as tests so that it goes on
// surviving them. Each is bounded in count, on loopback, and ends by
// checking that a legitimate query is still answered.

// junkPackets returns n messages that are not good queries: random
// bytes, runts, cut and corrupted queries, compression loops, responses,
// absurd counts, bad OPT records.
func junkPackets(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	q.SetEdns0(1232, true)
	good, _ := q.Pack()
	out := make([][]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		var p []byte
		switch i % 8 {
		case 0: // random bytes
			p = make([]byte, rng.IntN(600))
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
		case 1: // a runt
			p = good[:rng.IntN(12)]
		case 2: // a query cut short
			p = good[:12+rng.IntN(len(good)-12)]
		case 3: // a query with a byte changed
			p = bytes.Clone(good)
			p[rng.IntN(len(p))] = byte(rng.Uint32())
		case 4: // a name that points at itself
			p = []byte{0, byte(i), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}
		case 5: // a response: never answered, or servers would loop
			p = bytes.Clone(good)
			p[2] |= 0x80
		case 6: // counts far beyond the message
			p = bytes.Clone(good)
			binary.BigEndian.PutUint16(p[4:], 0xffff)
			binary.BigEndian.PutUint16(p[10:], 0xffff)
		case 7: // two OPT records, or an OPT not at the root
			m := q.Copy()
			m.Extra = append(m.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeOPT}})
			p, _ = m.Pack()
		}
		out = append(out, p)
	}
	return out
}

// askUDP sends q from c until its reply comes (a few tries, as UDP may
// lose a datagram under load), skipping replies to other messages.
func askUDP(t *testing.T, c *net.UDPConn, to string, q *dns.Msg) *dns.Msg {
	t.Helper()
	buf := make([]byte, 65535)
	for range 5 {
		send(t, c, to, q)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // lost: ask again
			}
			var r dns.Msg
			if r.Unpack(buf[:n]) == nil && r.Id == q.Id && r.Response {
				return &r
			}
		}
	}
	t.Fatalf("no reply to %v", q.Question)
	return nil
}

// TestUDPJunkFlood sends 4,000 malformed datagrams, 50 at a time, each
// batch followed by a good query from the same socket, which is
// answered; no handler panics.
func TestUDPJunkFlood(t *testing.T) {
	t.Parallel()
	ts := serverWith(t, Options{})
	ts.ctl("zones/example.test/ctl", "add www 300 A 192.0.2.1")
	c := udpFrom(t, "127.0.0.2")
	a, _ := net.ResolveUDPAddr("udp", ts.addr)
	junk := junkPackets(4000)
	for i := 0; i < len(junk); i += 50 {
		for _, p := range junk[i : i+50] {
			c.WriteToUDP(p, a)
		}
		q := new(dns.Msg)
		q.SetQuestion("www.example.test.", dns.TypeA)
		q.Id = uint16(60000 + i/50)
		if r := askUDP(t, c, ts.addr, q); len(r.Answer) != 1 {
			t.Fatalf("after %d junk datagrams: %v", i+50, r)
		}
	}
	if n := ts.stats.panicked.Load(); n != 0 {
		t.Errorf("%d panics", n)
	}
	t.Logf("formerr %d, dropped %d", ts.stats.formerr.Load(), ts.stats.dropped.Load())
}

// TestTCPJunk sends junk frames on one TCP connection (empty, random,
// a response, a cut message whose length lies), then a good query on the
// same connection, which is answered; and the same junk on connections
// of their own does no harm to a new one.
func TestTCPJunk(t *testing.T) {
	t.Parallel()
	ts := serverWith(t, Options{})
	frame := func(p []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...) }
	q := soaQuery(4242, false)
	good, _ := q.Pack()
	c := dialFrom(t, "127.0.0.2", ts.addr)
	defer c.Close()
	for _, p := range junkPackets(200) {
		if _, err := c.Write(frame(p)); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(frame(good))
	dc := &dns.Conn{Conn: c}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		r, err := dc.ReadMsg()
		if err != nil {
			if strings.Contains(err.Error(), "timeout") {
				t.Fatal(err)
			}
			continue // a reply to junk that does not parse
		}
		if r.Id == 4242 {
			if len(r.Answer) != 1 {
				t.Errorf("good query after junk: %v", r)
			}
			break
		}
	}
	// A frame that says 40,000 bytes and sends 10, on 20 connections:
	// a new client is still served.
	for range 20 {
		s := dialFrom(t, "127.0.0.3", ts.addr)
		defer s.Close()
		s.Write([]byte{0x9c, 0x40})
		s.Write(make([]byte, 10))
	}
	if err := tcpQuery(ts); err != nil {
		t.Errorf("query beside stalled connections: %v", err)
	}
	if n := ts.stats.panicked.Load(); n != 0 {
		t.Errorf("%d panics", n)
	}
}

// TestDoHJunk posts and gets 600 junk messages to the DoH handler: each
// is refused with 400 (or answered, if it happens to parse), nothing
// panics, and a good query is answered after.
func TestDoHJunk(t *testing.T) {
	t.Parallel()
	ts := serverWith(t, Options{})
	hs := httptest.NewServer(ts.DoHHandler())
	defer hs.Close()
	c := hs.Client()
	do := func(req *http.Request) (int, []byte) {
		t.Helper()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for i, p := range junkPackets(600) {
		var req *http.Request
		if i%2 == 0 {
			req, _ = http.NewRequest("POST", hs.URL, bytes.NewReader(p))
			req.Header.Set("Content-Type", dohType)
		} else {
			req, _ = http.NewRequest("GET", hs.URL+"?dns="+base64.RawURLEncoding.EncodeToString(p), nil)
		}
		if st, b := do(req); st != 200 && st != 400 {
			t.Errorf("junk %d: %d %q", i, st, b)
		}
	}
	for _, u := range []string{
		"?dns=" + strings.Repeat("A", 100000),
		"?dns=",
		"?dns=%zz",
	} {
		req, _ := http.NewRequest("GET", hs.URL+u, nil)
		if st, b := do(req); st/100 != 4 {
			t.Errorf("GET %.40s: %d %q", u, st, b)
		}
	}
	wire, _ := soaQuery(0, false).Pack()
	req, _ := http.NewRequest("POST", hs.URL, bytes.NewReader(wire))
	req.Header.Set("Content-Type", dohType)
	st, b := do(req)
	var r dns.Msg
	if st != 200 || r.Unpack(b) != nil || len(r.Answer) != 1 {
		t.Errorf("good query after junk: %d %v", st, &r)
	}
	if n := ts.stats.panicked.Load(); n != 0 {
		t.Errorf("%d panics", n)
	}
}
