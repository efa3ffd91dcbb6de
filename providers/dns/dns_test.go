package dns

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/synth/synthtest"

	"github.com/miekg/dns"
)

// TestDigSeesCtlChange adds a zone and a record through the ctl files
// and checks that dig sees the record on the very next query, over UDP
// and TCP, and that deleting it is as quick.
func TestDigSeesCtlChange(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	ts.ctl("zones/example.test/ctl", "add www.example.test. 300 A 192.0.2.1")
	if out := ts.dig("+short", "www.example.test", "A"); strings.TrimSpace(out) != "192.0.2.1" {
		t.Fatalf("dig over UDP: %q", out)
	}
	if out := ts.dig("+short", "+tcp", "www.example.test", "A"); strings.TrimSpace(out) != "192.0.2.1" {
		t.Fatalf("dig over TCP: %q", out)
	}
	out := ts.dig("www.example.test", "A")
	if !strings.Contains(out, " aa") || !strings.Contains(out, "status: NOERROR") {
		t.Errorf("answer is not authoritative NOERROR:\n%s", out)
	}
	ts.ctl("zones/example.test/ctl", "add mail 300 A 192.0.2.2")
	if out := ts.dig("+short", "mail.example.test"); strings.TrimSpace(out) != "192.0.2.2" {
		t.Fatalf("relative name: %q", out)
	}
	ts.ctl("zones/example.test/ctl", "del www A 192.0.2.1")
	if out := ts.dig("www.example.test"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Fatalf("after del:\n%s", out)
	}
	if err := ts.writeFile("zones/example.test/ctl", "del nosuch"); err == nil || !strings.Contains(err.Error(), "no such record") {
		t.Errorf("del of nothing: %v", err)
	}
	text := ts.readFile("zones/example.test/zone")
	if !strings.Contains(text, "mail.example.test.\t300\tIN\tA\t192.0.2.2") {
		t.Errorf("zone text:\n%s", text)
	}
	if st := ts.readFile("ctl"); !strings.Contains(st, "zone example.test serial 4") {
		t.Errorf("ctl status: %q", st)
	}
	if log := ts.readLogNow("zones/example.test/log"); !strings.Contains(log, "add mail.example.test.") {
		t.Errorf("log: %q", log)
	}
}

// readLogNow reads what a log file holds now (its length at stat).
func (ts *testServer) readLogNow(p string) string {
	ts.t.Helper()
	buf := make([]byte, 1<<16)
	f, err := testutil.WalkOpen(ts.t.Context(), ts.root(), p, 0)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer f.Clunk()
	n, err := f.Read(ts.t.Context(), buf, 0)
	if err != nil {
		ts.t.Fatal(err)
	}
	return string(buf[:n])
}

const goodZone = `$ORIGIN example.test.
$TTL 300
@	IN SOA ns hostmaster 10 7200 3600 1209600 300
	IN NS ns
ns	IN A 192.0.2.53
www	IN A 192.0.2.80
alias	IN CNAME www
deep.alias IN CNAME alias
out	IN CNAME www.elsewhere.test.
a.b.c	IN TXT "deep"
sub	IN NS ns.sub
ns.sub	IN A 192.0.2.54
*.wild	IN A 192.0.2.99
big	IN TXT "0123456789012345678901234567890123456789012345678901234567890123456789"
`

// TestZoneWrite writes whole zones: a good one is served at once, a bad
// one is refused with its line number and the old one keeps answering.
func TestZoneWrite(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	if err := ts.writeFile("zones/example.test/zone", goodZone); err != nil {
		t.Fatal(err)
	}
	if out := ts.dig("+short", "www.example.test"); strings.TrimSpace(out) != "192.0.2.80" {
		t.Fatalf("after write: %q", out)
	}
	bad := strings.Replace(goodZone, "www\tIN A 192.0.2.80", "www\tIN A 192.0.2.800", 1)
	err := ts.writeFile("zones/example.test/zone", bad)
	if err == nil || !strings.Contains(err.Error(), "line 6") {
		t.Fatalf("bad zone: %v", err)
	}
	t.Logf("refused: %v", err)
	if out := ts.dig("+short", "www.example.test"); strings.TrimSpace(out) != "192.0.2.80" {
		t.Fatalf("after refused write: %q", out)
	}
	for _, c := range []struct{ text, want string }{
		{"$ORIGIN example.test.\n@ 300 IN NS ns\n", "no SOA"},
		{goodZone + "www.other.test. 300 IN A 192.0.2.1\n", "not in zone"},
		{goodZone + "www 300 IN CNAME alias\n", "CNAME and other data"},
		{goodZone + "$INCLUDE /etc/passwd\n", "line 15"},
		{goodZone + "@ 300 IN RRSIG A 13 2 300 20300101000000 20200101000000 1 example.test. AAAA\n", "RRSIG"},
	} {
		err := ts.writeFile("zones/example.test/zone", c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("write: %v, want %q", err, c.want)
		}
	}
	if out := ts.dig("+short", "www.example.test"); strings.TrimSpace(out) != "192.0.2.80" {
		t.Fatalf("after refused writes: %q", out)
	}
	// Written text reads back, and reads back the same when written again.
	text := ts.readFile("zones/example.test/zone")
	if err := ts.writeFile("zones/example.test/zone", text); err != nil {
		t.Fatal(err)
	}
	if again := ts.readFile("zones/example.test/zone"); again != text {
		t.Errorf("zone text changed on rewrite:\n%s\n---\n%s", text, again)
	}
}

