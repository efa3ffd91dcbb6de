package dns

import (
	"strings"
	"testing"
)

// TestAppNames: `app NAME FQDN` maps a name of a served zone to an app,
// answered (dig) with the node's HTTPS addresses and followed by
// them; NAME.app.ZONE names every app by the node zone's wildcard; the
// mapping survives a restart; unapp removes it; bad lines are refused
// whole, with nothing changed.
func TestAppNames(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	ts.ctl("ctl", "app xev www.example.test")
	if err := ts.PublishListeners("node.test", []string{"https!127.0.0.7!443", "tls!127.0.0.8!564"}); err != nil {
		t.Fatal(err)
	}
	if out := ts.dig("+short", "www.example.test"); strings.TrimSpace(out) != "127.0.0.7" {
		t.Errorf("www.example.test: %q", out)
	}
	if out := ts.dig("+short", "xev.app.node.test"); strings.TrimSpace(out) != "127.0.0.7" {
		t.Errorf("xev.app.node.test: %q", out)
	}
	if out := ts.dig("+short", "node.test"); strings.TrimSpace(out) != "127.0.0.8" {
		t.Errorf("the apex: %q", out)
	}
	for host, want := range map[string]string{"WWW.example.test": "xev", "www.example.test.": "xev", "paint.app.node.test": "paint",
		"node.test": "", "a.b.app.node.test": "", "127.0.0.7": "", "other.example.test": ""} {
		if got, ok := ts.AppOf(host); got != want || ok != (want != "") {
			t.Errorf("AppOf(%q) = %q %v, want %q", host, got, ok, want)
		}
	}
	if !ts.Mapped("www.example.test") || ts.Mapped("paint.app.node.test") {
		t.Error("Mapped wrong")
	}
	if st := ts.readFile("ctl"); !strings.Contains(st, "app xev www.example.test.") {
		t.Errorf("ctl status:\n%s", st)
	}
	// The addresses move: the app's name follows.
	if err := ts.PublishListeners("node.test", []string{"https!127.0.0.9!443"}); err != nil {
		t.Fatal(err)
	}
	if out := ts.dig("+short", "www.example.test"); strings.TrimSpace(out) != "127.0.0.9" {
		t.Errorf("www.example.test after a move: %q", out)
	}
	// Bad lines: the whole write is refused.
	for _, bad := range []string{"app xev www.nowhere.test", "app Bad_Name x.example.test", "app xev *.example.test",
		"unapp none.example.test", "app a b.example.test\napp xev q.nowhere.test"} {
		if err := ts.writeFile("ctl", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, ok := ts.AppOf("b.example.test"); ok {
		t.Error("a line of a refused write applied")
	}
	s2, err := New(ts.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s2.AppOf("www.example.test"); !ok || got != "xev" {
		t.Errorf("after restart: %q %v", got, ok)
	}
	ts.ctl("ctl", "unapp www.example.test")
	if _, ok := ts.AppOf("www.example.test"); ok {
		t.Error("unapp left the name")
	}
	text, _ := ts.ZoneText("example.test")
	if strings.Contains(string(text), "www.example.test") {
		t.Errorf("unapp left the record:\n%s", text)
	}
}
