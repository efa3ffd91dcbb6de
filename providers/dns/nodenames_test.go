package dns

import (
	"net"
	"strings"
	"testing"
)

func TestNodeNames(t *testing.T) {
	ts := newTestServer(t, "")
	err := ts.SetNodeNames("node.test", map[string][]net.IP{
		"@":   {net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")},
		"foo": {net.ParseIP("192.0.2.2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := ts.dig("+short", "node.test", "AAAA"); strings.TrimSpace(out) != "2001:db8::1" {
		t.Errorf("AAAA %q", out)
	}
	if out := ts.dig("+short", "foo.node.test"); strings.TrimSpace(out) != "192.0.2.2" {
		t.Errorf("foo %q", out)
	}
	serial := ts.zone("node.test.").soa.Serial
	// The same addresses again change nothing.
	ts.SetNodeNames("node.test", map[string][]net.IP{
		"node.test.": {net.ParseIP("2001:db8::1"), net.ParseIP("192.0.2.1")},
		"foo":        {net.ParseIP("192.0.2.2")},
	})
	if s := ts.zone("node.test.").soa.Serial; s != serial {
		t.Errorf("serial %d -> %d without a change", serial, s)
	}
	// foo goes away, the apex changes address; other records stay.
	ts.ctl("zones/node.test/ctl", "add bar 300 A 192.0.2.9")
	s2, err := New(ts.dir, Options{}) // the managed names survive a restart
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.SetNodeNames("node.test", map[string][]net.IP{"@": {net.ParseIP("192.0.2.3")}}); err != nil {
		t.Fatal(err)
	}
	text, _ := s2.ZoneText("node.test")
	if strings.Contains(string(text), "foo.node.test") || strings.Contains(string(text), "192.0.2.1") ||
		!strings.Contains(string(text), "192.0.2.3") || !strings.Contains(string(text), "bar.node.test") {
		t.Errorf("zone after change:\n%s", text)
	}
	if err := ts.SetNodeNames("node.test", map[string][]net.IP{"x.other.test.": nil}); err == nil {
		t.Errorf("name outside the zone accepted")
	}
}