// TestAnswers checks the kinds of answer against the miekg/dns client.
func TestAnswers(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	if err := ts.writeFile("zones/example.test/zone", goodZone); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		qtype  uint16
		rcode  int
		aa     bool
		answer []string // types in the answer section
		ns     []string // types in the authority section
		extra  []string // types in the additional section
	}{
		{"www.example.test", dns.TypeA, dns.RcodeSuccess, true, []string{"A"}, nil, nil},
		{"WWW.Example.TEST", dns.TypeA, dns.RcodeSuccess, true, []string{"A"}, nil, nil},
		{"www.example.test", dns.TypeAAAA, dns.RcodeSuccess, true, nil, []string{"SOA"}, nil},
		{"nope.example.test", dns.TypeA, dns.RcodeNameError, true, nil, []string{"SOA"}, nil},
		{"b.c.example.test", dns.TypeA, dns.RcodeSuccess, true, nil, []string{"SOA"}, nil}, // empty non-terminal
		{"deep.alias.example.test", dns.TypeA, dns.RcodeSuccess, true, []string{"CNAME", "CNAME", "A"}, nil, nil},
		{"out.example.test", dns.TypeA, dns.RcodeSuccess, true, []string{"CNAME"}, nil, nil},
		{"host.sub.example.test", dns.TypeA, dns.RcodeSuccess, false, nil, []string{"NS"}, []string{"A"}},
		{"x.wild.example.test", dns.TypeA, dns.RcodeSuccess, true, []string{"A"}, nil, nil},
		{"x.wild.example.test", dns.TypeMX, dns.RcodeSuccess, true, nil, []string{"SOA"}, nil},
		{"example.test", dns.TypeANY, dns.RcodeSuccess, true, []string{"NS", "SOA"}, nil, nil},
		{"www.elsewhere.test", dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
	} {
		for _, tcp := range []bool{false, true} {
			r := ts.query(c.name, c.qtype, tcp, false)
			where := fmt.Sprintf("%s %s tcp=%v", c.name, dns.TypeToString[c.qtype], tcp)
			if r.Rcode != c.rcode || r.Authoritative != c.aa {
				t.Errorf("%s: rcode %s aa %v, want %s %v", where, dns.RcodeToString[r.Rcode], r.Authoritative, dns.RcodeToString[c.rcode], c.aa)
			}
			check := func(sec string, got []dns.RR, want []string) {
				var types []string
				for _, rr := range got {
					types = append(types, dns.TypeToString[rr.Header().Rrtype])
				}
				if strings.Join(types, " ") != strings.Join(want, " ") {
					t.Errorf("%s: %s %v, want %v", where, sec, types, want)
				}
			}
			check("answer", r.Answer, c.answer)
			check("authority", r.Ns, c.ns)
			check("additional", r.Extra, c.extra)
		}
	}
	// A wildcard answer has the name asked for.
	r := ts.query("x.wild.example.test", dns.TypeA, false, false)
	if len(r.Answer) != 1 || r.Answer[0].Header().Name != "x.wild.example.test." {
		t.Errorf("wildcard answer %v", r.Answer)
	}
	// The SOA of a negative answer has the TTL of its minimum.
	r = ts.query("nope.example.test", dns.TypeA, false, false)
	if r.Ns[0].Header().Ttl != 300 {
		t.Errorf("negative SOA TTL %d", r.Ns[0].Header().Ttl)
	}
}

// TestPersistence makes a zone, stops the server and makes a new one on
// the same directory: the zone comes back.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddZone("example.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRecord("example.test", "www 300 A 192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTSIG("example.test", "upd", "hmac-sha256", "c2VjcmV0c2VjcmV0"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddZone("other.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveZone("other.test"); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, dir)
	if out := ts.dig("+short", "www.example.test"); strings.TrimSpace(out) != "192.0.2.7" {
		t.Fatalf("after restart: %q", out)
	}
	if got := ts.Zones(); len(got) != 1 || got[0] != "example.test." {
		t.Errorf("zones %v", got)
	}
	if st := ts.readFile("zones/example.test/ctl"); !strings.Contains(st, "tsig upd. hmac-sha256") {
		t.Errorf("status %q", st)
	}
}

