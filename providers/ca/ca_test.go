package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cheshire/module"
	"cheshire/styx"
	"cheshire/synth/synthtest"
)

func TestIssueVerifiedByOpenSSL(t *testing.T) {
	e := newEnv(t)
	e.mustCtl("issue www www.example.test 127.0.0.1 ttl=30d")
	root := e.save("root.pem", "root.pem")
	inter := e.save("intermediate.pem", "intermediate.pem")
	cert := e.save("certs/www/cert.pem", "cert.pem")
	out := mustRun(t, "openssl", "verify", "-CAfile", root, "-untrusted", inter, cert)
	if !strings.Contains(out, "cert.pem: OK") {
		t.Fatalf("openssl verify: %s", out)
	}
	text := mustRun(t, "openssl", "x509", "-in", cert, "-noout", "-text")
	for _, want := range []string{"DNS:www.example.test", "IP Address:127.0.0.1",
		"TLS Web Server Authentication", "TLS Web Client Authentication", "ASN1 OID: prime256v1"} {
		if !strings.Contains(text, want) {
			t.Errorf("certificate lacks %q:\n%s", want, text)
		}
	}
	itext := mustRun(t, "openssl", "x509", "-in", inter, "-noout", "-text")
	if !strings.Contains(itext, "CA:TRUE, pathlen:0") {
		t.Errorf("intermediate is not a CA of path length 0:\n%s", itext)
	}

	// The key matches, the chain is leaf then intermediate.
	chain := e.mustRead("certs/www/chain.pem")
	if n := strings.Count(chain, "BEGIN CERTIFICATE"); n != 2 {
		t.Errorf("chain has %d certificates, want 2", n)
	}
	if _, err := tls.X509KeyPair([]byte(chain), []byte(e.mustRead("certs/www/key.pem"))); err != nil {
		t.Errorf("key.pem does not match: %v", err)
	}
	if st, err := e.statOf("certs/www/key.pem"); err != nil || st.Mode&0077 != 0 {
		t.Errorf("key.pem mode %o, %v; want owner only", st.Mode, err)
	}
	if fi, err := os.Stat(filepath.Join(e.ca.Dir(), "certs/www/key.pem")); err != nil || fi.Mode().Perm() != 0600 {
		t.Errorf("key on disk: %v %v", fi.Mode(), err)
	}
	for _, f := range []string{"root.key", "intermediate.key", "ssh/ca"} {
		if fi, err := os.Stat(filepath.Join(e.ca.Dir(), f)); err != nil || fi.Mode().Perm() != 0600 {
			t.Errorf("%s on disk: %v %v", f, fi.Mode(), err)
		}
	}
	if got := e.info("www", "sans"); got != "www.example.test 127.0.0.1" {
		t.Errorf("info sans %q", got)
	}
	if got := e.info("www", "revoked"); got != "no" {
		t.Errorf("info revoked %q", got)
	}
	nb, _ := time.Parse(time.RFC3339, e.info("www", "not-before"))
	na, _ := time.Parse(time.RFC3339, e.info("www", "not-after"))
	if d := na.Sub(nb); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("lifetime %v, want 30 days", d)
	}

	// Renew keeps the names, changes the serial.
	serial := e.info("www", "serial")
	e.mustCtl("renew www")
	if e.info("www", "serial") == serial || e.info("www", "sans") != "www.example.test 127.0.0.1" {
		t.Errorf("renew: serial %s sans %s", e.info("www", "serial"), e.info("www", "sans"))
	}
	synthtest.TestServer(t, e.ca.Files(), owner)
}

func (e *env) statOf(p string) (styx.Dir, error) {
	_, f, err := e.root.Walk(e.ctx, styx.SplitPath(p)...)
	if err != nil {
		return styx.Dir{}, err
	}
	defer f.Clunk(e.ctx)
	return f.Stat(e.ctx)
}

