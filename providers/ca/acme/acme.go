// Package acme is an ACME (RFC 8555) server for the node's certificate
// authority: standard ACME clients (lego, certbot, acme.sh, Caddy,
// golang.org/x/crypto/acme) register accounts, place orders, prove control
// of DNS names and IP addresses with http-01 challenges and download
// certificates, which a Signer issues.
//
// The Server is an http.Handler mounted at Options.Prefix. Requests are
// JWS-signed (ES256/384/512, RS256/384/512, PS256/384/512, EdDSA); the
// JWS and JWK code is written here on crypto/*. A Policy says who may
// make an account (external account binding, listed keys, or anyone),
// which names may be certified and how many orders may be pending.
// Accounts, orders, authorizations and certificates live in memory and,
// when Options.Dir is set, in JSON files there.
package acme

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Signer issues a certificate for csr, valid for ttl (zero: the signer's
// default lifetime). It returns the leaf first, then any intermediates.
// The names in csr have been checked against the order's identifiers.
type Signer func(ctx context.Context, csr *x509.CertificateRequest, ttl time.Duration) ([]*x509.Certificate, error)

// Options configure a Server. Only Signer is required.
type Options struct {
	Prefix     string // URL path prefix the handler is mounted at, e.g. "/acme"
	Signer     Signer
	HTTP01Port int // port to fetch http-01 challenges from (default 80)
	// Resolve gives the addresses of a DNS name for http-01 validation
	// (default net.DefaultResolver).
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
	// Policy returns the policy in force: who may make an account, what
	// may be certified, the caps on orders. It is called at every
	// request. Nil, or a nil result, is the zero Policy: no account and
	// no identifier is admitted.
	Policy func() *Policy
	Dir    string // where accounts and orders persist (JSON files, 0600); "" keeps them in memory
	Log    *slog.Logger
	Now    func() time.Time
	// Revoke revokes a certificate this server issued, with an RFC 5280
	// reason code. Nil leaves revokeCert out of the directory.
	Revoke func(ctx context.Context, cert *x509.Certificate, reason int) error

	pruneEvery  time.Duration // how often expired objects are pruned (gcInterval if 0); for tests
	bodyTimeout time.Duration // for reading a request's body (maxBodyTime if 0); for tests
}

// Limits and lifetimes.
const (
	maxBody           = 64 << 10         // of a JWS request
	maxBodyTime       = 10 * time.Second // to read it, against clients that trickle it
	maxIdentifiers    = 100              // per order
	maxContacts       = 10
	maxNonces         = 1 << 14 // outstanding; the oldest are forgotten first
	nonceLifetime     = time.Hour
	orderLifetime     = 24 * time.Hour
	pendingAuthzLife  = 24 * time.Hour
	validAuthzLife    = 30 * 24 * time.Hour
	validationTimeout = 30 * time.Second // one http-01 validation, redirects included
	maxValidations    = 16               // at once
	maxRedirects      = 10               // and only on the validated name
	maxChallengeBody  = 8 << 10
	signTimeout       = time.Minute
	retryAfterSeconds = "1"
	gcInterval        = 10 * time.Minute
	gcGrace           = time.Hour // expired objects linger this long
	retryLimited      = "60"      // Retry-After of a rateLimited problem, in seconds
)

// Server is an ACME server; see ServeHTTP.
type Server struct {
	o      Options
	log    *slog.Logger
	nonces nonceStore
	client *http.Client // for http-01 fetches

	ctx    context.Context // canceled by Close; parents validations
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // bounds concurrent validations

	mu     sync.Mutex // guards st and closed
	st     *store
	closed bool // no validation may start
}

// New makes a Server, loading any state kept in o.Dir.
func New(o Options) (*Server, error) {
	if o.Signer == nil {
		return nil, errors.New("acme: Options.Signer is required")
	}
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.Prefix != "" && (!strings.HasPrefix(o.Prefix, "/") || strings.ContainsAny(o.Prefix, "?#")) {
		return nil, fmt.Errorf("acme: bad Prefix %q: want an absolute URL path", o.Prefix)
	}
	if o.HTTP01Port == 0 {
		o.HTTP01Port = 80
	}
	if o.HTTP01Port < 0 || o.HTTP01Port > 65535 {
		return nil, fmt.Errorf("acme: bad HTTP01Port %d", o.HTTP01Port)
	}
	if o.Resolve == nil {
		o.Resolve = func(ctx context.Context, host string) ([]net.IP, error) {
			return net.DefaultResolver.LookupIP(ctx, "ip", host)
		}
	}
	if o.Policy == nil {
		o.Policy = func() *Policy { return nil }
	}
	if o.pruneEvery <= 0 {
		o.pruneEvery = gcInterval
	}
	if o.bodyTimeout <= 0 {
		o.bodyTimeout = maxBodyTime
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, log: o.Log, sem: make(chan struct{}, maxValidations)}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "acme")
	st, err := openStore(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	s.st = st
	if err := st.gc(s.now()); err != nil {
		s.log.Warn("pruning expired objects", "err", err)
	}
	s.nonces.m = make(map[string]time.Time)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.client = s.newValidationClient()
	s.wg.Add(1)
	go s.pruneLoop()
	return s, nil
}

// policy is the policy in force.
func (s *Server) policy() *Policy {
	if p := s.o.Policy(); p != nil {
		return p
	}
	return &Policy{}
}

// pruneLoop prunes expired orders and authorizations every pruneEvery
// until Close.
func (s *Server) pruneLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.prune()
		}
	}
}

