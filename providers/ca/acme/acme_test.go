package acme

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"
)

// TestClientFullOrder takes golang.org/x/crypto/acme through account
// creation and lookup, an order for a DNS name and an IP address, http-01
// validation, finalization, download, key rollover, revocation and
// deactivation, with an ECDSA (ES256) and an RSA (RS256) account key.
func TestClientFullOrder(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ES256", ecKey(t)}, {"RS256", rsaKey}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			ctx := testCtx(t, 20*time.Second)
			c := e.client(tc.key)

			if _, err := c.GetReg(ctx, ""); !errors.Is(err, xacme.ErrNoAccount) {
				t.Fatalf("GetReg before Register: %v, want ErrNoAccount", err)
			}
			acct, err := c.Register(ctx, &xacme.Account{Contact: []string{"mailto:admin@name.test"}}, xacme.AcceptTOS)
			if err != nil {
				t.Fatal(err)
			}
			if acct.Status != xacme.StatusValid || !strings.HasPrefix(acct.URI, e.ts.URL+"/acme/account/") {
				t.Fatalf("account %+v", acct)
			}
			if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); !errors.Is(err, xacme.ErrAccountAlreadyExists) {
				t.Fatalf("second Register: %v, want ErrAccountAlreadyExists", err)
			}
			c2 := e.client(tc.key) // a fresh client finds the account by key (onlyReturnExisting)
			got, err := c2.GetReg(ctx, "")
			if err != nil || got.URI != acct.URI {
				t.Fatalf("GetReg: %v %+v", err, got)
			}

			names := []string{"a.name.test", "127.0.0.1"}
			o, err := c.AuthorizeOrder(ctx, []xacme.AuthzID{{Type: "dns", Value: names[0]}, {Type: "ip", Value: names[1]}})
			if err != nil {
				t.Fatal(err)
			}
			if o.Status != xacme.StatusPending || len(o.AuthzURLs) != 2 {
				t.Fatalf("order %+v", o)
			}
			// Finalizing too early is refused.
			certKey := ecKey(t)
			if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, certKey, names...), true); acmeProblem(err) != errOrderNotReady {
				t.Fatalf("early finalize: %v, want orderNotReady", err)
			}
			e.solve(ctx, t, c, o)
			o, err = c.WaitOrder(ctx, o.URI)
			if err != nil || o.Status != xacme.StatusReady {
				t.Fatalf("WaitOrder: %v %+v", err, o)
			}
			ders, certURL, err := c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, certKey, names...), true)
			if err != nil {
				t.Fatal(err)
			}
			chain := parseChain(t, ders)
			e.ca.verifyLeaf(t, chain, names...)
			if len(chain) != 2 || len(chain[0].DNSNames) != 1 || chain[0].DNSNames[0] != names[0] || !chain[0].IPAddresses[0].Equal([]byte{127, 0, 0, 1}) {
				t.Fatalf("leaf names %v %v, chain of %d", chain[0].DNSNames, chain[0].IPAddresses, len(chain))
			}
			again, err := c.FetchCert(ctx, certURL, true)
			if err != nil || len(again) != 2 || string(again[0]) != string(ders[0]) {
				t.Fatalf("FetchCert: %v", err)
			}
			// The same account's next order reuses the valid authorizations.
			o2, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(names[0]))
			if err != nil || o2.Status != xacme.StatusReady {
				t.Fatalf("second order: %v %+v", err, o2)
			}

			newKey := ecKey(t)
			if err := c.AccountKeyRollover(ctx, newKey); err != nil {
				t.Fatalf("AccountKeyRollover: %v", err)
			}
			if _, err := e.client(tc.key).GetReg(ctx, ""); !errors.Is(err, xacme.ErrNoAccount) {
				t.Fatalf("old key after rollover: %v, want ErrNoAccount", err)
			}
			if got, err := e.client(newKey).GetReg(ctx, ""); err != nil || got.URI != acct.URI {
				t.Fatalf("new key after rollover: %v %+v", err, got)
			}

			if err := c.RevokeCert(ctx, nil, ders[0], xacme.CRLReasonKeyCompromise); err != nil {
				t.Fatalf("RevokeCert: %v", err)
			}
			e.ca.mu.Lock()
			reason, ok := e.ca.revoked[chain[0].SerialNumber.Text(16)]
			e.ca.mu.Unlock()
			if !ok || reason != int(xacme.CRLReasonKeyCompromise) {
				t.Fatalf("revoke hook: %v %d", ok, reason)
			}

			if err := c.DeactivateReg(ctx); err != nil {
				t.Fatalf("DeactivateReg: %v", err)
			}
			if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(names[0])); acmeProblem(err) != errUnauthorized {
				t.Fatalf("order after deactivation: %v, want unauthorized", err)
			}
		})
	}
}