func TestReopenKeepsCA(t *testing.T) {
	dir := t.TempDir()
	a := openCA(t, dir, nil)
	is, err := a.Issue("svc", []string{"svc.test"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := openCA(t, dir, nil)
	if !bytes.Equal(a.RootPEM(), b.RootPEM()) || !bytes.Equal(a.IntermediatePEM(), b.IntermediatePEM()) {
		t.Fatal("reopened CA has another root or intermediate")
	}
	got, ok := b.Get("svc")
	if !ok || got.Serial() != is.Serial() {
		t.Fatalf("reopened CA lost svc: %v", ok)
	}
	if !bytes.Equal(a.SSHCAPub(), b.SSHCAPub()) {
		t.Fatal("reopened CA has another ssh key")
	}
	// A damaged directory is refused, with the reason.
	os.Remove(filepath.Join(dir, "intermediate.key"))
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "intermediate.key missing") {
		t.Fatalf("incomplete CA opened: %v", err)
	}
}

func TestRevokeAndCRL(t *testing.T) {
	e := newEnv(t)
	e.mustCtl("issue old old.example.test\nissue keep keep.example.test")
	serial := e.info("old", "serial")
	e.mustCtl("revoke " + serial + " keyCompromise")
	if got := e.info("old", "revoked"); got != "yes" {
		t.Errorf("info revoked %q", got)
	}
	if got := e.info("old", "reason"); got != "keyCompromise" {
		t.Errorf("info reason %q", got)
	}
	crl := e.save("crl.pem", "crl.pem")
	text := mustRun(t, "openssl", "crl", "-in", crl, "-noout", "-text")
	n, _ := parseSerial(serial)
	if !strings.Contains(strings.ToUpper(text), strings.ToUpper(fmt.Sprintf("%X", n))) {
		t.Errorf("crl does not list %s:\n%s", serial, text)
	}
	if !strings.Contains(text, "Key Compromise") {
		t.Errorf("crl does not give the reason:\n%s", text)
	}
	// openssl checks the CRL's signature and refuses the revoked
	// certificate, and accepts the other.
	root := e.save("root.pem", "root.pem")
	inter := e.save("intermediate.pem", "intermediate.pem")
	both := filepath.Join(e.tmp, "cas.pem")
	os.WriteFile(both, []byte(e.mustRead("root.pem")+e.mustRead("intermediate.pem")), 0600)
	old := e.save("certs/old/cert.pem", "old.pem")
	keep := e.save("certs/keep/cert.pem", "keep.pem")
	out, err := run(t, "openssl", "verify", "-crl_check", "-CAfile", both, "-CRLfile", crl, old)
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("revoked certificate verified: %v\n%s", err, out)
	}
	mustRun(t, "openssl", "verify", "-crl_check", "-CAfile", both, "-CRLfile", crl, keep)
	_ = root
	_ = inter

	// Refusals name the command and change nothing.
	for line, want := range map[string]string{
		"revoke " + serial:              "already revoked",
		"revoke abcdef0123":             "no certificate with serial",
		"revoke xyz":                    "bad serial",
		"revoke " + serial + " because": "unknown reason",
	} {
		err := e.ctl(line)
		if err == nil || !strings.HasPrefix(err.Error(), "revoke: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want revoke: ...%s", line, err, want)
		}
	}
	if err := e.ctl("revoke"); err == nil || err.Error() != `bad # args to command "revoke": usage: revoke SERIAL [reason]` {
		t.Errorf("revoke without a serial: %v", err)
	}
	if e.mustRead("crl.pem") == "" {
		t.Error("crl.pem empty")
	}
}

