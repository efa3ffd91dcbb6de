package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"
)

// testCA is a throwaway root and intermediate that sign leaves from CSRs.
type testCA struct {
	root, inter *x509.Certificate
	interKey    *ecdsa.PrivateKey
	roots       *x509.CertPool

	mu      sync.Mutex
	revoked map[string]int // serial → reason
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acme test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "acme test intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(interDER)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &testCA{root: root, inter: inter, interKey: interKey, roots: pool, revoked: map[string]int{}}
}

func (ca *testCA) sign(_ context.Context, csr *x509.CertificateRequest, ttl time.Duration) ([]*x509.Certificate, error) {
	if ttl == 0 {
		ttl = 12 * time.Hour
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: csr.Subject.CommonName},
		DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(ttl),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.inter, csr.PublicKey, ca.interKey)
	if err != nil {
		return nil, fmt.Errorf("test CA: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{leaf, ca.inter}, nil
}

func (ca *testCA) revoke(_ context.Context, c *x509.Certificate, reason int) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.revoked[c.SerialNumber.Text(16)] = reason
	return nil
}

// verifyLeaf checks that chain[0] names want and chains to the test root.
func (ca *testCA) verifyLeaf(t *testing.T, chain []*x509.Certificate, want ...string) {
	t.Helper()
	if len(chain) == 0 {
		t.Fatal("empty chain")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	for _, name := range want {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.roots, Intermediates: inter}); err != nil {
			t.Errorf("leaf does not verify for %s: %v", name, err)
		}
	}
}

// responder serves http-01 key authorizations on 127.0.0.1.
type responder struct {
	mu   sync.Mutex
	m    map[string]string // token → body
	to   map[string]string // token → redirect target
	hits int
	port int
}