func parseChain(t *testing.T, ders [][]byte) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	return chain
}

// TestClientRefusals checks what a client does wrong: a CSR naming other
// names, a wrong key authorization, refused identifiers.
func TestClientRefusals(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testCtx(t, 20*time.Second)
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}

	t.Run("csr names not in order", func(t *testing.T) {
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("b.name.test"))
		if err != nil {
			t.Fatal(err)
		}
		e.solve(ctx, t, c, o)
		key := ecKey(t)
		for _, names := range [][]string{{"b.name.test", "evil.name.test"}, {"evil.name.test"}} {
			_, _, err = c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, key, names...), true)
			if acmeProblem(err) != errBadCSR {
				t.Fatalf("CSR for %v: %v, want badCSR", names, err)
			}
		}
		// The account key may not be the certificate's.
		if _, _, err = c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, c.Key, "b.name.test"), true); acmeProblem(err) != errBadCSR {
			t.Fatalf("CSR with the account key: %v, want badCSR", err)
		}
		// The order is still ready for a right CSR.
		ders, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, key, "b.name.test"), true)
		if err != nil {
			t.Fatal(err)
		}
		e.ca.verifyLeaf(t, parseChain(t, ders), "b.name.test")
	})

	t.Run("wrong key authorization", func(t *testing.T) {
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("c.name.test"))
		if err != nil {
			t.Fatal(err)
		}
		z, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
		if err != nil {
			t.Fatal(err)
		}
		ch := http01(t, z)
		e.resp.set(ch.Token, ch.Token+".not-the-thumbprint")
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatal(err)
		}
		_, err = c.WaitAuthorization(ctx, o.AuthzURLs[0])
		var ae *xacme.AuthorizationError
		if !errors.As(err, &ae) {
			t.Fatalf("WaitAuthorization: %v, want an AuthorizationError", err)
		}
		z, err = c.GetAuthorization(ctx, o.AuthzURLs[0])
		if err != nil || z.Status != xacme.StatusInvalid {
			t.Fatalf("authorization: %v %+v", err, z)
		}
		ch, err = c.GetChallenge(ctx, ch.URI)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Status != xacme.StatusInvalid || acmeProblem(ch.Error) != errIncorrectResponse {
			t.Fatalf("challenge %s, error %v; want invalid, incorrectResponse", ch.Status, ch.Error)
		}
		if _, err := c.WaitOrder(ctx, o.URI); err == nil {
			t.Fatal("WaitOrder succeeded on an invalid order")
		}
		if o, err = c.GetOrder(ctx, o.URI); err != nil || o.Status != xacme.StatusInvalid {
			t.Fatalf("order: %v %+v", err, o)
		}
	})

	t.Run("no challenge file", func(t *testing.T) {
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("d.name.test"))
		if err != nil {
			t.Fatal(err)
		}
		z, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
		if err != nil {
			t.Fatal(err)
		}
		ch := http01(t, z)
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitAuthorization(ctx, o.AuthzURLs[0]); err == nil {
			t.Fatal("validated without a challenge file")
		}
		ch, err = c.GetChallenge(ctx, ch.URI)
		if err != nil || acmeProblem(ch.Error) != errUnauthorized {
			t.Fatalf("challenge: %v %v, want unauthorized", err, ch.Error)
		}
	})

	t.Run("unresolvable name", func(t *testing.T) {
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("nowhere.example"))
		if err != nil {
			t.Fatal(err)
		}
		z, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
		if err != nil {
			t.Fatal(err)
		}
		ch := http01(t, z)
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitAuthorization(ctx, o.AuthzURLs[0]); err == nil {
			t.Fatal("validated an unresolvable name")
		}
		ch, err = c.GetChallenge(ctx, ch.URI)
		if err != nil || acmeProblem(ch.Error) != errDNS {
			t.Fatalf("challenge: %v %v, want dns", err, ch.Error)
		}
	})

	t.Run("identifiers", func(t *testing.T) {
		for _, tc := range []struct {
			ids  []xacme.AuthzID
			want string
		}{
			{xacme.DomainIDs("*.name.test"), errRejectedIdentifier},
			{xacme.DomainIDs("x.forbidden.test"), errRejectedIdentifier},
			{xacme.DomainIDs("bad_name.test"), errRejectedIdentifier},
			{xacme.DomainIDs("10.0.0.1"), errMalformed},
			{[]xacme.AuthzID{{Type: "ip", Value: "::ffff:127.0.0.1"}}, errMalformed},
			{[]xacme.AuthzID{{Type: "email", Value: "a@name.test"}}, errUnsupportedIdentifier},
			{xacme.DomainIDs("*.name.test", "x.forbidden.test"), errRejectedIdentifier},
		} {
			_, err := c.AuthorizeOrder(ctx, tc.ids)
			if acmeProblem(err) != tc.want {
				t.Errorf("order for %v: %v, want %s", tc.ids, err, tc.want)
			}
		}
	})
}

