package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDNSThroughFUSE: a record added with echo is answered by dig on the
// next query, over UDP, TCP and DoH on the node's HTTPS listener; with
// DNSSEC on, delv validates it against the zone's anchor; the node's own
// zone names its HTTPS listener.
func TestDNSThroughFUSE(t *testing.T) {
	dir := shortTemp(t)
	port := strconv.Itoa(freeDNSPort(t))
	os.MkdirAll(filepath.Join(dir, "modules", "dns"), 0700)
	os.WriteFile(filepath.Join(dir, "modules", "dns", "config"), []byte("listen 127.0.0.1:"+port+"\n"), 0600)
	n := startNode(t, dir)
	m := mount(t, n)
	work := shortTemp(t)
	sh(t, "echo 'zone add example.test' > "+m+"/dns/ctl")
	sh(t, "echo 'add www.example.test. 300 A 192.0.2.1' > "+m+"/dns/zones/example.test/ctl")
	dig := "dig @127.0.0.1 -p " + port + " +short +time=2 +tries=1 "
	if got := sh(t, dig+"www.example.test A"); strings.TrimSpace(got) != "192.0.2.1" {
		t.Errorf("dig: %q", got)
	}
	if got := sh(t, dig+"+tcp www.example.test A"); strings.TrimSpace(got) != "192.0.2.1" {
		t.Errorf("dig +tcp: %q", got)
	}
	// A zone file is committed when closed: cp sees the refusal at
	// close(2) through FUSE, and 9p write sees it at the clunk.
	os.WriteFile(filepath.Join(work, "bad.zone"), []byte("$ORIGIN example.test.\nwww 300 IN A 192.0.2.9\nbad line here\n"), 0644)
	if out := shFail(t, "cp "+work+"/bad.zone "+m+"/dns/zones/example.test/zone"); !strings.Contains(out, "close") && !strings.Contains(out, "rror") {
		t.Errorf("cp of a bad zone: %q", out)
	}
	if out, err := n.run("$ORIGIN example.test.\nwww 300 IN A 192.0.2.9\nbad line here\n", "9p", "write", "/dns/zones/example.test/zone"); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad zone: %v %s, want a refusal naming line 3", err, out)
	}
	if got := sh(t, dig+"www.example.test A"); strings.TrimSpace(got) != "192.0.2.1" {
		t.Errorf("after a refused zone: %q", got)
	}
	// DoH on the node's HTTPS listener, trusted through /ca.
	sh(t, "cp "+m+"/ca/root.pem "+work)
	host, hport, _ := strings.Cut(httpsAddr(t, m), ":")
	if got := sh(t, "dig @"+host+" -p "+hport+" +https +tls-ca="+work+"/root.pem +short +time=5 +tries=1 www.example.test A"); strings.TrimSpace(got) != "192.0.2.1" {
		t.Errorf("dig +https: %q", got)
	}
	// DNSSEC: delv validates against the zone's anchor.
	sh(t, "echo 'dnssec on' > "+m+"/dns/zones/example.test/ctl")
	sh(t, "cp "+m+"/dns/zones/example.test/anchor "+work+"/anchor")
	delv := "delv @127.0.0.1 -p " + port + " -a " + work + "/anchor +root=example.test "
	if out := sh(t, delv+"www.example.test A 2>&1"); !strings.Contains(out, "fully validated") {
		t.Errorf("delv positive:\n%s", out)
	}
	if out := sh(t, delv+"nope.example.test A 2>&1; true"); !strings.Contains(out, "fully validated") || !strings.Contains(out, "NXDOMAIN") && !strings.Contains(out, "ncache") {
		t.Errorf("delv NXDOMAIN:\n%s", out)
	}
	// The node's own zone.
	id := strings.TrimSpace(sh(t, "cat "+m+"/node/id"))
	if got := sh(t, dig+"https."+id+".cheshire A"); strings.TrimSpace(got) != host {
		t.Errorf("node names zone: https.%s.cheshire = %q, want %s", id, got, host)
	}
	// Zones survive a restart of the module.
	sh(t, "echo restart dns > "+m+"/modules/ctl")
	if got := sh(t, dig+"www.example.test A"); strings.TrimSpace(got) != "192.0.2.1" {
		t.Errorf("after restart: %q", got)
	}
}
