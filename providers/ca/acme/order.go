package acme

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Wire forms of orders, authorizations and challenges.
type wireOrder struct {
	Status         string       `json:"status"`
	Expires        string       `json:"expires"`
	Identifiers    []identifier `json:"identifiers"`
	NotBefore      string       `json:"notBefore,omitempty"`
	NotAfter       string       `json:"notAfter,omitempty"`
	Error          *problem     `json:"error,omitempty"`
	Authorizations []string     `json:"authorizations"`
	Finalize       string       `json:"finalize"`
	Certificate    string       `json:"certificate,omitempty"`
}

type wireAuthz struct {
	Identifier identifier      `json:"identifier"`
	Status     string          `json:"status"`
	Expires    string          `json:"expires"`
	Challenges []wireChallenge `json:"challenges"`
}

type wireChallenge struct {
	Type      string   `json:"type"`
	URL       string   `json:"url"`
	Status    string   `json:"status"`
	Token     string   `json:"token"`
	Validated string   `json:"validated,omitempty"`
	Error     *problem `json:"error,omitempty"`
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// writeOrder sends o; the caller holds s.mu.
func (s *Server) writeOrder(w http.ResponseWriter, base string, status int, o *order) {
	wo := wireOrder{
		Status:      s.st.orderStatus(o, s.now()),
		Expires:     stamp(o.Expires),
		Identifiers: o.Identifiers,
		Error:       o.Error,
		Finalize:    base + pathOrder + o.ID + "/finalize",
	}
	if o.NotBefore != nil {
		wo.NotBefore = stamp(*o.NotBefore)
	}
	if o.NotAfter != nil {
		wo.NotAfter = stamp(*o.NotAfter)
	}
	for _, a := range o.Authzs {
		wo.Authorizations = append(wo.Authorizations, base+pathAuthz+a)
	}
	if o.Cert != "" && wo.Status == statusValid {
		wo.Certificate = base + pathCert + o.Cert
	}
	if wo.Status == statusProcessing {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	w.Header().Set("Location", base+pathOrder+o.ID)
	writeJSON(w, status, wo)
}

func (s *Server) wireChallenge(base string, a *authz, c *challenge) wireChallenge {
	wc := wireChallenge{
		Type:   c.Type,
		URL:    base + pathChallenge + a.ID + "/" + c.Type,
		Status: c.Status,
		Token:  c.Token,
		Error:  c.Error,
	}
	if c.Validated != nil {
		wc.Validated = stamp(*c.Validated)
	}
	return wc
}

// writeAuthz sends a; the caller holds s.mu.
func (s *Server) writeAuthz(w http.ResponseWriter, base string, a *authz) {
	wa := wireAuthz{Identifier: a.Identifier, Status: a.status(s.now()), Expires: stamp(a.Expires)}
	for _, c := range a.Challenges {
		wa.Challenges = append(wa.Challenges, s.wireChallenge(base, a, c))
		if c.Status == statusProcessing && wa.Status == statusPending {
			w.Header().Set("Retry-After", retryAfterSeconds)
		}
	}
	writeJSON(w, http.StatusOK, wa)
}

// checkIdentifier validates and normalizes an order's identifier.
// It refuses what pol does not allow.
func (s *Server) checkIdentifier(pol *Policy, id identifier) (identifier, *problem) {
	switch id.Type {
	case "dns":
		name := strings.ToLower(id.Value)
		if strings.HasPrefix(name, "*.") {
			return id, newProblem(http.StatusBadRequest, errRejectedIdentifier, "wildcard %q needs dns-01, which this server does not offer", id.Value)
		}
		if net.ParseIP(name) != nil {
			return id, malformed("%q is an IP address; use an identifier of type ip", id.Value)
		}
		if !validDNSName(name) {
			return id, newProblem(http.StatusBadRequest, errRejectedIdentifier, "%q is not a valid DNS name", id.Value)
		}
		id.Value = name
	case "ip":
		a, err := netip.ParseAddr(id.Value)
		if err != nil || a.Zone() != "" {
			return id, malformed("%q is not an IP address", id.Value)
		}
		if a.Unmap().String() != id.Value {
			return id, malformed("IP address %q is not in canonical form (%s)", id.Value, a.Unmap())
		}
	default:
		return id, newProblem(http.StatusBadRequest, errUnsupportedIdentifier, "identifier type %q is not supported; use dns or ip", id.Type)
	}
	if err := pol.check(id); err != nil {
		return id, newProblem(http.StatusBadRequest, errRejectedIdentifier, "%s is not allowed: %v", id.Value, err)
	}
	return id, nil
}

// validDNSName reports whether name is a lower-case host name: labels of
// letters, digits and inner hyphens, 63 bytes at most, 253 in all.
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// newOrder creates an order and its authorizations (RFC 8555 section
// 7.4), reusing the account's valid authorizations.
func (s *Server) newOrder(w http.ResponseWriter, base string, q *request) *problem {
	var p struct {
		Identifiers []identifier `json:"identifiers"`
		NotBefore   string       `json:"notBefore"`
		NotAfter    string       `json:"notAfter"`
	}
	if pr := q.decode(&p); pr != nil {
		return pr
	}
	if len(p.Identifiers) == 0 {
		return malformed("order has no identifiers")
	}
	if len(p.Identifiers) > maxIdentifiers {
		return newProblem(http.StatusBadRequest, errRejectedIdentifier, "at most %d identifiers per order", maxIdentifiers)
	}
	now := s.now()
	pol := s.policy()
	var ids []identifier
	var subs []*problem
	for _, id := range p.Identifiers {
		n, pr := s.checkIdentifier(pol, id)
		if pr != nil {
			pr.Identifier = &identifier{Type: id.Type, Value: id.Value}
			subs = append(subs, pr)
			continue
		}
		if !slices.Contains(ids, n) {
			ids = append(ids, n)
		}
	}
	switch {
	case len(subs) == 1:
		return subs[0]
	case len(subs) > 1:
		pr := newProblem(http.StatusBadRequest, errRejectedIdentifier, "%d identifiers refused", len(subs))
		pr.Subproblems = subs
		return pr
	}
	o := &order{ID: newID(), Account: q.acct.ID, Status: statusPending, Identifiers: ids, Created: now, Expires: now.Add(orderLifetime)}
	for _, f := range []struct {
		in  string
		out **time.Time
	}{{p.NotBefore, &o.NotBefore}, {p.NotAfter, &o.NotAfter}} {
		if f.in == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.in)
		if err != nil {
			return malformed("bad time %q: %v", f.in, err)
		}
		t = t.UTC()
		*f.out = &t
	}
	if o.NotBefore != nil && o.NotBefore.After(now.Add(time.Minute)) {
		return malformed("notBefore in the future is not supported")
	}
	if o.NotAfter != nil && !o.NotAfter.After(now.Add(time.Minute)) {
		return malformed("notAfter must be in the future")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var fresh []*authz
	for _, id := range ids {
		a := s.reusableAuthz(q.acct.ID, id, now)
		if a == nil {
			a = &authz{
				ID: newID(), Account: q.acct.ID, Identifier: id, Status: statusPending,
				Expires:    now.Add(pendingAuthzLife),
				Challenges: []*challenge{{Type: challengeHTTP01, Token: newToken(32), Status: statusPending}},
			}
			fresh = append(fresh, a)
		}
		o.Authzs = append(o.Authzs, a.ID)
		if a.Expires.Before(o.Expires) {
			o.Expires = a.Expires
		}
	}
	if pr := s.st.checkCaps(pol, q.acct.ID, len(fresh), now); pr != nil {
		return pr
	}
	for _, a := range fresh {
		if err := s.st.save(kindAuthzs, a.ID, a); err != nil {
			return internal("%v", err)
		}
	}
	if err := s.st.save(kindOrders, o.ID, o); err != nil {
		return internal("%v", err)
	}
	for _, a := range fresh {
		s.st.authzs[a.ID] = a
	}
	s.st.orders[o.ID] = o
	s.log.Info("order created", "account", o.Account, "order", o.ID, "identifiers", ids)
	s.writeOrder(w, base, http.StatusCreated, o)
	return nil
}

// reusableAuthz finds a valid authorization of the account for id that
// has a day left at least. The caller holds s.mu.
func (s *Server) reusableAuthz(acct string, id identifier, now time.Time) *authz {
	for _, a := range s.st.authzs {
		if a.Account == acct && a.Identifier == id && a.status(now) == statusValid && a.Expires.After(now.Add(24*time.Hour)) {
			return a
		}
	}
	return nil
}

// getOrder serves an order (POST-as-GET).
func (s *Server) getOrder(w http.ResponseWriter, base string, q *request, id string) *problem {
	if !q.postAsGet() {
		return malformed("expected POST-as-GET")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.st.orders[id]
	if o == nil || o.Account != q.acct.ID {
		return notFound("order")
	}
	s.writeOrder(w, base, http.StatusOK, o)
	return nil
}

// authorization serves or deactivates an authorization.
func (s *Server) authorization(w http.ResponseWriter, base string, q *request, id string) *problem {
	var p struct {
		Status string `json:"status"`
	}
	if !q.postAsGet() {
		if pr := q.decode(&p); pr != nil {
			return pr
		}
		if p.Status != statusDeactivated {
			return malformed("an authorization's status may only be set to %q", statusDeactivated)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.authzs[id]
	if a == nil || a.Account != q.acct.ID {
		return notFound("authorization")
	}
	if p.Status == statusDeactivated {
		if st := a.status(s.now()); st != statusPending && st != statusValid {
			return malformed("a %s authorization cannot be deactivated", st)
		}
		prev := a.Status
		a.Status = statusDeactivated
		if err := s.st.save(kindAuthzs, a.ID, a); err != nil {
			a.Status = prev
			return internal("%v", err)
		}
	}
	s.writeAuthz(w, base, a)
	return nil
}

// challenge serves a challenge (POST-as-GET) or, given a JSON object,
// starts its validation (RFC 8555 section 7.5.1), which goes on after the
// response: the challenge is processing, then valid or invalid.
func (s *Server) challenge(w http.ResponseWriter, base string, q *request, authzID string) *problem {
	start := !q.postAsGet()
	if start {
		var p map[string]any
		if pr := q.decode(&p); pr != nil {
			return pr
		}
	}
	pol := s.policy()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.authzs[authzID]
	if a == nil || a.Account != q.acct.ID || len(a.Challenges) == 0 {
		return notFound("challenge")
	}
	c := a.Challenges[0]
	if start && c.Status == statusPending && a.status(s.now()) == statusPending {
		if err := pol.check(a.Identifier); err != nil { // the policy changed since the order
			return newProblem(http.StatusBadRequest, errRejectedIdentifier, "%s is not allowed: %v", a.Identifier.Value, err)
		}
		if s.closed {
			return newProblem(http.StatusServiceUnavailable, errServerInternal, "server is shutting down")
		}
		c.Status = statusProcessing
		if err := s.st.save(kindAuthzs, a.ID, a); err != nil {
			c.Status = statusPending
			return internal("%v", err)
		}
		id, ident, token := a.ID, a.Identifier, c.Token
		keyAuth := token + "." + q.acct.Thumbprint
		s.wg.Add(1) // under s.mu with s.closed false, so before Close's Wait
		go func() {
			defer s.wg.Done()
			s.runValidation(id, ident, token, keyAuth)
		}()
		s.log.Info("validation started", "authz", a.ID, "identifier", a.Identifier.Value)
	}
	if c.Status == statusPending || c.Status == statusProcessing {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	w.Header().Add("Link", link(base+pathAuthz+a.ID, "up"))
	writeJSON(w, http.StatusOK, s.wireChallenge(base, a, c))
	return nil
}

// checkCSR checks that csr names exactly the order's identifiers, with an
// acceptable key other than the account's.
func checkCSR(csr *x509.CertificateRequest, ids []identifier, acct *account) *problem {
	bad := func(format string, args ...any) *problem {
		return newProblem(http.StatusBadRequest, errBadCSR, format, args...)
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return bad("CSR may name only DNS names and IP addresses")
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if b := k.N.BitLen(); b < minRSABits || b > maxRSABits {
			return bad("RSA key of %d bits; want %d to %d", b, minRSABits, maxRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return bad("unsupported curve")
		}
	case ed25519.PublicKey:
	default:
		return bad("unsupported key type %T", csr.PublicKey)
	}
	if tp, err := thumbprint(csr.PublicKey); err == nil && tp == acct.Thumbprint {
		return bad("the certificate key must not be the account key")
	}
	got := make(map[identifier]bool)
	for _, n := range csr.DNSNames {
		n = strings.ToLower(n)
		if net.ParseIP(n) != nil {
			return bad("IP address %q among the DNS names", n)
		}
		got[identifier{"dns", n}] = true
	}
	for _, ip := range csr.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return bad("bad IP address")
		}
		got[identifier{"ip", a.Unmap().String()}] = true
	}
	if cn := csr.Subject.CommonName; cn != "" {
		if a, err := netip.ParseAddr(cn); err == nil {
			got[identifier{"ip", a.Unmap().String()}] = true
		} else {
			got[identifier{"dns", strings.ToLower(cn)}] = true
		}
	}
	want := make(map[identifier]bool)
	for _, id := range ids {
		want[id] = true
	}
	var extra, missing []string
	for id := range got {
		if !want[id] {
			extra = append(extra, id.Value)
		}
	}
	for id := range want {
		if !got[id] {
			missing = append(missing, id.Value)
		}
	}
	if len(extra) > 0 || len(missing) > 0 {
		slices.Sort(extra)
		slices.Sort(missing)
		return bad("CSR names must equal the order's identifiers: not in the order %q, missing from the CSR %q", extra, missing)
	}
	return nil
}

// finalize issues the order's certificate for a CSR (RFC 8555 section
// 7.4). Issuing happens during the request.
func (s *Server) finalize(w http.ResponseWriter, base string, q *request, id string) *problem {
	var p struct {
		CSR string `json:"csr"`
	}
	if pr := q.decode(&p); pr != nil {
		return pr
	}
	der, err := b64dec(p.CSR)
	if err != nil {
		return newProblem(http.StatusBadRequest, errBadCSR, "csr: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return newProblem(http.StatusBadRequest, errBadCSR, "parsing CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return newProblem(http.StatusBadRequest, errBadCSR, "CSR signature: %v", err)
	}

	pol := s.policy()
	s.mu.Lock()
	o := s.st.orders[id]
	if o == nil || o.Account != q.acct.ID {
		s.mu.Unlock()
		return notFound("order")
	}
	for _, ident := range o.Identifiers { // the policy may have changed since the order
		if err := pol.check(ident); err != nil {
			s.mu.Unlock()
			return newProblem(http.StatusBadRequest, errRejectedIdentifier, "%s is no longer allowed: %v", ident.Value, err)
		}
	}
	now := s.now()
	if st := s.st.orderStatus(o, now); st != statusReady {
		s.mu.Unlock()
		return newProblem(http.StatusForbidden, errOrderNotReady, "order is %s, not ready", st)
	}
	if pr := checkCSR(csr, o.Identifiers, q.acct); pr != nil {
		s.mu.Unlock()
		return pr
	}
	o.Status = statusProcessing
	if err := s.st.save(kindOrders, o.ID, o); err != nil {
		o.Status = statusPending
		s.mu.Unlock()
		return internal("%v", err)
	}
	var ttl time.Duration
	if o.NotAfter != nil {
		ttl = o.NotAfter.Sub(now)
	}
	s.mu.Unlock()

	// Issuing goes on if the client goes away (the order then shows the
	// certificate), but not past Close.
	sctx, cancel := context.WithTimeout(s.ctx, signTimeout)
	chain, err := s.o.Signer(sctx, csr, ttl)
	cancel()
	if err == nil && (len(chain) == 0 || chain[0] == nil) {
		err = fmt.Errorf("signer returned no certificate")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Warn("issuing failed", "order", o.ID, "err", err)
		o.Status = statusInvalid
		o.Error = internal("issuing the certificate: %v", err)
		if serr := s.st.save(kindOrders, o.ID, o); serr != nil {
			s.log.Warn("saving order", "order", o.ID, "err", serr)
		}
		pr := *o.Error
		return &pr
	}
	var buf bytes.Buffer
	for _, c := range chain {
		if c == nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	c := &certificate{
		ID: newID(), Account: o.Account, Order: o.ID, Serial: chain[0].SerialNumber.Text(16),
		Chain: buf.String(), Issued: now,
	}
	if err := s.st.save(kindCerts, c.ID, c); err != nil {
		o.Status = statusInvalid
		o.Error = internal("%v", err)
		pr := *o.Error
		return &pr
	}
	s.st.certs[c.ID] = c
	s.st.bySerial[c.Serial] = c.ID
	o.Status, o.Cert = statusValid, c.ID
	if err := s.st.save(kindOrders, o.ID, o); err != nil {
		s.log.Warn("saving order", "order", o.ID, "err", err)
	}
	s.log.Info("certificate issued", "account", o.Account, "order", o.ID, "serial", c.Serial, "identifiers", o.Identifiers)
	s.writeOrder(w, base, http.StatusOK, o)
	return nil
}

// certificate serves a certificate chain (POST-as-GET).
func (s *Server) certificate(w http.ResponseWriter, q *request, id string) *problem {
	if !q.postAsGet() {
		return malformed("expected POST-as-GET")
	}
	s.mu.Lock()
	c := s.st.certs[id]
	if c == nil || c.Account != q.acct.ID {
		s.mu.Unlock()
		return notFound("certificate")
	}
	chain := c.Chain
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(chain))
	return nil
}

// revocationReasons are the RFC 5280 reason codes a client may give.
func revocationReason(r int) bool {
	switch r {
	case 0, 1, 3, 4, 5, 9: // unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn
		return true
	}
	return false
}

// revokeCert revokes a certificate this server issued (RFC 8555 section
// 7.6), asked by the account that ordered it, an account holding valid
// authorizations for all its names, or the holder of its key.
func (s *Server) revokeCert(ctx context.Context, w http.ResponseWriter, q *request) *problem {
	var p struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if pr := q.decode(&p); pr != nil {
		return pr
	}
	der, err := b64dec(p.Certificate)
	if err != nil {
		return malformed("certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return malformed("parsing certificate: %v", err)
	}
	reason := 0
	if p.Reason != nil {
		reason = *p.Reason
	}
	if !revocationReason(reason) {
		return newProblem(http.StatusBadRequest, errBadRevocationReason, "reason %d is not allowed", reason)
	}
	now := s.now()
	s.mu.Lock()
	c := s.st.certs[s.st.bySerial[leaf.SerialNumber.Text(16)]]
	if c == nil || !bytes.Equal(firstPEM(c.Chain), der) {
		s.mu.Unlock()
		return notFound("certificate issued by this server")
	}
	var ok bool
	switch {
	case q.acct != nil:
		ok = c.Account == q.acct.ID || s.holdsAuthzs(q.acct.ID, leaf, now)
	default:
		kt, err1 := thumbprint(q.key)
		ct, err2 := thumbprint(leaf.PublicKey)
		ok = err1 == nil && err2 == nil && kt == ct
	}
	if !ok {
		s.mu.Unlock()
		return unauthorized("not allowed to revoke this certificate")
	}
	if c.Revoked != nil {
		s.mu.Unlock()
		return newProblem(http.StatusBadRequest, errAlreadyRevoked, "certificate was revoked at %s", stamp(*c.Revoked))
	}
	s.mu.Unlock()

	if err := s.o.Revoke(ctx, leaf, reason); err != nil {
		return internal("revoking: %v", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	c.Revoked, c.Reason = &now, reason
	if err := s.st.save(kindCerts, c.ID, c); err != nil {
		return internal("%v", err)
	}
	s.log.Info("certificate revoked", "serial", c.Serial, "reason", reason)
	w.WriteHeader(http.StatusOK)
	return nil
}

func firstPEM(chain string) []byte {
	b, _ := pem.Decode([]byte(chain))
	if b == nil {
		return nil
	}
	return b.Bytes
}

// holdsAuthzs reports whether the account has valid authorizations for
// every name in cert. The caller holds s.mu.
func (s *Server) holdsAuthzs(acct string, cert *x509.Certificate, now time.Time) bool {
	var ids []identifier
	for _, n := range cert.DNSNames {
		ids = append(ids, identifier{"dns", strings.ToLower(n)})
	}
	for _, ip := range cert.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			ids = append(ids, identifier{"ip", a.Unmap().String()})
		}
	}
	if len(ids) == 0 {
		return false
	}
	for _, id := range ids {
		found := false
		for _, a := range s.st.authzs {
			if a.Account == acct && a.Identifier == id && a.status(now) == statusValid {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