// TestRawRequests sends hand-made JWS requests: nonce, signature,
// algorithm, URL and content type refusals, and an EdDSA account.
func TestRawRequests(t *testing.T) {
	e := newEnv(t, nil)
	newAcct := e.ts.URL + "/acme/new-account"
	key := ecKey(t)
	payload := []byte(`{"termsOfServiceAgreed":true}`)
	ct := "application/jose+json"

	t.Run("directory", func(t *testing.T) {
		res, err := e.ts.Client().Get(e.dirURL)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var d map[string]any
		if err := json.NewDecoder(res.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"} {
			if u, _ := d[k].(string); !strings.HasPrefix(u, "https://127.0.0.1:") || !strings.Contains(u, "/acme/") {
				t.Errorf("directory %s = %v", k, d[k])
			}
		}
		if res.Header.Get("Replay-Nonce") == "" {
			t.Error("directory without Replay-Nonce")
		}
	})

	t.Run("bad nonce", func(t *testing.T) {
		b := rawJWS(t, key, map[string]any{"nonce": "bogus", "url": newAcct}, payload)
		st, h, body := e.post(t, newAcct, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errBadNonce)
		// A nonce is good once.
		n := e.nonce(t)
		b = rawJWS(t, key, map[string]any{"nonce": n, "url": newAcct}, payload)
		if st, _, body := e.post(t, newAcct, b, ct); st != http.StatusCreated {
			t.Fatalf("first use of nonce: %d %s", st, body)
		}
		b = rawJWS(t, key, map[string]any{"nonce": n, "url": newAcct}, payload)
		st, h, body = e.post(t, newAcct, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errBadNonce)
		// No nonce at all.
		b = rawJWS(t, key, map[string]any{"url": newAcct}, payload)
		st, h, body = e.post(t, newAcct, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errBadNonce)
	})

	t.Run("bad signature", func(t *testing.T) {
		b := rawJWS(t, key, map[string]any{"nonce": e.nonce(t), "url": newAcct}, payload)
		var j flatJWS
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatal(err)
		}
		sig, _ := b64dec(j.Signature)
		sig[5] ^= 0x40
		j.Signature = b64enc(sig)
		b, _ = json.Marshal(j)
		st, h, body := e.post(t, newAcct, b, ct)
		p := wantProblem(t, st, h, body, http.StatusBadRequest, errMalformed)
		if !strings.Contains(p.Detail, "verif") {
			t.Errorf("detail %q", p.Detail)
		}
		// Signed by another key than the one in the header.
		other := rawJWS(t, ecKey(t), map[string]any{"nonce": e.nonce(t), "url": newAcct}, payload)
		var o flatJWS
		_ = json.Unmarshal(other, &o)
		j.Signature = o.Signature
		b, _ = json.Marshal(j)
		st, h, body = e.post(t, newAcct, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errMalformed)
	})

	t.Run("algorithm", func(t *testing.T) {
		for _, alg := range []string{"HS256", "none", "RS256"} { // RS256 does not fit an EC key
			b := rawJWS(t, key, map[string]any{"nonce": e.nonce(t), "url": newAcct, "alg": alg}, payload)
			st, h, body := e.post(t, newAcct, b, ct)
			want := errBadSignatureAlgorithm
			if alg == "RS256" {
				want = errMalformed
			}
			p := wantProblem(t, st, h, body, http.StatusBadRequest, want)
			if want == errBadSignatureAlgorithm && len(p.Algorithms) == 0 {
				t.Error("badSignatureAlgorithm without algorithms")
			}
		}
	})

	t.Run("url and content type", func(t *testing.T) {
		b := rawJWS(t, key, map[string]any{"nonce": e.nonce(t), "url": e.ts.URL + "/acme/new-order"}, payload)
		st, h, body := e.post(t, newAcct, b, ct)
		wantProblem(t, st, h, body, http.StatusForbidden, errUnauthorized)
		b = rawJWS(t, key, map[string]any{"nonce": e.nonce(t), "url": newAcct}, payload)
		st, h, body = e.post(t, newAcct, b, "application/json")
		wantProblem(t, st, h, body, http.StatusUnsupportedMediaType, errMalformed)
		res, err := e.ts.Client().Get(newAcct)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("GET new-account: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
	})

	t.Run("EdDSA account", func(t *testing.T) {
		_, ek, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b := rawJWS(t, ek, map[string]any{"nonce": e.nonce(t), "url": newAcct}, []byte(`{"onlyReturnExisting":true}`))
		st, h, body := e.post(t, newAcct, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errAccountDoesNotExist)
		b = rawJWS(t, ek, map[string]any{"nonce": e.nonce(t), "url": newAcct}, payload)
		st, h, body = e.post(t, newAcct, b, ct)
		if st != http.StatusCreated || h.Get("Location") == "" {
			t.Fatalf("EdDSA new-account: %d %s", st, body)
		}
		kid := h.Get("Location")
		b = rawJWS(t, ek, map[string]any{"nonce": e.nonce(t), "url": kid, "kid": kid}, nil)
		st, _, body = e.post(t, kid, b, ct)
		if st != http.StatusOK || !strings.Contains(string(body), `"valid"`) {
			t.Fatalf("EdDSA POST-as-GET account: %d %s", st, body)
		}
		// kid for new-account, jwk elsewhere, unknown kid.
		b = rawJWS(t, ek, map[string]any{"nonce": e.nonce(t), "url": newAcct, "kid": kid}, payload)
		st, h, body = e.post(t, newAcct, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errMalformed)
		newOrder := e.ts.URL + "/acme/new-order"
		b = rawJWS(t, ek, map[string]any{"nonce": e.nonce(t), "url": newOrder}, []byte(`{}`))
		st, h, body = e.post(t, newOrder, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errMalformed)
		b = rawJWS(t, ek, map[string]any{"nonce": e.nonce(t), "url": newOrder, "kid": kid + "x"}, []byte(`{}`))
		st, h, body = e.post(t, newOrder, b, ct)
		wantProblem(t, st, h, body, http.StatusBadRequest, errAccountDoesNotExist)
	})

	t.Run("not found", func(t *testing.T) {
		st, h, body := e.post(t, e.ts.URL+"/acme/nothing", []byte(`{}`), ct)
		wantProblem(t, st, h, body, http.StatusNotFound, errMalformed)
	})
}

