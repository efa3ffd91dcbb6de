package dns

import (
	"bytes"
	"context"
	"net/netip"
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
	told := make(chan string, 10)
	tell := func(op, p, newPath string) { told <- op + " " + p }
	ts.changed.Store(&tell)
	key := "hmac-sha256:upd:" + testSecret
	if out, ok := ts.nsupdate(key, "update add new.example.test. 300 A 192.0.2.42\n"); !ok {
		t.Fatalf("nsupdate: %s", out)
	}
	// Those watching the files are told (module.Env's Changed).
	select {
	case got := <-told:
		if got != "write /zones/example.test/zone" {
			t.Errorf("told %q, want write /zones/example.test/zone", got)
		}
	default:
		t.Error("an update was not told to the files' watchers")
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

// TestTSIGLeavesRequest: checking a request's TSIG does not write over
// the request (miekg's TsigVerify puts the Original ID in place of the ID
// and lowers the additional count in its argument), so a reply to a
// request whose TSIG carries another Original ID keeps the request's ID,
// and the caller's buffer is as it came.
func TestTSIGLeavesRequest(t *testing.T) {
	t.Parallel()
	s := fuzzServer(t)
	m := new(dns.Msg)
	m.SetUpdate("example.test.")
	rr, _ := dns.NewRR("new.example.test. 300 A 192.0.2.1")
	m.Insert([]dns.RR{rr})
	m.SetTsig("upd.", dns.HmacSHA256, 300, time.Now().Unix())
	m.Id = 0x1234
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// Unsigned: the MAC is empty. Give the TSIG another Original ID.
	orig := bytes.Clone(wire)
	wire[len(wire)-6], wire[len(wire)-5] = 0x97, 0x32
	orig[len(orig)-6], orig[len(orig)-5] = 0x97, 0x32
	resp := s.handle(wire, false, netip.AddrPort{}, nil)
	if !bytes.Equal(wire, orig) {
		t.Errorf("the request was written over:\n% x\nwas\n% x", wire[:12], orig[:12])
	}
	if resp == nil || resp[0] != 0x12 || resp[1] != 0x34 {
		t.Errorf("reply ID % x, want 12 34", resp[:min(2, len(resp))])
	}
}
