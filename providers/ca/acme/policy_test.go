package acme

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"
)

// TestPolicyCheck: which identifiers a policy lets through, and why not.
func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	p := &Policy{
		Zones:    []string{"example.org.", "node1.cheshire", "."},
		Reserved: []string{"host.example.org", "*.node1.cheshire", "node1.cheshire"},
		Allow:    []string{"extra.net", "*.dev.example.com", "192.0.2.7", "2001:db8::/32", "host.example.org"},
	}
	for _, tc := range []struct {
		typ, value string
		ok         bool
		why        string
	}{
		{"dns", "example.org", true, ""},
		{"dns", "www.example.org", true, ""},
		{"dns", "a.b.example.org", true, ""},
		{"dns", "badexample.org", false, "no zone"},
		{"dns", "google.com", false, "no zone"},
		{"dns", "org", false, "no zone"},
		{"dns", "localhost", false, "localhost"},
		{"dns", "x.localhost", false, "localhost"},
		{"dns", "node1.cheshire", false, "own names"},
		{"dns", "https.node1.cheshire", false, "own names"},
		{"dns", "host.example.org", true, ""}, // reserved, but allowed outright
		{"dns", "extra.net", true, ""},
		{"dns", "www.extra.net", false, "no zone"},
		{"dns", "a.dev.example.com", true, ""},
		{"dns", "dev.example.com", false, "no zone"},
		{"ip", "192.0.2.7", true, ""},
		{"ip", "192.0.2.8", false, "IP addresses"},
		{"ip", "127.0.0.1", false, "IP addresses"},
		{"ip", "2001:db8::1", true, ""},
		{"ip", "::1", false, "IP addresses"},
	} {
		err := p.check(identifier{tc.typ, tc.value})
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), tc.why) {
			t.Errorf("check(%s %s) = %v, want ok %v (%q)", tc.typ, tc.value, err, tc.ok, tc.why)
		}
	}
	// localhost goes through only when allowed outright.
	if err := (&Policy{Allow: []string{"localhost"}}).check(identifier{"dns", "localhost"}); err != nil {
		t.Errorf("allowed localhost: %v", err)
	}
	if err := (&Policy{Zones: []string{"localhost"}}).check(identifier{"dns", "localhost"}); err == nil {
		t.Error("localhost as a zone was let through")
	}
	for _, bad := range []string{"", "*", "a..b", "*.-x", "x/y", "under_score.org"} {
		if CheckPattern(bad) == nil {
			t.Errorf("CheckPattern(%q) accepted", bad)
		}
	}
	for _, good := range []string{"example.org", "*.example.org", "Example.ORG.", "192.0.2.1", "10.0.0.0/8", "::1"} {
		if err := CheckPattern(good); err != nil {
			t.Errorf("CheckPattern(%q): %v", good, err)
		}
	}
}

// policyVar is a policy that a test changes while the server runs.
type policyVar struct {
	mu sync.Mutex
	p  Policy
}

func (v *policyVar) get() *Policy {
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.p
	return &p
}

func (v *policyVar) set(f func(p *Policy)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f(&v.p)
}

