package acme

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
)

// legoBinary finds lego, installing Debian's package when running as root
// without it; it skips the test only if lego cannot be had.
func legoBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("lego"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("lego is not installed and installing it needs root: apt-get install lego")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "lego")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if out, err := install(); err != nil {
		t.Logf("apt-get install lego: %v\n%s", err, out)
		if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
			t.Logf("apt-get update: %v\n%s", err, out)
		}
		if out, err := install(); err != nil {
			t.Skipf("lego is not installed and apt-get could not install it: %v\n%s", err, out)
		}
	}
	p, err := exec.LookPath("lego")
	if err != nil {
		t.Skipf("lego installed but not on PATH: %v", err)
	}
	return p
}

// TestLego has Debian's lego get a certificate for some.name.test over
// https from the server, answering http-01 itself, with an account made
// through an external account binding: the path the node's owner sets up
// (a zone of the node, a key id made with the ca's ctl).
func TestLego(t *testing.T) {
	lego := legoBinary(t)
	httpPort := testutil.FreePort(t)
	hmacKey := []byte("lego's external account hmac key")
	e := newEnv(t, func(o *Options) {
		o.HTTP01Port = httpPort
		o.Policy = func() *Policy {
			// A key id binds one account: one for each run of lego.
			return &Policy{Zones: []string{"name.test"},
				EAB: map[string][]byte{"localhost": hmacKey, "google.com": hmacKey, "lego": hmacKey}}
		}
	})

	dir := t.TempDir()
	caFile := filepath.Join(dir, "acme-server-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(path string, args ...string) ([]byte, error) {
		args = append([]string{"--server", e.dirURL, "--accept-tos", "--email", "admin@name.test",
			"--http", "--http.port", "127.0.0.1:" + strconv.Itoa(httpPort), "--path", filepath.Join(dir, path)}, args...)
		cmd := exec.CommandContext(ctx, lego, append(args, "run")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LEGO_CA_CERTIFICATES="+caFile, "HOME="+dir)
		cmd.WaitDelay = 5 * time.Second
		return cmd.CombinedOutput()
	}
	eab := func(kid string) []string { return []string{"--eab", "--kid", kid, "--hmac", b64enc(hmacKey)} }

	// Refused: no binding; localhost and a name outside the zones.
	if out, err := run("no-eab", "--domains", "some.name.test"); err == nil {
		t.Fatalf("lego without a binding got a certificate:\n%s", out)
	}
	for _, name := range []string{"localhost", "google.com"} {
		out, err := run("refused-"+name, append(eab(name), "--domains", name)...)
		if err == nil || !strings.Contains(string(out), "rejectedIdentifier") {
			t.Fatalf("lego for %s: %v, want rejectedIdentifier:\n%s", name, err, out)
		}
	}

	out, err := run("lego", append(eab("lego"), "--domains", "some.name.test")...)
	if err != nil {
		t.Fatalf("lego: %v\n%s", err, out)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, "lego", "certificates", "some.name.test.crt"))
	if err != nil {
		t.Fatalf("lego wrote no certificate: %v\n%s", err, out)
	}
	var chain []*x509.Certificate
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		t.Fatalf("no certificates in lego's file:\n%s", pemBytes)
	}
	if got := chain[0].DNSNames; len(got) != 1 || got[0] != "some.name.test" {
		t.Fatalf("leaf SANs %v, want [some.name.test]", got)
	}
	e.ca.verifyLeaf(t, chain, "some.name.test")

	// openssl agrees, when it is there.
	if openssl, err := exec.LookPath("openssl"); err == nil {
		root := filepath.Join(dir, "root.pem")
		inter := filepath.Join(dir, "inter.pem")
		leaf := filepath.Join(dir, "leaf.pem")
		for f, c := range map[string]*x509.Certificate{root: e.ca.root, inter: e.ca.inter, leaf: chain[0]} {
			if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.CommandContext(ctx, openssl, "verify", "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
	}
}