// TestPersistence restarts the server on the same directory.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	key := ecKey(t)
	ctx := testCtx(t, 20*time.Second)
	var acctID string
	{
		e := newEnv(t, func(o *Options) { o.Dir = dir })
		c := e.client(key)
		a, err := c.Register(ctx, &xacme.Account{Contact: []string{"mailto:x@name.test"}}, xacme.AcceptTOS)
		if err != nil {
			t.Fatal(err)
		}
		acctID = a.URI[strings.LastIndex(a.URI, "/")+1:]
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("p.name.test"))
		if err != nil {
			t.Fatal(err)
		}
		e.solve(ctx, t, c, o)
		if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, ecKey(t), "p.name.test"), true); err != nil {
			t.Fatal(err)
		}
		e.ts.Close()
		if err := e.srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range []string{kindAccounts, kindOrders, kindAuthzs, kindCerts} {
		ents, err := os.ReadDir(filepath.Join(dir, kind))
		if err != nil || len(ents) == 0 {
			t.Fatalf("%s: %v, %d files", kind, err, len(ents))
		}
		for _, en := range ents {
			fi, err := en.Info()
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s/%s has mode %v", kind, en.Name(), fi.Mode().Perm())
			}
		}
	}
	e := newEnv(t, func(o *Options) { o.Dir = dir })
	c := e.client(key)
	a, err := c.GetReg(ctx, "")
	if err != nil || !strings.HasSuffix(a.URI, "/"+acctID) || len(a.Contact) != 1 {
		t.Fatalf("account after restart: %v %+v", err, a)
	}
	// The valid authorization survived too: a new order is ready at once.
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("p.name.test"))
	if err != nil || o.Status != xacme.StatusReady {
		t.Fatalf("order after restart: %v %+v", err, o)
	}
}

// TestOptions checks New's refusals.
func TestOptions(t *testing.T) {
	ca := newTestCA(t)
	for _, o := range []Options{
		{},
		{Signer: ca.sign, Prefix: "acme"},
		{Signer: ca.sign, HTTP01Port: 70000},
	} {
		if s, err := New(o); err == nil {
			_ = s.Close()
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	s, err := New(Options{Signer: ca.sign, Prefix: "/x/", Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Mounted with the prefix stripped, URLs still carry it.
	h := http.StripPrefix("/x", s)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://node.test/x/directory", nil))
	if !strings.Contains(rec.Body.String(), `"http://node.test/x/new-nonce"`) {
		t.Fatalf("directory: %s", rec.Body)
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
}