// TestNamePolicy: orders for names outside the node's zones, for IP
// addresses, localhost and the node's own names are refused with
// rejectedIdentifier, and nothing is stored for them.
func TestNamePolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pv := &policyVar{p: Policy{Zones: []string{"name.test"}, Reserved: []string{"node.name.test"}, Open: true}}
	e := newEnv(t, func(o *Options) { o.Policy = pv.get; o.Dir = dir })
	ctx := testCtx(t, 20*time.Second)
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][]xacme.AuthzID{
		xacme.DomainIDs("google.com"),
		xacme.IPIDs("127.0.0.1"),
		xacme.IPIDs("192.0.2.1"),
		xacme.DomainIDs("localhost"),
		xacme.DomainIDs("node.name.test"),
		xacme.DomainIDs("ok.name.test", "google.com"),
	} {
		if _, err := c.AuthorizeOrder(ctx, ids); acmeProblem(err) != errRejectedIdentifier {
			t.Errorf("order for %v: %v, want rejectedIdentifier", ids, err)
		}
	}
	if n := countFiles(t, dir, kindOrders) + countFiles(t, dir, kindAuthzs); n != 0 {
		t.Errorf("%d order and authorization files for refused orders", n)
	}

	// Allowed outright, localhost and an address go through.
	pv.set(func(p *Policy) { p.Allow = []string{"localhost", "127.0.0.1"} })
	o, err := c.AuthorizeOrder(ctx, append(xacme.DomainIDs("localhost"), xacme.IPIDs("127.0.0.1")...))
	if err != nil {
		t.Fatalf("order for allowed names: %v", err)
	}
	// Withdrawn before validation, they are refused at the challenge
	// and at finalize.
	pv.set(func(p *Policy) { p.Allow = nil })
	z, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Accept(ctx, http01(t, z)); acmeProblem(err) != errRejectedIdentifier {
		t.Errorf("challenge after the name was withdrawn: %v, want rejectedIdentifier", err)
	}
	if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, ecKey(t), "localhost", "127.0.0.1"), false); acmeProblem(err) != errRejectedIdentifier {
		t.Errorf("finalize after the name was withdrawn: %v, want rejectedIdentifier", err)
	}

	// A name in the zone goes all the way.
	o, err = c.AuthorizeOrder(ctx, xacme.DomainIDs("www.name.test"))
	if err != nil {
		t.Fatal(err)
	}
	e.solve(ctx, t, c, o)
	ders, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, ecKey(t), "www.name.test"), true)
	if err != nil {
		t.Fatal(err)
	}
	e.ca.verifyLeaf(t, parseChain(t, ders), "www.name.test")
}

// eabKey is an external account binding for x/crypto/acme.
func eabKey(kid string, key []byte) *xacme.ExternalAccountBinding {
	return &xacme.ExternalAccountBinding{KID: kid, Key: key}
}

// TestAccountGate: without an external account binding or a listed key
// no account is made; a binding makes one, once; a wrong MAC, an unknown
// key id or a used one is refused; an account whose key id is withdrawn
// can do nothing more.
func TestAccountGate(t *testing.T) {
	t.Parallel()
	hkey := []byte("0123456789abcdef0123456789abcdef")
	pv := &policyVar{p: Policy{Zones: []string{"name.test"}, EAB: map[string][]byte{"kid-1": hkey, "kid-2": hkey}}}
	e := newEnv(t, func(o *Options) { o.Policy = pv.get })
	ctx := testCtx(t, 20*time.Second)

	d, err := e.client(ecKey(t)).Discover(ctx)
	if err != nil || !d.ExternalAccountRequired {
		t.Fatalf("directory: %v, externalAccountRequired %v, want true", err, d.ExternalAccountRequired)
	}
	if _, err := e.client(ecKey(t)).Register(ctx, &xacme.Account{}, xacme.AcceptTOS); acmeProblem(err) != errExternalAccountRequired {
		t.Fatalf("account without a binding: %v, want externalAccountRequired", err)
	}
	for _, tc := range []struct {
		eab  *xacme.ExternalAccountBinding
		want string
	}{
		{eabKey("kid-1", []byte("not the key")), errUnauthorized},
		{eabKey("kid-9", hkey), errUnauthorized},
	} {
		_, err := e.client(ecKey(t)).Register(ctx, &xacme.Account{ExternalAccountBinding: tc.eab}, xacme.AcceptTOS)
		if acmeProblem(err) != tc.want {
			t.Errorf("account with binding %s: %v, want %s", tc.eab.KID, err, tc.want)
		}
	}
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{ExternalAccountBinding: eabKey("kid-1", hkey)}, xacme.AcceptTOS); err != nil {
		t.Fatalf("account with a good binding: %v", err)
	}
	if _, err := e.client(ecKey(t)).Register(ctx, &xacme.Account{ExternalAccountBinding: eabKey("kid-1", hkey)}, xacme.AcceptTOS); acmeProblem(err) != errUnauthorized {
		t.Errorf("second account with a used key id: %v, want unauthorized", err)
	}
	if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("a.name.test")); err != nil {
		t.Fatalf("order by a bound account: %v", err)
	}

	// A binding whose payload is another key than the account's.
	other := ecKey(t)
	otherJWK, _ := encodeJWK(other.Public())
	url := e.ts.URL + "/acme/new-account"
	prot := b64enc([]byte(`{"alg":"HS256","kid":"kid-2","url":"` + url + `"}`))
	pl := b64enc(otherJWK)
	m := hmac.New(sha256.New, hkey)
	m.Write([]byte(prot + "." + pl))
	eab, _ := json.Marshal(flatJWS{Protected: prot, Payload: pl, Signature: b64enc(m.Sum(nil))})
	body := rawJWS(t, ecKey(t), map[string]any{"nonce": e.nonce(t), "url": url},
		[]byte(`{"termsOfServiceAgreed":true,"externalAccountBinding":`+string(eab)+`}`))
	st, h, b := e.post(t, url, body, "application/jose+json")
	wantProblem(t, st, h, b, http.StatusForbidden, errUnauthorized)

	// A listed key needs no binding.
	listed := ecKey(t)
	tp, _ := thumbprint(listed.Public())
	pv.set(func(p *Policy) { p.AccountKeys = []string{tp} })
	if _, err := e.client(listed).Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatalf("account for a listed key: %v", err)
	}

	// Withdrawn, the key id no longer admits its account.
	pv.set(func(p *Policy) { p.EAB = map[string][]byte{"kid-2": hkey} })
	if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("b.name.test")); acmeProblem(err) != errUnauthorized {
		t.Errorf("order by an account whose key id was withdrawn: %v, want unauthorized", err)
	}
}

