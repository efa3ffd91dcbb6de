package dns

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// fuzzServer is a Server with example.test (goodZone, signed, with a
// TSIG key) for the fuzz targets; files are not synced.
func fuzzServer(f testing.TB) *Server {
	s, err := New(f.TempDir(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.AddZone("example.test"); err != nil {
		f.Fatal(err)
	}
	if err := s.SetZone("example.test", []byte(goodZone)); err != nil {
		f.Fatal(err)
	}
	if err := s.SetDNSSEC("example.test", true); err != nil {
		f.Fatal(err)
	}
	if err := s.AddTSIG("example.test", "upd", "hmac-sha256", testSecret); err != nil {
		f.Fatal(err)
	}
	return s
}

// FuzzZoneWrite writes arbitrary text as a zone: it never panics, and is
// either refused with the old zone left as it was, or accepted whole,
// in which case the zone's text reads back and is accepted again as is.
func FuzzZoneWrite(f *testing.F) {
	s := fuzzServer(f)
	f.Add(goodZone)
	f.Add("$ORIGIN example.test.\n@ 300 IN SOA ns hm 1 2 3 4 5\n$GENERATE 1-20 h$ A 192.0.2.$\n")
	f.Add("@ IN SOA ns hm (1 2 3 4 5)\n* TXT \"a\\\"b\" c\nx CNAME y\n")
	f.Add("$TTL 1\n@ SOA . . 1 1 1 1 1\nsub NS ns.sub\nns.sub AAAA ::1\nsub DS 1 13 2 abcd\n")
	f.Fuzz(func(t *testing.T, text string) {
		before := s.zone("example.test.")
		err := s.SetZone("example.test", []byte(text))
		after := s.zone("example.test.")
		if err != nil {
			if after != before {
				t.Fatalf("refused write %v changed the zone", err)
			}
			return
		}
		out := after.text()
		if err := s.SetZone("example.test", out); err != nil {
			t.Fatalf("zone text does not write back: %v\n%s", err, out)
		}
		if again := s.zone("example.test.").text(); !bytes.Equal(again, out) {
			t.Fatalf("zone text changed on rewrite:\n%s\n---\n%s", out, again)
		}
		// The new zone answers (signed) without panicking.
		q := new(dns.Msg)
		q.SetQuestion("x.example.test.", dns.TypeA)
		q.SetEdns0(1232, true)
		wire, _ := q.Pack()
		s.handle(wire, false, netip.AddrPort{}, nil)
		if s.stats.panicked.Load() != 0 {
			t.Fatal("handler panicked")
		}
	})
}

// FuzzCtl writes arbitrary control messages to the zone's and the
// server's ctl files: nothing panics and the zone stays whole.
func FuzzCtl(f *testing.F) {
	s := fuzzServer(f)
	for _, seed := range []string{
		"add www 300 A 192.0.2.1", "del www A 192.0.2.1", "del @", "dnssec off", "dnssec on",
		"rollkey", "rollkey done", "tsig add k hmac-sha256 c2VjcmV0", "tsig rm k",
		"add 'x y' 300 TXT '\"a b\"'", "add @ 300 CNAME x", "zone add other.test", "zone rm example.test",
		"add www 300 SOA . . 1 2 3 4 5\ndel www", "add $GENERATE 1-3 a$ A 1.2.3.$",
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, msg string) {
		root, err := s.Attach(ctx, "none", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Clunk()
		writeFileErr(root, "zones/example.test/ctl", msg)
		writeFileErr(root, "ctl", msg)
		if s.zone("example.test.") == nil {
			if err := s.AddZone("example.test"); err != nil {
				t.Fatalf("re-add: %v", err)
			}
		}
		z := s.zone("example.test.")
		if z.soa == nil || z.nodes[z.origin] == nil {
			t.Fatal("zone without apex")
		}
		if _, err := parseZone(z.origin, string(z.text())); err != nil {
			t.Fatalf("zone text does not parse: %v", err)
		}
		if s.stats.panicked.Load() != 0 {
			t.Fatal("handler panicked")
		}
	})
}

// FuzzDoH sends arbitrary GET queries and POST bodies to the DoH
// handler: the status is one of those documented, and a 200 carries a
// DNS message.
func FuzzDoH(f *testing.F) {
	s := fuzzServer(f)
	h := s.DoHHandler()
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	wire, _ := q.Pack()
	f.Add(true, "dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlBHRlc3QAAAEAAQ", []byte(nil))
	f.Add(false, "", wire)
	f.Add(false, "", []byte{0, 0, 0x80})
	f.Add(true, "dns=%%", []byte(nil))
	f.Fuzz(func(t *testing.T, get bool, query string, body []byte) {
		var req *http.Request
		if get {
			req = httptest.NewRequest("GET", "/dns-query", nil)
			req.URL.RawQuery = query
		} else {
			req = httptest.NewRequest("POST", "/dns-query", bytes.NewReader(body))
			req.Header.Set("Content-Type", dohType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case 200:
			var m dns.Msg
			if err := m.Unpack(w.Body.Bytes()); err != nil || !m.Response {
				t.Fatalf("200 without a DNS reply: %v", err)
			}
		case 400, 413:
			if strings.TrimSpace(w.Body.String()) == "" {
				t.Fatal("error without a reason")
			}
		default:
			t.Fatalf("status %d", w.Code)
		}
		if s.stats.panicked.Load() != 0 {
			t.Fatal("handler panicked")
		}
	})
}

// FuzzServeDNS answers arbitrary messages over UDP and TCP: no panic,
// and any reply is a response with the query's ID that fits its limit.
func FuzzServeDNS(f *testing.F) {
	s := fuzzServer(f)
	for _, seed := range []func(m *dns.Msg){
		func(m *dns.Msg) { m.SetQuestion("www.example.test.", dns.TypeA) },
		func(m *dns.Msg) { m.SetQuestion("nope.example.test.", dns.TypeA); m.SetEdns0(512, true) },
		func(m *dns.Msg) { m.SetQuestion("x.wild.example.test.", dns.TypeMX); m.SetEdns0(1232, true) },
		func(m *dns.Msg) { m.SetQuestion("host.sub.example.test.", dns.TypeA); m.SetEdns0(1232, true) },
		func(m *dns.Msg) { m.SetQuestion("example.test.", dns.TypeANY); m.SetEdns0(4096, true) },
		func(m *dns.Msg) {
			m.SetUpdate("example.test.")
			rr, _ := dns.NewRR("new.example.test. 300 A 192.0.2.1")
			m.Insert([]dns.RR{rr})
			m.SetTsig("upd.", dns.HmacSHA256, 300, 0)
		},
	} {
		m := new(dns.Msg)
		seed(m)
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, false)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, true)
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		resp := s.handle(pkt, tcp, netip.AddrPort{}, nil)
		if s.stats.panicked.Load() != 0 {
			t.Fatal("handler panicked")
		}
		if resp == nil {
			return
		}
		if len(resp) < 12 || resp[0] != pkt[0] || resp[1] != pkt[1] || resp[2]&0x80 == 0 {
			t.Fatalf("bad reply header % x", resp[:min(len(resp), 12)])
		}
		if !tcp && len(resp) > DefaultUDPSize {
			t.Fatalf("UDP reply of %d bytes", len(resp))
		}
		// Asked again (from the reply cache, if the query is cached), the
		// reply is the same, unless it is a signed update's.
		again := s.handle(pkt, tcp, netip.AddrPort{}, nil)
		if _, _, quick := quickKey(pkt, nil); quick && !bytes.Equal(again, resp) {
			t.Fatalf("second reply differs:\n% x\n% x", resp, again)
		}
	})
}
