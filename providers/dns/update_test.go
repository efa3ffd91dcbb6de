package dns

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="

// nsupdate runs nsupdate with key ("hmac-sha256:NAME:SECRET") and the
// commands in script, returning its output and whether it succeeded.
func (ts *testServer) nsupdate(key, script string) (string, bool) {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, needTool(ts.t, "nsupdate"), "-y", key, "-t", "3")
	cmd.Stdin = strings.NewReader("server 127.0.0.1 " + ts.port + "\nzone example.test\n" + script + "send\n")
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func TestNsupdate(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	ts.ctl("zones/example.test/ctl", "tsig add upd hmac-sha256 "+testSecret)
	key := "hmac-sha256:upd:" + testSecret
	if out, ok := ts.nsupdate(key, "update add new.example.test. 300 A 192.0.2.42\n"); !ok {
		t.Fatalf("nsupdate: %s", out)
	}
	if out := ts.dig("+short", "new.example.test"); strings.TrimSpace(out) != "192.0.2.42" {
		t.Fatalf("after update: %q", out)
	}
	// A prerequisite that fails changes nothing.
	out, ok := ts.nsupdate(key, "prereq nxdomain new.example.test\nupdate add new.example.test. 300 A 192.0.2.43\n")
	if ok || !strings.Contains(out, "YXDOMAIN") {
		t.Errorf("failed prerequisite: ok %v: %s", ok, out)
	}
	// Prerequisites that hold, a delete and an add, at once.
	if out, ok := ts.nsupdate(key, "prereq yxrrset new.example.test A 192.0.2.42\nupdate delete new.example.test A\nupdate add new.example.test. 300 A 192.0.2.44\n"); !ok {
		t.Fatalf("nsupdate: %s", out)
	}
	if out := ts.dig("+short", "new.example.test"); strings.TrimSpace(out) != "192.0.2.44" {
		t.Fatalf("after replace: %q", out)
	}
	// A wrong secret and an unknown key are refused.
	for _, bad := range []string{"hmac-sha256:upd:" + strings.Replace(testSecret, "c2", "d2", 1), "hmac-sha256:other:" + testSecret} {
		out, ok := ts.nsupdate(bad, "update add evil.example.test. 300 A 192.0.2.66\n")
		if ok {
			t.Errorf("bad key %s accepted: %s", bad, out)
		}
	}
	if out := ts.dig("evil.example.test"); !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("bad key's update applied:\n%s", out)
	}
	// Unsigned updates are refused.
	m := new(dns.Msg)
	m.SetUpdate("example.test.")
	rr, _ := dns.NewRR("evil.example.test. 300 A 192.0.2.66")
	m.Insert([]dns.RR{rr})
	if r := ts.exchange(m, false); r.Rcode != dns.RcodeRefused {
		t.Errorf("unsigned update: %s", dns.RcodeToString[r.Rcode])
	}
	log := ts.readLogNow("zones/example.test/log")
	for _, want := range []string{"key upd.: add new.example.test.", "refused: BADSIG", "refused: BADKEY", "not signed"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The serial went up with each change.
	if st := ts.readFile("zones/example.test/ctl"); !strings.Contains(st, "serial 3\n") {
		t.Errorf("status %q", st)
	}
}