// TestCaps: orders and pending authorizations stop at the caps, per
// account and in all, with rateLimited; finished orders do not count.
func TestCaps(t *testing.T) {
	t.Parallel()
	pv := &policyVar{p: Policy{Zones: []string{"name.test"}, Open: true, MaxOrders: 3, MaxAuthzs: 4, MaxTotalOrders: 5, MaxTotalAuthzs: 100}}
	e := newEnv(t, func(o *Options) { o.Policy = pv.get })
	ctx := testCtx(t, 30*time.Second)
	a := e.client(ecKey(t))
	if _, err := a.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	// Pending authorizations: 3 fit, 2 more would make 5.
	if _, err := a.AuthorizeOrder(ctx, xacme.DomainIDs("a1.name.test", "a2.name.test", "a3.name.test")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthorizeOrder(ctx, xacme.DomainIDs("a4.name.test", "a5.name.test")); acmeProblem(err) != errRateLimited {
		t.Fatalf("order past the authorization cap: %v, want rateLimited", err)
	}
	// One more fits: 4 pending.
	o2, err := a.AuthorizeOrder(ctx, xacme.DomainIDs("a4.name.test"))
	if err != nil {
		t.Fatal(err)
	}
	// Finish it: a valid order no longer counts.
	e.solve(ctx, t, a, o2)
	if _, _, err := a.CreateOrderCert(ctx, o2.FinalizeURL, csrFor(t, ecKey(t), "a4.name.test"), false); err != nil {
		t.Fatal(err)
	}
	// Reusing the valid authorization needs no pending one.
	if _, err := a.AuthorizeOrder(ctx, xacme.DomainIDs("a4.name.test")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthorizeOrder(ctx, xacme.DomainIDs("a4.name.test")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthorizeOrder(ctx, xacme.DomainIDs("a4.name.test")); acmeProblem(err) != errRateLimited {
		t.Fatalf("fourth unfinished order: %v, want rateLimited", err)
	}
	// In all: account b has room of its own, but the server holds 3
	// unfinished orders; 2 more reach the total of 5.
	b := e.client(ecKey(t))
	if _, err := b.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := b.AuthorizeOrder(ctx, xacme.DomainIDs("b"+itoa(i)+".name.test")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.AuthorizeOrder(ctx, xacme.DomainIDs("b9.name.test")); acmeProblem(err) != errRateLimited {
		t.Fatalf("order past the total cap: %v, want rateLimited", err)
	}
}

// fakeClock is a clock that tests move.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func countFiles(t *testing.T, dir, kind string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, kind))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			n++
		}
	}
	return n
}

// TestPrune: expired orders and authorizations are pruned, files and
// all, when the store is loaded; valid orders stay.
func TestPrune(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newFakeClock()
	e := newEnv(t, func(o *Options) { o.Dir = dir; o.Now = clock.now; o.pruneEvery = time.Hour }) // the timer does not run
	ctx := testCtx(t, 20*time.Second)
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	valid, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("v.name.test"))
	if err != nil {
		t.Fatal(err)
	}
	e.solve(ctx, t, c, valid)
	if _, _, err := c.CreateOrderCert(ctx, valid.FinalizeURL, csrFor(t, ecKey(t), "v.name.test"), false); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("p"+itoa(i)+".name.test")); err != nil {
			t.Fatal(err)
		}
	}
	if o, z := countFiles(t, dir, kindOrders), countFiles(t, dir, kindAuthzs); o != 4 || z != 4 {
		t.Fatalf("%d orders and %d authorizations stored, want 4 and 4", o, z)
	}

	// Expired while the server was down, they are pruned on load; the
	// valid order and its authorization stay.
	_ = e.srv.Close()
	clock.advance(pendingAuthzLife + gcGrace + time.Minute)
	s2, err := New(Options{Prefix: "/acme", Signer: e.ca.sign, Dir: dir, Now: clock.now, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if o, z := countFiles(t, dir, kindOrders), countFiles(t, dir, kindAuthzs); o != 1 || z != 1 {
		t.Fatalf("after loading, %d orders and %d authorizations stored, want 1 and 1", o, z)
	}
}

// TestPruneTimer: the timer prunes without being asked.
func TestPruneTimer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newFakeClock()
	e := newEnv(t, func(o *Options) { o.Dir = dir; o.Now = clock.now; o.pruneEvery = time.Millisecond })
	ctx := testCtx(t, 20*time.Second)
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("t.name.test")); err != nil {
		t.Fatal(err)
	}
	clock.advance(pendingAuthzLife + gcGrace + time.Minute)
	for countFiles(t, dir, kindOrders)+countFiles(t, dir, kindAuthzs) != 0 {
		if ctx.Err() != nil {
			t.Fatal("the timer never pruned the expired order")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRedirectOffName: a redirect to another host is not followed; the
// challenge fails and the other host is never asked.
func TestRedirectOffName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := testCtx(t, 15*time.Second)
	// other.test resolves to the same responder: only the name differs.
	c, o, ch := e.redirectedChallenge(ctx, t, "r.name.test", func(port int) string {
		return "http://other.test:" + itoa(port) + "/.well-known/acme-challenge/moved"
	})
	if _, err := c.Accept(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitAuthorization(ctx, o.AuthzURLs[0]); err == nil {
		t.Fatal("validated through a redirect to another host")
	}
	ch, err := c.GetChallenge(ctx, ch.URI)
	if err != nil || ch.Error == nil || !strings.Contains(ch.Error.Error(), "off the validated name") {
		t.Fatalf("challenge: %v %v, want a redirect refused", err, ch.Error)
	}
	e.resp.mu.Lock()
	hits := e.resp.hits
	e.resp.mu.Unlock()
	if hits != 1 {
		t.Errorf("responder asked %d times, want 1 (the redirect not followed)", hits)
	}
}

// TestTotalAuthzCap: pending authorizations of all accounts together stop
// at their cap.
func TestTotalAuthzCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) {
		o.Policy = func() *Policy { return &Policy{Zones: []string{"name.test"}, Open: true, MaxTotalAuthzs: 2} }
	})
	ctx := testCtx(t, 20*time.Second)
	for i, want := range []string{"", "", errRateLimited} {
		c := e.client(ecKey(t))
		if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("t"+itoa(i)+".name.test")); acmeProblem(err) != want {
			t.Fatalf("order %d: %v, want %q", i, err, want)
		}
	}
}