func newResponder(t *testing.T) *responder {
	t.Helper()
	r := &responder{m: map[string]string{}, to: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	token, ok := strings.CutPrefix(req.URL.Path, "/.well-known/acme-challenge/")
	r.mu.Lock()
	body, found := r.m[token]
	to, moved := r.to[token]
	r.hits++
	r.mu.Unlock()
	if ok && moved {
		http.Redirect(w, req, to, http.StatusFound)
		return
	}
	if !ok || !found {
		http.NotFound(w, req)
		return
	}
	_, _ = io.WriteString(w, body)
}

func (r *responder) redirect(token, to string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.to[token] = to
}

func (r *responder) set(token, body string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[token] = body
}

// testResolve maps every name under .test to 127.0.0.1.
func testResolve(_ context.Context, host string) ([]net.IP, error) {
	if strings.HasSuffix(host, ".test") {
		return []net.IP{net.IPv4(127, 0, 0, 1)}, nil
	}
	return nil, fmt.Errorf("no such host %q in the test resolver", host)
}

// testPolicy is the policy of the tests that are not about policy: open
// accounts, the zones test and example less forbidden.test, and
// loopback addresses.
var testPolicy = &Policy{
	Zones:    []string{"test", "example."},
	Reserved: []string{"forbidden.test", "*.forbidden.test"},
	Allow:    []string{"127.0.0.1", "::1"},
	Open:     true,
}

// env is an ACME server under httptest.NewTLSServer at /acme, with a test
// CA and an http-01 responder.
type env struct {
	ca     *testCA
	srv    *Server
	ts     *httptest.Server
	resp   *responder
	dirURL string
	opts   Options
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newEnv(t *testing.T, adjust func(*Options)) *env {
	t.Helper()
	e := &env{ca: newTestCA(t), resp: newResponder(t)}
	e.opts = Options{
		Prefix:     "/acme",
		Signer:     e.ca.sign,
		Revoke:     e.ca.revoke,
		HTTP01Port: e.resp.port,
		Resolve:    testResolve,
		Log:        testLogger(t),
		Policy:     func() *Policy { return testPolicy },
	}
	if adjust != nil {
		adjust(&e.opts)
	}
	srv, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	mux := http.NewServeMux()
	mux.Handle("/acme/", srv)
	e.ts = httptest.NewTLSServer(mux)
	e.dirURL = e.ts.URL + "/acme/directory"
	t.Cleanup(e.ts.Close)
	t.Cleanup(func() { _ = srv.Close() })
	return e
}

func (e *env) client(key crypto.Signer) *xacme.Client {
	return &xacme.Client{Key: key, DirectoryURL: e.dirURL, HTTPClient: e.ts.Client(), UserAgent: "acme-test",
		RetryBackoff: testBackoff}
}

// testBackoff is x/crypto/acme's backoff without jitter, except that a
// rateLimited answer is returned at once rather than retried.
func testBackoff(n int, r *http.Request, res *http.Response) time.Duration {
	if res != nil && res.StatusCode == http.StatusTooManyRequests {
		return 0
	}
	return min(time.Second<<(n-1), 10*time.Second)
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// csrFor makes a CSR for the names (IP addresses go in as such).
func csrFor(t *testing.T, key crypto.Signer, names ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// solve answers every pending authorization of the order through the
// responder and waits for each to become valid.
func (e *env) solve(ctx context.Context, t *testing.T, c *xacme.Client, o *xacme.Order) {
	t.Helper()
	for _, u := range o.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if z.Status == xacme.StatusValid {
			continue
		}
		ch := http01(t, z)
		ka, err := c.HTTP01ChallengeResponse(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		e.resp.set(ch.Token, ka)
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitAuthorization(ctx, u); err != nil {
			t.Fatalf("authorization %s: %v", z.Identifier.Value, err)
		}
	}
}

// redirectedChallenge registers an account, orders name and sets the
// responder to answer its http-01 challenge at the token "moved", with a
// redirect from the challenge's own path to target (made from the
// responder's port). It returns the client, the order and the
// challenge, not yet accepted.
func (e *env) redirectedChallenge(ctx context.Context, t *testing.T, name string, target func(port int) string) (*xacme.Client, *xacme.Order, *xacme.Challenge) {
	t.Helper()
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(name))
	if err != nil {
		t.Fatal(err)
	}
	z, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	ch := http01(t, z)
	ka, err := c.HTTP01ChallengeResponse(ch.Token)
	if err != nil {
		t.Fatal(err)
	}
	e.resp.set("moved", ka)
	e.resp.redirect(ch.Token, target(e.resp.port))
	return c, o, ch
}

func http01(t *testing.T, z *xacme.Authorization) *xacme.Challenge {
	t.Helper()
	for _, ch := range z.Challenges {
		if ch.Type == "http-01" {
			return ch
		}
	}
	t.Fatalf("authorization for %s has no http-01 challenge", z.Identifier.Value)
	return nil
}

// acmeProblem returns err's ACME problem type without the prefix.
func acmeProblem(err error) string {
	var ae *xacme.Error
	if errors.As(err, &ae) {
		return strings.TrimPrefix(ae.ProblemType, errPrefix)
	}
	return ""
}

// rawJWS signs payload with key under a protected header made of hdr plus
// alg and (unless hdr has kid) jwk. A nil payload is POST-as-GET.
func rawJWS(t testing.TB, key crypto.Signer, hdr map[string]any, payload []byte) []byte {
	t.Helper()
	h := map[string]any{}
	for k, v := range hdr {
		h[k] = v
	}
	var alg string
	var hash crypto.Hash
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		alg, hash = "ES256", crypto.SHA256
		_ = k
	case *rsa.PublicKey:
		alg, hash = "RS256", crypto.SHA256
	case ed25519.PublicKey:
		alg = "EdDSA"
	}
	if _, ok := h["alg"]; !ok {
		h["alg"] = alg
	}
	if _, ok := h["kid"]; !ok {
		jwk, err := encodeJWK(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		h["jwk"] = json.RawMessage(jwk)
	}
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	prot := b64enc(hb)
	pl := b64enc(payload)
	input := []byte(prot + "." + pl)
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case *rsa.PrivateKey:
		d := sha256.Sum256(input)
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, hash, d[:])
		if err != nil {
			t.Fatal(err)
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, input)
	}
	b, err := json.Marshal(flatJWS{Protected: prot, Payload: pl, Signature: b64enc(sig)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nonce fetches a fresh nonce.
func (e *env) nonce(t *testing.T) string {
	t.Helper()
	res, err := e.ts.Client().Head(e.ts.URL + "/acme/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	n := res.Header.Get("Replay-Nonce")
	if n == "" {
		t.Fatal("new-nonce gave no Replay-Nonce")
	}
	return n
}

// post sends a raw JWS body and returns the status, headers and body.
func (e *env) post(t *testing.T, url string, body []byte, contentType string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	res, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

// wantProblem checks that a response is a problem document of type typ.
func wantProblem(t *testing.T, status int, h http.Header, body []byte, wantStatus int, typ string) *problem {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem document: %v: %s", err, body)
	}
	if p.Type != errPrefix+typ || status != wantStatus || p.Status != wantStatus {
		t.Fatalf("got %d %s (%s), want %d %s", status, p.Type, p.Detail, wantStatus, errPrefix+typ)
	}
	if h.Get("Replay-Nonce") == "" {
		t.Error("problem response without Replay-Nonce")
	}
	return &p
}

func itoa(i int) string { return strconv.Itoa(i) }