func TestCRLRefreshedDaily(t *testing.T) {
	clk := newClock()
	c := openCA(t, t.TempDir(), clk.Now)
	parse := func() *x509.RevocationList {
		t.Helper()
		p, err := c.CRL()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(p)
		rl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := rl.CheckSignatureFrom(c.Intermediate()); err != nil {
			t.Fatalf("crl signature: %v", err)
		}
		return rl
	}
	a := parse()
	if d := a.NextUpdate.Sub(a.ThisUpdate); d < CRLLifetime || d > CRLLifetime+2*time.Minute {
		t.Errorf("NextUpdate %v after ThisUpdate", d)
	}
	clk.Advance(time.Hour)
	if b := parse(); b.Number.Cmp(a.Number) != 0 {
		t.Error("crl made again within the day")
	}
	clk.Advance(24 * time.Hour)
	b := parse()
	if b.Number.Cmp(a.Number) <= 0 || !b.ThisUpdate.After(a.ThisUpdate) {
		t.Errorf("crl not refreshed after a day: number %v -> %v", a.Number, b.Number)
	}
	is, err := c.Issue("x", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(is.Serial(), "superseded"); err != nil {
		t.Fatal(err)
	}
	r := parse()
	if r.Number.Cmp(b.Number) <= 0 || len(r.RevokedCertificateEntries) != 1 ||
		r.RevokedCertificateEntries[0].ReasonCode != 4 || r.RevokedCertificateEntries[0].SerialNumber.Cmp(is.Cert.SerialNumber) != 0 {
		t.Errorf("crl after revoke: %+v", r.RevokedCertificateEntries)
	}
}

func TestHTTPSWithCurlAndGo(t *testing.T) {
	e := newEnv(t)
	// (httptest's StartTLS would put its own certificate first.)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", e.ca.TLSConfig("web", []string{"127.0.0.1", "localhost"}))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from cheshire\n")
	}), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(ln)
	defer hs.Close()
	srv := struct{ URL string }{"https://" + ln.Addr().String()}
	root := e.save("root.pem", "root.pem")
	out := mustRun(t, "curl", "-sS", "--max-time", "10", "--cacert", root, srv.URL+"/")
	if out != "hello from cheshire\n" {
		t.Fatalf("curl: %q", out)
	}
	// Without the root curl refuses the server.
	if out, err := run(t, "curl", "-sS", "--max-time", "10", srv.URL+"/"); err == nil {
		t.Fatalf("curl trusted the server without the root: %s", out)
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: e.ca.ClientTLSConfig()}}
	resp, err := cl.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from cheshire\n" {
		t.Fatalf("go client: %q", body)
	}
	// The endpoint's certificate is in certs/ like any other.
	if got := e.info("web", "sans"); got != "127.0.0.1" && !strings.Contains(got, "localhost") {
		t.Errorf("web sans %q", got)
	}
}

func TestTLSRenewsItself(t *testing.T) {
	clk := newClock()
	c := openCA(t, t.TempDir(), clk.Now)
	if _, err := c.Issue("web", []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.TLSConfig("web", []string{"127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	serial := func() *big.Int {
		t.Helper()
		cfg := c.ClientTLSConfig()
		cfg.Time = clk.Now
		d := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	first := serial()
	clk.Advance(30 * time.Minute)
	if s := serial(); s.Cmp(first) != 0 {
		t.Fatalf("renewed before two thirds of the lifetime")
	}
	clk.Advance(15 * time.Minute)
	second := serial()
	if second.Cmp(first) == 0 {
		t.Fatal("not renewed after two thirds of the lifetime")
	}
	is, _ := c.Get("web")
	if d := is.Cert.NotAfter.Sub(clk.Now()); d < 55*time.Minute || d > 61*time.Minute {
		t.Errorf("renewed for %v, want the same hour", d)
	}
	// Revoking the served certificate replaces it at the next handshake.
	if err := c.Revoke(serialText(second), "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	if s := serial(); s.Cmp(second) == 0 {
		t.Fatal("revoked certificate still served")
	}
}

// csrPEM makes a request for names with a new key.
func csrPEM(t *testing.T, cn string, dns []string, ips []net.IP) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"ignored"}}, DNSNames: dns, IPAddresses: ips}, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// csr writes req to csr and reads the answer on the same fid.
func (e *env) csr(req []byte) (string, error) {
	f, err := e.open("csr", styx.ORDWR)
	if err != nil {
		return "", err
	}
	defer f.Clunk(e.ctx)
	for off := 0; off < len(req); off += 100 { // in pieces, as a shell writes
		end := min(off+100, len(req))
		if _, err := f.WriteAt(e.ctx, req[off:end], int64(off)); err != nil {
			return "", err
		}
	}
	b, err := f.ReadAll(e.ctx)
	return string(b), err
}