// prune forgets the orders and authorizations that expired more than
// gcGrace ago, and their files.
func (s *Server) prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.st.gc(s.now()); err != nil {
		s.log.Warn("pruning expired objects", "err", err)
	}
}

// Close stops validations in progress and waits for them to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
	return nil
}

func (s *Server) now() time.Time { return s.o.Now().UTC().Truncate(time.Second) }

// Paths under the prefix.
const (
	pathDirectory  = "/directory"
	pathNewNonce   = "/new-nonce"
	pathNewAccount = "/new-account"
	pathNewOrder   = "/new-order"
	pathRevoke     = "/revoke-cert"
	pathKeyChange  = "/key-change"
	pathAccount    = "/account/" // ID, ID/orders
	pathOrder      = "/order/"   // ID, ID/finalize
	pathAuthz      = "/authz/"   // ID
	pathChallenge  = "/chall/"   // authz ID/http-01
	pathCert       = "/cert/"    // ID
)

// base is the absolute URL of the prefix, as the client reached it.
func (s *Server) base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + s.o.Prefix
}

// ServeHTTP serves the ACME resources under Options.Prefix: directory,
// new-nonce, new-account, new-order, account/ID[/orders], order/ID,
// order/ID/finalize, authz/ID, chall/ID/http-01, cert/ID, revoke-cert and
// key-change. The prefix may be left on the request path or stripped.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rel := r.URL.Path
	if s.o.Prefix != "" && (rel == s.o.Prefix || strings.HasPrefix(rel, s.o.Prefix+"/")) {
		rel = rel[len(s.o.Prefix):]
	}
	base := s.base(r)
	h := w.Header()
	h.Set("Replay-Nonce", s.nonces.issue(s.o.Now()))
	h.Set("Link", link(base+pathDirectory, "index"))

	switch rel {
	case pathDirectory:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.methodNotAllowed(w, "GET, HEAD")
			return
		}
		s.directory(w, base)
		return
	case pathNewNonce:
		h.Set("Cache-Control", "no-store")
		switch r.Method {
		case http.MethodHead:
			w.WriteHeader(http.StatusOK)
		case http.MethodGet:
			w.WriteHeader(http.StatusNoContent)
		default:
			s.methodNotAllowed(w, "GET, HEAD")
		}
		return
	}
	if r.Method != http.MethodPost {
		s.methodNotAllowed(w, "POST")
		return
	}
	h.Set("Cache-Control", "no-store")
	// A body trickled in holds a connection and a goroutine; the
	// listener's header timeout does not cover it. (A recorder, as in
	// tests, cannot set deadlines: then there is none.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.o.bodyTimeout))
	if p := s.post(w, r, base, rel); p != nil {
		if p.Status >= 500 {
			s.log.Warn("request failed", "path", rel, "type", p.Type, "detail", p.Detail)
		} else {
			s.log.Debug("request refused", "path", rel, "type", p.Type, "detail", p.Detail)
		}
		writeProblem(w, p)
	}
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeProblem(w, newProblem(http.StatusMethodNotAllowed, errMalformed, "method not allowed; use %s", allow))
}

