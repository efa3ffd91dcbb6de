package dns

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"

	"github.com/miekg/dns"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// udpFrom opens a UDP socket on the loopback address src.
func udpFrom(t *testing.T, src string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// soaQuery is a query for the SOA of example.test with ID id, with EDNS
// (a 4096-byte buffer) if edns.
func soaQuery(id uint16, edns bool) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion("example.test.", dns.TypeSOA)
	q.Id = id
	if edns {
		q.SetEdns0(4096, false)
	}
	return q
}

func send(t *testing.T, c *net.UDPConn, to string, q *dns.Msg) int {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := net.ResolveUDPAddr("udp", to)
	if _, err := c.WriteToUDP(wire, a); err != nil {
		t.Fatal(err)
	}
	return len(wire)
}

// recv reads one reply, failing the test on a hang.
func recv(t *testing.T, c *net.UDPConn) (*dns.Msg, int) {
	t.Helper()
	buf := make([]byte, 65535)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return r, n
}

// TestRRL sends 20 queries for one name from one client, with the clock
// stopped, to a server that allows 5 replies a second, slip 2: 5 are
// answered, 7 answered truncated and small, 8 dropped. Another network
// is answered meanwhile, TCP is not limited, a good server cookie is not
// limited, and a second later the client has credit again.
func TestRRL(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	ts := serverWith(t, Options{Now: clock.now, RRL: RRL{Rate: 5, Slip: 2}})
	ts.ctl("zones/example.test/ctl", "add @ 300 TXT '\"padding that makes the answer bigger than the query it answers\"'")
	c := udpFrom(t, "127.0.0.2")
	var qsize int
	for i := range 20 {
		qsize = send(t, c, ts.addr, soaQuery(uint16(100+i), true))
	}
	full, slipped := 0, 0
	for range 12 {
		r, n := recv(t, c)
		switch {
		case r.Truncated && len(r.Answer) == 0 && len(r.Ns) == 0 && len(r.Extra) == 0:
			slipped++
			if n > qsize {
				t.Errorf("slipped reply of %d bytes to a query of %d", n, qsize)
			}
		case !r.Truncated && len(r.Answer) == 1:
			full++
		default:
			t.Errorf("unexpected reply:\n%v", r)
		}
	}
	testutil.WaitFor(t, "20 queries counted", func() bool { return ts.stats.rrlDropped.Load()+ts.stats.rrlSlipped.Load() == 15 })
	if full != 5 || slipped != 7 || ts.stats.rrlDropped.Load() != 8 {
		t.Errorf("%d answered, %d slipped, %d dropped; want 5, 7, 8", full, slipped, ts.stats.rrlDropped.Load())
	}

	// Another network is answered.
	other := udpFrom(t, "127.0.1.2")
	send(t, other, ts.addr, soaQuery(1, true))
	if r, _ := recv(t, other); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("another network: %v", r)
	}
	// TCP is not limited; and it brings a server cookie back.
	q := soaQuery(2, true)
	q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	tc := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}}
	r, _, err := tc.Exchange(q, ts.addr)
	if err != nil || r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("over TCP: %v %v", r, err)
	}
	cookie := replyCookie(r)
	if len(cookie) != 2*(8+16) || !strings.HasPrefix(cookie, "0102030405060708") {
		t.Fatalf("cookie %q", cookie)
	}
	// A good server cookie over UDP is answered in full, in debt or not.
	for i := range 3 {
		q := soaQuery(uint16(3+i), true)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
		send(t, c, ts.addr, q)
		if r, _ := recv(t, c); r.Truncated || len(r.Answer) != 1 || r.Id != q.Id {
			t.Errorf("with a good cookie: %v", r)
		}
	}
	// In debt: a second buys nothing (the debt is more than 5).
	clock.add(time.Second)
	before := ts.stats.rrlDropped.Load() + ts.stats.rrlSlipped.Load()
	send(t, c, ts.addr, soaQuery(7, true))
	testutil.WaitFor(t, "the query limited", func() bool { return ts.stats.rrlDropped.Load()+ts.stats.rrlSlipped.Load() == before+1 })
	// Enough seconds pay it off.
	clock.add(time.Minute)
	send(t, c, ts.addr, soaQuery(8, true))
	for {
		r, _ := recv(t, c)
		if r.Id == 8 {
			if r.Truncated || len(r.Answer) != 1 {
				t.Errorf("after a minute: %v", r)
			}
			break
		}
	}
}

// replyCookie is the COOKIE of r, in hex, or "".
func replyCookie(r *dns.Msg) string {
	if o := r.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if c, ok := e.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

// TestCookies: a client cookie gets a server cookie; the pair is good
// for an hour; a wrong or old server cookie gets BADCOOKIE over UDP and
// an answer over TCP; a malformed option is FORMERR.
func TestCookies(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	ts := serverWith(t, Options{Now: clock.now})
	ask := func(cookie string, tcp bool) *dns.Msg {
		t.Helper()
		q := soaQuery(dns.Id(), true)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
		return ts.exchange(q, tcp)
	}
	r := ask("1122334455667788", false)
	good := replyCookie(r)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || len(good) != 48 || good[:16] != "1122334455667788" {
		t.Fatalf("client cookie: %q\n%v", good, r)
	}
	if r := ask(good, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || replyCookie(r) == "" {
		t.Errorf("good cookie: %v", r)
	}
	bad := good[:47] + "0"
	if bad == good {
		bad = good[:47] + "1"
	}
	for _, c := range []struct{ name, cookie string }{
		{"wrong", bad},
		{"another client's", "8877665544332211" + good[16:]},
		{"8-byte", good[:32]},
	} {
		r := ask(c.cookie, false)
		if r.Rcode != dns.RcodeBadCookie || len(r.Answer) != 0 || replyCookie(r)[:16] != c.cookie[:16] {
			t.Errorf("%s server cookie over UDP: %v", c.name, r)
		}
		if r := ask(c.cookie, true); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s server cookie over TCP: %v", c.name, r)
		}
	}
	clock.add(cookieLife + time.Minute)
	if r := ask(good, false); r.Rcode != dns.RcodeBadCookie {
		t.Errorf("cookie of an hour ago: %v", r)
	}
	for _, c := range []string{"11223344", "1122334455667788aa", "1122334455667788" + strings.Repeat("ab", 33)} {
		if r := ask(c, false); r.Rcode != dns.RcodeFormatError {
			t.Errorf("cookie %q: %v", c, r)
		}
	}
	if n := ts.stats.badcookie.Load(); n != 4 {
		t.Errorf("badcookie %d, want 4", n)
	}
}

// TestDigCookie: dig, which sends a client cookie by default, gets a
// good server cookie back, and after a bad one it is told BADCOOKIE and
// asks again.
func TestDigCookie(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	out := ts.dig("+cookie", "example.test", "SOA")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "(good)") {
		t.Fatalf("dig +cookie:\n%s", out)
	}
	out = ts.dig("+cookie=11223344556677880100000000000000aaaaaaaaaaaaaaaa", "example.test", "SOA")
	if !strings.Contains(out, "BADCOOKIE, retrying") || !strings.Contains(out, "status: NOERROR") {
		t.Errorf("dig with a bad server cookie:\n%s", out)
	}
}
