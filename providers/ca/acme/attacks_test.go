package acme

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Attacks the server already survives, kept as tests so that it goes on
// surviving them.

// endless is a request body that never ends by itself; it counts what is
// read of it.
type endless struct{ n atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	if e.n.Load() > 64<<20 {
		return 0, io.EOF // a bound, so that a failing test ends
	}
	for i := range p {
		p[i] = '{'
	}
	e.n.Add(int64(len(p)))
	return len(p), nil
}

// TestOversizedBody: a body over the limit is refused with 413 after
// reading little more than the limit, even one that never ends.
func TestOversizedBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	st, h, b := e.post(t, e.ts.URL+"/acme/new-account", bytes.Repeat([]byte("x"), maxBody+1), "application/jose+json")
	wantProblem(t, st, h, b, http.StatusRequestEntityTooLarge, errMalformed)

	body := &endless{}
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/acme/new-order", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/jose+json")
	res, err := e.ts.Client().Do(req)
	if err == nil { // else the server closed the connection while the client wrote
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("endless body: status %d, want 413", res.StatusCode)
		}
	}
	if n := body.n.Load(); n > 8<<20 {
		t.Errorf("the client wrote %d bytes of an endless body before the server gave up", n)
	}
}

// TestJunkStoresNothing: junk and forged JWS bodies on every endpoint
// that stores something leave no file and no account behind.
func TestJunkStoresNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newEnv(t, func(o *Options) { o.Dir = dir })
	forger := ecKey(t)
	victim := ecKey(t)
	base := e.ts.URL + "/acme"
	var bodies [][]byte
	for range 50 {
		b := make([]byte, 300)
		rand.Read(b)
		bodies = append(bodies, b)
	}
	for _, p := range []string{"/new-account", "/new-order", "/key-change", "/revoke-cert"} {
		// The victim's header and payload under the forger's signature.
		var a, b flatJWS
		json.Unmarshal(rawJWS(t, victim, map[string]any{"nonce": e.nonce(t), "url": base + p}, []byte(`{}`)), &a)
		json.Unmarshal(rawJWS(t, forger, map[string]any{"nonce": e.nonce(t), "url": base + p}, []byte(`{}`)), &b)
		a.Signature = b.Signature
		forged, _ := json.Marshal(a)
		bodies = append(bodies, forged,
			[]byte(`{"protected":"eyJhbGciOiJub25lIn0","payload":"e30","signature":""}`),      // alg none
			[]byte(`{"protected":"eyJhbGciOiJIUzI1NiJ9","payload":"e30","signature":"AAAA"}`), // a MAC
			[]byte(strings.Repeat(`{"a":`, 10000)))                                            // deep nesting
	}
	for _, p := range []string{"/new-account", "/new-order", "/key-change", "/revoke-cert", "/order/AAAA/finalize"} {
		for _, b := range bodies {
			st, _, _ := e.post(t, base+p, b, "application/jose+json")
			if st < 400 {
				t.Fatalf("%s: status %d for junk %.40q", p, st, b)
			}
		}
	}
	for _, k := range []string{kindAccounts, kindOrders, kindAuthzs, kindCerts} {
		if n := countFiles(t, dir, k); n != 0 {
			t.Errorf("%d files in %s after junk", n, k)
		}
	}
}

// TestNonceFlood: asking for nonces without end keeps at most maxNonces
// of them, and the newest still work.
func TestNonceFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var last string
	for range 2*maxNonces + 10 {
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "https://node.test/acme/new-nonce", nil))
		last = rec.Header().Get("Replay-Nonce")
	}
	e.srv.nonces.mu.Lock()
	n, q := len(e.srv.nonces.m), len(e.srv.nonces.queue)
	e.srv.nonces.mu.Unlock()
	if n > maxNonces || q > 2*maxNonces+1 {
		t.Errorf("%d nonces kept, queue %d; want at most %d", n, q, maxNonces)
	}
	if !e.srv.nonces.use(last, e.srv.o.Now()) {
		t.Error("the newest nonce was forgotten")
	}
}

// TestSlowBody: a client that sends its headers and then trickles the
// body, or stops, is answered and let go once the body's time is up; the
// header timeout of the listener does not cover bodies.
func TestSlowBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.bodyTimeout = 200 * time.Millisecond })
	conn, err := tls.Dial("tcp", e.ts.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test server
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := testCtx(t, 20*time.Second) // a bound for a failing test only
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "POST /acme/new-account HTTP/1.1\r\nHost: node.test\r\nContent-Type: application/jose+json\r\nContent-Length: 1000\r\n\r\n{")
	// Send nothing more: the server must give up on the body by itself.
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server waited for the body until the test's bound: %v", err)
		}
		return // it closed the connection: let go
	}
	res.Body.Close()
	if res.StatusCode < 400 {
		t.Errorf("status %d for a body that never came", res.StatusCode)
	}
}
