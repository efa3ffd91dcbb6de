// Finalize: the CSR checked against the order and the account, the
// certificate issued and served, and revocation by the certificate's
// key or account.

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
