package dns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// signedServer serves example.test (goodZone) signed.
func signedServer(t *testing.T) *testServer {
	t.Helper()
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	if err := ts.writeFile("zones/example.test/zone", goodZone); err != nil {
		t.Fatal(err)
	}
	ts.ctl("zones/example.test/ctl", "dnssec on")
	return ts
}

// delv runs delv against ts with the zone's trust anchor.
func (ts *testServer) delv(args ...string) string {
	ts.t.Helper()
	anchor := filepath.Join(ts.t.TempDir(), "anchor.key")
	if err := os.WriteFile(anchor, []byte(ts.readFile("zones/example.test/anchor")), 0644); err != nil {
		ts.t.Fatal(err)
	}
	all := append([]string{"@127.0.0.1", "-p", ts.port, "-a", anchor, "+root=example.test"}, args...)
	out, _ := run(ts.t, "delv", all...)
	return out
}

func TestDelv(t *testing.T) {
	ts := signedServer(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"www.example.test", "A"}, "; fully validated"},
		{[]string{"nope.example.test", "A"}, "; negative response, fully validated"},
		{[]string{"www.example.test", "AAAA"}, "; negative response, fully validated"},
		{[]string{"b.c.example.test", "A"}, "; negative response, fully validated"},
		{[]string{"x.wild.example.test", "A"}, "; fully validated"},
		{[]string{"x.wild.example.test", "MX"}, "; negative response, fully validated"},
		{[]string{"deep.alias.example.test", "A"}, "; fully validated"},
		{[]string{"example.test", "DNSKEY"}, "; fully validated"},
		{[]string{"sub.example.test", "DS"}, "; negative response, fully validated"},
	} {
		out := ts.delv(c.args...)
		if !strings.Contains(out, c.want) {
			t.Errorf("delv %v: want %q:\n%s", c.args, c.want, out)
		}
	}
}

func TestDigDNSSEC(t *testing.T) {
	ts := signedServer(t)
	out := ts.dig("+dnssec", "www.example.test", "A")
	if !strings.Contains(out, "RRSIG\tA 13 3 300") {
		t.Errorf("dig +dnssec: no RRSIG:\n%s", out)
	}
	out = ts.dig("www.example.test", "A")
	if strings.Contains(out, "RRSIG") {
		t.Errorf("RRSIG without DO:\n%s", out)
	}
	r := ts.query("nope.example.test", dns.TypeA, false, true)
	var nsec int
	for _, rr := range r.Ns {
		if rr.Header().Rrtype == dns.TypeNSEC {
			nsec++
		}
	}
	if r.Rcode != dns.RcodeNameError || nsec == 0 {
		t.Errorf("NXDOMAIN with DO: %v", r)
	}
}

// TestRollKey rolls the key: during the roll both the old and the new
// anchor validate; after "rollkey done" only the new one does.
func TestRollKey(t *testing.T) {
	ts := signedServer(t)
	oldAnchor := ts.readFile("zones/example.test/anchor")
	ts.ctl("zones/example.test/ctl", "rollkey")
	if n := strings.Count(ts.readFile("zones/example.test/dnskey"), "DNSKEY"); n != 2 {
		t.Fatalf("%d keys published during the roll", n)
	}
	st := ts.readFile("zones/example.test/ctl")
	if !strings.Contains(st, " retired ") || !strings.Contains(st, " active ") {
		t.Errorf("status %q", st)
	}
	delvWith := func(anchor string) string {
		p := filepath.Join(t.TempDir(), "anchor.key")
		os.WriteFile(p, []byte(anchor), 0644)
		out, _ := run(t, "delv", "@127.0.0.1", "-p", ts.port, "-a", p, "+root=example.test", "www.example.test", "A")
		return out
	}
	if out := delvWith(oldAnchor); !strings.Contains(out, "; fully validated") {
		t.Errorf("old anchor during roll:\n%s", out)
	}
	ts.ctl("zones/example.test/ctl", "rollkey done")
	newAnchor := ts.readFile("zones/example.test/anchor")
	if newAnchor == oldAnchor || strings.Count(newAnchor, "static-key") != 1 {
		t.Fatalf("anchor after roll:\n%s", newAnchor)
	}
	if out := delvWith(newAnchor); !strings.Contains(out, "; fully validated") {
		t.Errorf("new anchor after roll:\n%s", out)
	}
	if out := delvWith(oldAnchor); strings.Contains(out, "; fully validated") {
		t.Errorf("old anchor after roll still validates:\n%s", out)
	}
	if ds := ts.readFile("zones/example.test/ds"); !strings.Contains(ds, "IN\tDS\t") {
		t.Errorf("ds %q", ds)
	}
	// The key survives a restart.
	s2, err := New(ts.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.zone("example.test.").conf.anchorText("example.test."); got != newAnchor {
		t.Errorf("anchor after restart:\n%s\nwant\n%s", got, newAnchor)
	}
	fi, err := os.Stat(filepath.Join(ts.dir, "zones", "example.test.conf"))
	if err != nil || fi.Mode().Perm() != 0600 {
		t.Errorf("settings file: %v %v", fi.Mode(), err)
	}
}

// TestNestedZones serves a parent and a child zone: the DS of the child
// comes from the parent, and delv validates the child through the
// parent's anchor.
func TestNestedZones(t *testing.T) {
	ts := signedServer(t)
	ts.ctl("ctl", "zone add child.example.test")
	ts.ctl("zones/child.example.test/ctl", "dnssec on\nadd www 300 A 192.0.2.77")
	var add strings.Builder
	add.WriteString("add child 300 NS ns.child\nadd ns.child 300 A 192.0.2.53\n")
	for _, line := range strings.Split(strings.TrimSpace(ts.readFile("zones/child.example.test/ds")), "\n") {
		f := strings.Fields(line)
		add.WriteString("add child 300 DS " + strings.Join(f[4:], " ") + "\n")
	}
	ts.ctl("zones/example.test/ctl", add.String())
	r := ts.query("child.example.test", dns.TypeDS, false, true)
	if len(r.Answer) < 2 || !r.Authoritative {
		t.Fatalf("DS of the child: %v", r)
	}
	if out := ts.delv("www.child.example.test", "A"); !strings.Contains(out, "; fully validated") {
		t.Errorf("delv through the delegation:\n%s", out)
	}
	// The child has the default SOA (TTL 3600, minimum 300): its negative
	// answers carry the SOA with TTL 300 under a signature made for 3600.
	if out := ts.delv("nope.child.example.test", "A"); !strings.Contains(out, "; negative response, fully validated") {
		t.Errorf("delv NXDOMAIN in the child:\n%s", out)
	}
}
