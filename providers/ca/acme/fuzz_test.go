package acme

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzJWS posts arbitrary bodies to every endpoint: none may panic, and
// each must answer with an ACME problem document (no body can carry a
// fresh nonce, so none can succeed).
func FuzzJWS(f *testing.F) {
	ca := newTestCA(f)
	s, err := New(Options{Prefix: "/acme", Signer: ca.sign, Revoke: ca.revoke, Resolve: testResolve, Log: testLogger(f),
		Policy: func() *Policy { return testPolicy }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	const base = "http://node.test/acme"
	do := func(path string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/jose+json")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	nonce := func() string {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, base+pathNewNonce, nil))
		return rec.Header().Get("Replay-Nonce")
	}

	// An account and an order, so that kid-signed seeds reach the handlers'
	// lookups.
	key := ecKey(f)
	rec := do(pathNewAccount, rawJWS(f, key, map[string]any{"nonce": nonce(), "url": base + pathNewAccount}, []byte(`{}`)))
	kid := rec.Header().Get("Location")
	if rec.Code != http.StatusCreated || kid == "" {
		f.Fatalf("new-account: %d %s", rec.Code, rec.Body)
	}
	rec = do(pathNewOrder, rawJWS(f, key, map[string]any{"nonce": nonce(), "url": base + pathNewOrder, "kid": kid},
		[]byte(`{"identifiers":[{"type":"dns","value":"f.name.test"}]}`)))
	if rec.Code != http.StatusCreated {
		f.Fatalf("new-order: %d %s", rec.Code, rec.Body)
	}
	var o wireOrder
	if err := json.Unmarshal(rec.Body.Bytes(), &o); err != nil {
		f.Fatal(err)
	}
	orderPath := strings.TrimPrefix(rec.Header().Get("Location"), base)
	authzPath := strings.TrimPrefix(o.Authorizations[0], base)
	paths := []string{
		pathDirectory, pathNewNonce, pathNewAccount, pathNewOrder, pathRevoke, pathKeyChange,
		strings.TrimPrefix(kid, base), strings.TrimPrefix(kid, base) + "/orders",
		orderPath, orderPath + "/finalize", authzPath,
		strings.Replace(authzPath, pathAuthz, pathChallenge, 1) + "/" + challengeHTTP01,
		pathCert + "AAAA", "/nothing",
	}

	// Seeds: well-formed JWSs whose nonce is used up, for each endpoint,
	// with plausible payloads, and some junk.
	used := nonce()
	if rec := do(pathNewAccount, rawJWS(f, key, map[string]any{"nonce": used, "url": base + pathNewAccount}, []byte(`{}`))); rec.Code != http.StatusOK {
		f.Fatalf("spending a nonce: %d %s", rec.Code, rec.Body)
	}
	payloads := [][]byte{nil, []byte(`{}`), []byte(`{"csr":"MIIB"}`), []byte(`{"identifiers":[{"type":"ip","value":"::1"}]}`),
		[]byte(`{"certificate":"AAAA","reason":1}`), []byte(`{"status":"deactivated"}`), []byte(`{"contact":["mailto:a@b.test"]}`)}
	for _, p := range paths {
		for _, pl := range payloads {
			f.Add(rawJWS(f, key, map[string]any{"nonce": used, "url": base + p, "kid": kid}, pl))
		}
		f.Add(rawJWS(f, key, map[string]any{"nonce": used, "url": base + p}, []byte(`{"onlyReturnExisting":true}`)))
	}
	for _, junk := range []string{"", "{}", "null", "[]", `{"protected":"","payload":"","signature":""}`,
		`{"protected":"e30","payload":"","signature":"AA"}`, `{"signatures":[]}`, `{"header":{}}`,
		`{"protected":"eyJhbGciOiJFUzI1NiIsImp3ayI6eyJrdHkiOiJFQyJ9fQ","payload":"","signature":"AA"}`} {
		f.Add([]byte(junk))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		for _, p := range paths {
			rec := do(p, body)
			if rec.Code < 400 {
				t.Fatalf("%s: status %d for %q", p, rec.Code, body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s: Content-Type %q", p, ct)
			}
			var pr problem
			if err := json.Unmarshal(rec.Body.Bytes(), &pr); err != nil || !strings.HasPrefix(pr.Type, errPrefix) || pr.Status != rec.Code {
				t.Fatalf("%s: not a problem document (%v): %s", p, err, rec.Body)
			}
			if rec.Header().Get("Replay-Nonce") == "" {
				t.Fatalf("%s: no Replay-Nonce", p)
			}
		}
	})
}
