package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cheshire/module"
	"cheshire/providers/ca/acme"
)

func TestACMEConfig(t *testing.T) {
	t.Parallel()
	m := Module(openCA(t, t.TempDir(), nil), "test")
	for text, want := range map[string]string{
		"acme allow extra.test *.dev.test 192.0.2.1 10.0.0.0/8\nacme open\nacme orders 5 50\nacme authz 10\n": "",
		"acme account " + strings.Repeat("A", 43):                                                             "",
		"frob x":                "config line 1 (frob): unknown setting",
		"acme":                  "unknown setting",
		"acme allow":            "want acme allow",
		"acme allow bad_name":   "is not a DNS name",
		"acme account short":    "thumbprint",
		"acme open wide":        "want acme open",
		"acme orders 0":         "want a count",
		"acme authz 1 2 3":      "want acme authz",
		"acme\nacme allow x.io": "config line 1",
		"acme frob":             `unknown acme setting "frob"`,
	} {
		cfg, err := module.ParseConfig(text)
		if err != nil {
			t.Fatal(err)
		}
		err = m.CheckConfig(cfg)
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: %v, want %q", text, err, want)
		}
	}
}

// TestACMEPolicyOfTheNode: the policy the CA gives its ACME server comes
// from the module's config, the zones and the eab keys made in ctl, and
// acme/policy shows it; Debian's lego gets a certificate from the real CA
// for a name in a zone, through a key id made in ctl, and is refused the
// node's own names.
func TestACMEPolicyOfTheNode(t *testing.T) {
	t.Parallel()
	c, err := Open(t.TempDir(), Options{Name: "node1", Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	e := serve(t, c)
	m := Module(c, "test")
	cfg, _ := module.ParseConfig("acme allow extra.test\nacme orders 5\n")
	inst, err := m.Start(t.Context(), module.Env{Name: "ca", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Stop(t.Context())
	c.SetZones(func() []string { return []string{"zone.test.", "node1.cheshire."} })
	e.mustCtl("eab add lego\neab add spare")

	p := c.ACMEPolicy()
	if p.Open || len(p.EAB) != 2 || p.MaxOrders != 5 || strings.Join(p.Allow, " ") != "extra.test" {
		t.Errorf("policy %+v", p)
	}
	text := e.mustRead("acme/policy")
	for _, want := range []string{"zones zone.test. node1.cheshire.\n", "allow extra.test\n", "eab lego spare\n",
		"open no\n", "orders 5 1000\n", "authz 300 3000\n", "*.node1.cheshire"} {
		if !strings.Contains(text, want) {
			t.Errorf("acme/policy lacks %q:\n%s", want, text)
		}
	}
	hmacOf := func(kid string) string {
		for line := range strings.SplitSeq(e.mustRead("acme/eab/"+kid), "\n") {
			if v, ok := strings.CutPrefix(line, "hmac "); ok {
				return v
			}
		}
		t.Fatalf("acme/eab/%s has no hmac line", kid)
		return ""
	}
	keys := map[string]string{"lego": hmacOf("lego"), "spare": hmacOf("spare")}
	if err := e.ctl("eab add lego"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second eab add lego: %v", err)
	}
	// Reconfigured in place, the policy follows.
	cfg, _ = module.ParseConfig("acme allow extra.test other.test\n")
	if err := inst.(module.Reconfigurer).Reconfigure(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.ACMEPolicy().Allow, " "); got != "extra.test other.test" {
		t.Errorf("after Reconfigure, allow %q", got)
	}

	lego, err := exec.LookPath("lego")
	if err != nil {
		t.Skip("lego not installed (test.sh installs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv, err := c.ACME(acme.Options{Prefix: "/acme", HTTP01Port: httpPort,
		Resolve: func(context.Context, string) ([]net.IP, error) { return []net.IP{net.IPv4(127, 0, 0, 1)}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/acme/", srv)
	ts := httptest.NewTLSServer(mux)
	defer ts.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "server.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	run := func(path, kid, name string) (string, error) {
		cmd := exec.CommandContext(ctx, lego, "--server", ts.URL+"/acme/directory", "--accept-tos",
			"--email", "admin@zone.test", "--eab", "--kid", kid, "--hmac", keys[kid], "--domains", name,
			"--http", "--http.port", "127.0.0.1:"+strconv.Itoa(httpPort), "--path", filepath.Join(dir, path), "run")
		cmd.Env = append(os.Environ(), "LEGO_CA_CERTIFICATES="+caFile, "HOME="+dir)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("refused", "spare", "https.node1.cheshire"); err == nil || !strings.Contains(out, "rejectedIdentifier") {
		t.Fatalf("lego for the node's own name: %v\n%s", err, out)
	}
	if out, err := run("lego", "lego", "www.zone.test"); err != nil {
		t.Fatalf("lego: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "lego", "certificates", "www.zone.test.crt"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := parseCertPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "www.zone.test", Roots: c.RootPool(), Intermediates: pool(c.Intermediate())}); err != nil {
		t.Errorf("lego's certificate does not verify against the CA's root: %v", err)
	}
	// Withdrawn, the key id's account can order nothing more.
	e.mustCtl("eab remove lego")
	if out, err := run("lego", "lego", "www.zone.test"); err == nil {
		t.Fatalf("lego with a withdrawn key id got a certificate:\n%s", out)
	}
}