// post routes a POST request; a non-nil problem is the response.
func (s *Server) post(w http.ResponseWriter, r *http.Request, base, rel string) *problem {
	switch rel {
	case pathNewAccount:
		req, p := s.verify(r, base, rel, keyJWK)
		if p != nil {
			return p
		}
		return s.newAccount(w, base, req)
	case pathNewOrder:
		req, p := s.verify(r, base, rel, keyKID)
		if p != nil {
			return p
		}
		return s.newOrder(w, base, req)
	case pathRevoke:
		if s.o.Revoke == nil {
			return newProblem(http.StatusNotImplemented, errServerInternal, "revocation is not offered by this server")
		}
		req, p := s.verify(r, base, rel, keyEither)
		if p != nil {
			return p
		}
		return s.revokeCert(r.Context(), w, req)
	case pathKeyChange:
		req, p := s.verify(r, base, rel, keyKID)
		if p != nil {
			return p
		}
		return s.keyChange(w, base, req)
	}

	kind, id, sub, ok := splitPath(rel)
	if !ok {
		return notFound("resource")
	}
	req, p := s.verify(r, base, rel, keyKID)
	if p != nil {
		return p
	}
	switch {
	case kind == pathAccount && sub == "":
		return s.account(w, base, req, id)
	case kind == pathAccount && sub == "orders":
		return s.accountOrders(w, base, req, id)
	case kind == pathOrder && sub == "":
		return s.getOrder(w, base, req, id)
	case kind == pathOrder && sub == "finalize":
		return s.finalize(w, base, req, id)
	case kind == pathAuthz && sub == "":
		return s.authorization(w, base, req, id)
	case kind == pathChallenge && sub == challengeHTTP01:
		return s.challenge(w, base, req, id)
	case kind == pathCert && sub == "":
		return s.certificate(w, req, id)
	}
	return notFound("resource")
}

// splitPath splits "/KIND/ID[/SUB]" for the object kinds. IDs are
// base64url, as made by newID.
func splitPath(rel string) (kind, id, sub string, ok bool) {
	for _, k := range []string{pathAccount, pathOrder, pathAuthz, pathChallenge, pathCert} {
		rest, found := strings.CutPrefix(rel, k)
		if !found {
			continue
		}
		id, sub, _ = strings.Cut(rest, "/")
		if !validID(id) {
			return "", "", "", false
		}
		return k, id, sub, true
	}
	return "", "", "", false
}

func link(url, rel string) string { return "<" + url + `>;rel="` + rel + `"` }

// directory serves the directory object (RFC 8555 section 7.1.1).
func (s *Server) directory(w http.ResponseWriter, base string) {
	d := map[string]any{
		"newNonce":   base + pathNewNonce,
		"newAccount": base + pathNewAccount,
		"newOrder":   base + pathNewOrder,
		"keyChange":  base + pathKeyChange,
		"meta":       map[string]any{"externalAccountRequired": s.policy().eabRequired()},
	}
	if s.o.Revoke != nil {
		d["revokeCert"] = base + pathRevoke
	}
	writeJSON(w, http.StatusOK, d)
}

// writeJSON sends v as application/json with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, internal("encoding response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Which key a request must be signed with.
const (
	keyKID    = iota // an account's, named by "kid"
	keyJWK           // one given in "jwk" (newAccount)
	keyEither        // revokeCert: the account's or the certificate's
)

// request is a verified JWS request.
type request struct {
	url     string
	payload []byte // empty for POST-as-GET
	acct    *account
	key     crypto.PublicKey
}

// postAsGet reports whether the request is a POST-as-GET.
func (q *request) postAsGet() bool { return len(q.payload) == 0 }

// decode unmarshals the payload, which must be a JSON object.
func (q *request) decode(v any) *problem {
	if len(q.payload) == 0 || q.payload[0] != '{' {
		return malformed("payload must be a JSON object")
	}
	if err := json.Unmarshal(q.payload, v); err != nil {
		return malformed("payload: %v", err)
	}
	return nil
}

// verify reads and checks the JWS body of r (RFC 8555 section 6): its
// content type, algorithm, url, key, signature and nonce, in that order.
// The nonce is used up only by a request whose signature verifies.
func (s *Server) verify(r *http.Request, base, rel string, mode int) (*request, *problem) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/jose+json" {
		return nil, newProblem(http.StatusUnsupportedMediaType, errMalformed, "Content-Type must be application/jose+json")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, malformed("reading request: %v", err)
	}
	if len(body) > maxBody {
		return nil, newProblem(http.StatusRequestEntityTooLarge, errMalformed, "request larger than %d bytes", maxBody)
	}
	j, err := parseJWS(body)
	if err != nil {
		return nil, malformed("%v", err)
	}
	url := base + rel
	q, p := s.checkJWS(j, url, mode)
	if p != nil {
		return nil, p
	}
	if !j.hasNonce || j.header.Nonce == "" {
		return nil, newProblem(http.StatusBadRequest, errBadNonce, "JWS has no nonce")
	}
	if !s.nonces.use(j.header.Nonce, s.o.Now()) {
		return nil, newProblem(http.StatusBadRequest, errBadNonce, "unknown, used or expired nonce")
	}
	return q, nil
}