func TestCSR(t *testing.T) {
	e := newEnv(t)
	// A request made by openssl, the usual client.
	key := filepath.Join(e.tmp, "req.key")
	req := filepath.Join(e.tmp, "req.pem")
	mustRun(t, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", req, "-subj", "/CN=api.example.test/O=Evil Corp",
		"-addext", "subjectAltName=DNS:api.example.test,IP:10.0.0.1")
	data, err := os.ReadFile(req)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := e.csr(data)
	if err != nil {
		t.Fatalf("csr: %v", err)
	}
	if n := strings.Count(chain, "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("csr answered %d certificates:\n%s", n, chain)
	}
	chainFile := filepath.Join(e.tmp, "chain.pem")
	os.WriteFile(chainFile, []byte(chain), 0600)
	root := e.save("root.pem", "root.pem")
	inter := e.save("intermediate.pem", "intermediate.pem")
	out := mustRun(t, "openssl", "verify", "-CAfile", root, "-untrusted", inter, chainFile)
	if !strings.Contains(out, "OK") {
		t.Fatalf("verify: %s", out)
	}
	text := mustRun(t, "openssl", "x509", "-in", chainFile, "-noout", "-subject", "-ext", "subjectAltName")
	if !strings.Contains(text, "CN = api.example.test") || strings.Contains(text, "Evil") ||
		!strings.Contains(text, "DNS:api.example.test") || !strings.Contains(text, "IP Address:10.0.0.1") {
		t.Errorf("signed certificate:\n%s", text)
	}
	if _, err := tls.X509KeyPair([]byte(chain), mustReadFile(t, key)); err != nil {
		t.Errorf("chain does not go with the request's key: %v", err)
	}

	// The signed certificate can be revoked.
	leaf, _ := parseCertPEM([]byte(chain))
	e.mustCtl("revoke " + serialText(leaf.SerialNumber) + " cessationOfOperation")

	// Bad requests are refused with reasons, on read.
	good := csrPEM(t, "", []string{"ok.example.test"}, nil)
	blk, _ := pem.Decode(good)
	tampered := bytes.Clone(blk.Bytes)
	tampered[len(tampered)-5] ^= 0xff // in the signature
	for name, tc := range map[string]struct {
		req  []byte
		want string
	}{
		"garbage":       {[]byte("hello, world\n"), "not a PEM or DER request"},
		"wrong block":   {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes}), "not \"CERTIFICATE REQUEST\""},
		"bad signature": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), "signature does not verify"},
		"no names":      {csrPEM(t, "", nil, nil), "names nothing"},
		"bad cn":        {csrPEM(t, "not a host name!", nil, nil), "is not a dns name"},
		"bad dns":       {csrPEM(t, "", []string{"-bad-.example"}, nil), "bad dns name"},
		"truncated":     {good[:len(good)/2], "bad certificate request"},
	} {
		_, err := e.csr(tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	// Reading before writing, and writing after the answer, fail clearly.
	f, err := e.open("csr", styx.ORDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Clunk(e.ctx)
	buf := make([]byte, 100)
	if _, err := f.ReadOnce(e.ctx, buf, 0); err == nil || !strings.Contains(err.Error(), "write a certificate request first") {
		t.Errorf("read before write: %v", err)
	}
	if _, err := f.WriteAt(e.ctx, good, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAll(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(e.ctx, good, 0); err == nil || !strings.Contains(err.Error(), "already answered") {
		t.Errorf("write after answer: %v", err)
	}
	// Others may not sign.
	ro, err := e.root.Client().Attach(e.ctx, nil, "mallory", "")
	if err != nil {
		t.Fatal(err)
	}
	_, mf, err := ro.Walk(e.ctx, "csr")
	if err != nil {
		t.Fatal(err)
	}
	if err := mf.Open(e.ctx, styx.ORDWR); err == nil {
		t.Error("another user opened csr")
	}
	mf.Clunk(e.ctx)
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignCSRAPI(t *testing.T) {
	c := openCA(t, t.TempDir(), nil)
	if _, err := c.SignCSR(nil, 0); !errors.Is(err, ErrBadCSR) {
		t.Errorf("nil csr: %v", err)
	}
	req, err := ParseCSR(csrPEM(t, "a.test", []string{"b.test"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := c.SignCSR(req, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if leaf.Subject.CommonName != "a.test" || len(leaf.DNSNames) != 2 || !chain[1].Equal(c.Intermediate()) {
		t.Errorf("leaf cn %q names %v", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.RootPool(), Intermediates: pool(chain[1]), DNSName: "a.test"}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := c.SignCSR(req, 2*MaxTTL); err == nil {
		t.Error("ttl beyond the maximum accepted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.SignCSRContext(ctx, req, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sign: %v", err)
	}
}

func TestModule(t *testing.T) {
	c := openCA(t, t.TempDir(), nil)
	m := Module(c, "test")
	if mf := m.Manifest(); mf.Name != "ca" || mf.Mount != "/ca" {
		t.Fatalf("manifest %+v", mf)
	}
	inst, err := m.Start(t.Context(), module.Env{Name: "ca"})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Stop(t.Context())
	f, err := inst.Attach(t.Context(), owner, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Walk(t.Context(), []string{"root.pem"}); err != nil {
		t.Fatalf("walk to root.pem: %v", err)
	}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestCtlRefusals(t *testing.T) {
	e := newEnv(t)
	for line, want := range map[string]string{
		"frobnicate x":                    `unknown control message "frobnicate x"`,
		"issue":                           `bad # args to command "issue": usage: issue NAME`,
		"issue ../x":                      "issue: ca: bad certificate name",
		"issue x -bad-.example":           "issue: ca: bad dns name",
		"issue x a.test ttl=0":            "issue: ca: bad ttl",
		"issue x a.test ttl=2y":           "issue: ca: bad ttl",
		"issue x a.test ttl=400d":         "issue: ca: ttl 9600h0m0s too long",
		"renew nobody":                    `renew: ca: no certificate named "nobody"`,
		"renew":                           "bad # args to command",
		"ssh-user a":                      `bad # args to command "ssh-user a": usage: ssh-user NAME`,
		"ssh-user a ttl=1h b ssh-ed25519": "ssh-user: usage: ssh-user NAME",
		"ssh-user a b ssh-ed25519 AAAA":   "ssh-user: ca: bad ssh public key",
		"ssh-host h":                      `bad # args to command "ssh-host h": usage: ssh-host NAME`,
		"ssh-host h principals=a b":       "ssh-host: usage: ssh-host NAME",
		"backup":                          `bad # args to command "backup": usage: backup PASSPHRASE`,
		"backup short":                    "backup: ca: passphrase too short",
		"backup two words":                `bad # args to command "backup": usage: backup PASSPHRASE`,
		"restore two words":               `bad # args to command "restore": usage: restore PASSPHRASE`,
		"eab add kid two words":           `bad # args to command "eab add": usage: eab add KID [HMAC-BASE64URL]`,
		"backup 'two words":               `unterminated quote "backup"`,
		"restore somepassphrase":          "restore: ca: no backup to restore",
		"issue 'unterminated":             "unterminated quote",
	} {
		err := e.ctl(line)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", line, err, want)
		}
		if err != nil && strings.Contains(line, "words") && strings.Contains(err.Error(), "two") {
			t.Errorf("%q: the error quotes the passphrase: %v", line, err)
		}
	}
	if names := e.ca.Names(); len(names) != 0 {
		t.Errorf("refused commands issued %v", names)
	}
	status := e.mustRead("ctl")
	for _, want := range []string{"root ", "intermediate ", "ssh-ca ssh-ed25519 ", "certs "} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
}