// TestTruncation answers a big RRset over UDP with TC set, and whole
// over TCP.
func TestTruncation(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	var b strings.Builder
	for i := range 60 {
		fmt.Fprintf(&b, "add big 300 TXT %s%02d\n", strings.Repeat("x", 40), i)
	}
	ts.ctl("zones/example.test/ctl", b.String())
	r := ts.query("big.example.test", dns.TypeTXT, false, false)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("UDP without EDNS: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	m := new(dns.Msg)
	m.SetQuestion("big.example.test.", dns.TypeTXT)
	m.SetEdns0(4096, false)
	r = ts.exchange(m, false)
	if !r.Truncated {
		t.Errorf("UDP with 4096 EDNS (server limit 1232): not truncated, %d answers", len(r.Answer))
	}
	r = ts.query("big.example.test", dns.TypeTXT, true, false)
	if r.Truncated || len(r.Answer) != 60 {
		t.Errorf("TCP: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	out := ts.dig("+ignore", "+noedns", "big.example.test", "TXT")
	if !strings.Contains(out, " tc") {
		t.Errorf("dig +ignore: no tc flag:\n%s", out)
	}
	out = ts.dig("+short", "big.example.test", "TXT")
	if n := strings.Count(out, "\n"); n != 60 {
		t.Errorf("dig (retrying over TCP): %d lines", n)
	}
}

// TestMalformed sends broken messages: each is answered FORMERR or
// dropped, and the server goes on answering.
func TestMalformed(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	c, err := net.Dial("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	good := new(dns.Msg)
	good.SetQuestion("example.test.", dns.TypeSOA)
	wire, _ := good.Pack()
	twoQ := new(dns.Msg)
	twoQ.Id = 7
	twoQ.Question = []dns.Question{{Name: "a.example.test.", Qtype: 1, Qclass: 1}, {Name: "b.example.test.", Qtype: 1, Qclass: 1}}
	twoQWire, _ := twoQ.Pack()
	badVers := new(dns.Msg)
	badVers.SetQuestion("example.test.", dns.TypeSOA)
	badVers.SetEdns0(1232, false)
	badVers.IsEdns0().SetVersion(1)
	badVersWire, _ := badVers.Pack()
	for _, p := range []struct {
		data  []byte
		rcode int // -1: no reply expected
	}{
		{[]byte{1, 2, 3}, -1},
		{wire[:14], dns.RcodeFormatError},
		{append(append([]byte{}, wire...), 0xff, 0xff, 0xff), dns.RcodeSuccess},
		{func() []byte { b := append([]byte{}, wire...); b[5] = 9; return b }(), dns.RcodeFormatError},
		{twoQWire, dns.RcodeFormatError},
		{badVersWire, dns.RcodeBadVers},
		{func() []byte { b := append([]byte{}, wire...); b[2] |= 0x80; return b }(), -1},
	} {
		c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write(p.data); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		switch {
		case p.rcode < 0 && err == nil:
			t.Errorf("% x: got a reply", p.data)
		case p.rcode >= 0 && err != nil:
			t.Errorf("% x: no reply: %v", p.data[:min(len(p.data), 16)], err)
		case p.rcode >= 0:
			var r dns.Msg
			if err := r.Unpack(buf[:n]); err != nil {
				t.Errorf("reply does not unpack: %v", err)
			} else if r.Rcode != p.rcode {
				t.Errorf("% x: rcode %s, want %s", p.data[:min(len(p.data), 16)], dns.RcodeToString[r.Rcode], dns.RcodeToString[p.rcode])
			}
		}
	}
	if r := ts.query("example.test", dns.TypeSOA, false, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after garbage: %v", r)
	}
	// TCP: a short frame and a garbage one, then a good query on a new
	// connection.
	tc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Now().Add(2 * time.Second))
	tc.Write([]byte{0, 3, 1, 2, 3, 0, 20})
	tc.Write(make([]byte, 20))
	buf := make([]byte, 512)
	n, _ := tc.Read(buf)
	if n >= 14 && buf[5]&0xf != dns.RcodeFormatError {
		t.Errorf("TCP garbage: rcode %d", buf[5]&0xf)
	}
	tc.Close()
	if r := ts.query("example.test", dns.TypeSOA, true, false); r.Rcode != dns.RcodeSuccess {
		t.Errorf("TCP after garbage: %v", r)
	}
	if ts.stats.panicked.Load() != 0 {
		t.Errorf("handler panicked")
	}
}

// TestFileTree walks the tree with the shared conformance checker and
// checks zone names.
func TestFileTree(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	ts.ctl("ctl", "zone add Other.Test.")
	ts.ctl("zones/example.test/ctl", "dnssec on")
	synthtest.TestServer(t, ts.Server, "glenda")
	for _, bad := range []string{"zone add ../etc", "zone add .", "zone add a..b", "zone add a/b", "zone add example.test", "zone rm nosuch.test", "zone add"} {
		if err := ts.writeFile("ctl", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := strings.Join(ts.Zones(), " "); got != "example.test. other.test." {
		t.Errorf("zones %q", got)
	}
	ts.query("example.test", dns.TypeSOA, false, false)
	if st := ts.readFile("stats"); !strings.Contains(st, "queries 1\n") {
		t.Errorf("stats %q", st)
	}
	if err := ts.writeFile("zones/example.test/dnskey", "x"); err == nil {
		t.Error("dnskey writable")
	}
}