// checkJWS checks everything about a parsed JWS but its nonce: alg, url,
// key and signature. It serves both outer requests and the inner JWS of
// keyChange.
func (s *Server) checkJWS(j *parsedJWS, url string, mode int) (*request, *problem) {
	hd := j.header
	if !supportedAlg(hd.Alg) {
		p := newProblem(http.StatusBadRequest, errBadSignatureAlgorithm, "JWS algorithm %q is not supported", hd.Alg)
		p.Algorithms = algorithms()
		return nil, p
	}
	if hd.URL != url {
		return nil, unauthorized("JWS url %q does not match request URL %q", hd.URL, url)
	}
	hasJWK := len(hd.JWK) > 0 && string(hd.JWK) != "null"
	if hasJWK == (hd.KID != "") {
		return nil, malformed(`JWS must carry exactly one of "jwk" and "kid"`)
	}
	q := &request{url: url, payload: j.payload}
	switch {
	case hasJWK && mode == keyKID:
		return nil, malformed(`this resource needs a JWS with "kid", not "jwk"`)
	case !hasJWK && mode == keyJWK:
		return nil, malformed(`this resource needs a JWS with "jwk", not "kid"`)
	case hasJWK:
		key, err := parseJWK(hd.JWK)
		if err != nil {
			return nil, newProblem(http.StatusBadRequest, errBadPublicKey, "%v", err)
		}
		q.key = key
	default:
		acct, p := s.accountByKID(hd.KID, url)
		if p != nil {
			return nil, p
		}
		q.acct, q.key = acct, acct.pub
	}
	if err := verifyJWS(hd.Alg, q.key, j.signingInput, j.signature); err != nil {
		return nil, malformed("JWS verification error: %v", err)
	}
	return q, nil
}

// accountByKID finds the valid account whose URL is kid. reqURL is the
// request's URL, whose origin and prefix the account URL must share.
func (s *Server) accountByKID(kid, reqURL string) (*account, *problem) {
	i := strings.LastIndex(kid, pathAccount)
	if i < 0 || !strings.HasPrefix(reqURL, kid[:i]+"/") {
		return nil, newProblem(http.StatusBadRequest, errAccountDoesNotExist, "kid %q is not an account URL of this server", kid)
	}
	id := kid[i+len(pathAccount):]
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.accounts[id]
	if a == nil || !validID(id) {
		return nil, newProblem(http.StatusBadRequest, errAccountDoesNotExist, "no account %q", kid)
	}
	if a.Status != statusValid {
		return nil, unauthorized("account is %s", a.Status)
	}
	if !s.policy().admits(a) {
		return nil, unauthorized("account is no longer admitted by this server's owner")
	}
	c := *a // accounts are replaced, never changed, under s.mu; a copy is still safer
	return &c, nil
}

// nonceStore holds the nonces issued and not yet used, the oldest first.
type nonceStore struct {
	mu    sync.Mutex
	m     map[string]time.Time // nonce → expiry
	queue []string             // in issue order; may hold used nonces
}

func (n *nonceStore) issue(now time.Time) string {
	v := newToken(16)
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(n.m) >= maxNonces && len(n.queue) > 0 {
		delete(n.m, n.queue[0])
		n.queue = n.queue[1:]
	}
	if len(n.queue) > 2*maxNonces { // compact away used nonces
		q := make([]string, 0, len(n.m))
		for _, x := range n.queue {
			if _, ok := n.m[x]; ok {
				q = append(q, x)
			}
		}
		n.queue = q
	}
	n.m[v] = now.Add(nonceLifetime)
	n.queue = append(n.queue, v)
	return v
}

// use consumes nonce, reporting whether it was outstanding and unexpired.
func (n *nonceStore) use(nonce string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	exp, ok := n.m[nonce]
	if !ok {
		return false
	}
	delete(n.m, nonce)
	return now.Before(exp)
}

// newToken is n random bytes in base64url.
func newToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b64enc(b)
}

// newID makes an object ID: 128 random bits, base64url.
func newID() string { return newToken(16) }

// validID reports whether id could have been made by newID.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// newValidationClient makes the HTTP client for http-01: it resolves with
// Options.Resolve, uses no proxy and keeps no connections.
func (s *Server) newValidationClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            func(ctx context.Context, network, addr string) (net.Conn, error) { return s.dial(ctx, d, addr) },
		DisableKeepAlives:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  10 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		// A redirect to https is followed without checking the
		// certificate: the key authorization is what proves control
		// (RFC 8555 section 8.3).
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: s.checkRedirect,
	}
}
