package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"time"
)

// renewAt is when a certificate should be renewed: when two thirds of
// its lifetime have passed.
func renewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(life / 3 * 2)
}

// certificate is Certificate without waiting for a ctl write: the ctl commands call it.
func (c *CA) certificate(name string, sans []string) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(sans) == 0 {
		sans = []string{name}
	}
	want, err := parseSANs(sans)
	if err != nil {
		return nil, err
	}
	is := c.certs[name]
	now := c.now()
	if is != nil && certSANs(is.Cert).key() == want.key() && c.freshLocked(is, now) {
		return is.tls, nil
	}
	ttl := time.Duration(0)
	if is != nil {
		ttl = is.lifetime()
	}
	next, err := c.issueLocked(name, sans, ttl)
	if err != nil {
		if is != nil && now.Before(is.Cert.NotAfter) && certSANs(is.Cert).key() == want.key() {
			c.log.Warn("ca: renewal failed; serving the old certificate", "name", name, "err", err)
			return is.tls, nil
		}
		return nil, err
	}
	return next.tls, nil
}

// freshLocked reports whether is needs no renewal at now.
func (c *CA) freshLocked(is *Issued, now time.Time) bool {
	if !now.Before(renewAt(is.Cert)) || now.Before(is.Cert.NotBefore) {
		return false
	}
	if _, revoked := c.revoked[is.Serial()]; revoked {
		return false
	}
	return len(is.Chain) > 1 && is.Chain[1].Equal(c.inter)
}

// TLSConfig returns a server configuration for an endpoint of the node:
// its certificate is Certificate(name, sans), issued at the first
// handshake and renewed by later ones as needed.
func (c *CA) TLSConfig(name string, sans []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.Certificate(name, sans)
		},
	}
}

// ClientTLSConfig returns a client configuration that trusts the root.
func (c *CA) ClientTLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.RootPool()}
}

// maxCSR is the most the csr file and SignCSR's PEM form accept.
const maxCSR = 64 << 10

// SignCSR signs a certificate for the request's key, after checking its
// signature, valid for ttl (DefaultTTL if 0). Only the subject alternative
// names and the common name are taken from the request (the common name
// is added to the DNS names or addresses if it is not among them). It
// returns the leaf and the intermediate. Refused requests give errors
// wrapping ErrBadCSR.
func (c *CA) SignCSR(csr *x509.CertificateRequest, ttl time.Duration) ([]*x509.Certificate, error) {
	if csr == nil {
		return nil, fmt.Errorf("ca: %w: none given", ErrBadCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: %w: signature does not verify", ErrBadCSR)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: %w: %v", ErrBadCSR, err)
	}
	var names []string
	names = append(names, csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		names = append(names, ip.String())
	}
	names = append(names, csr.EmailAddresses...)
	for _, u := range csr.URIs {
		names = append(names, u.String())
	}
	cn := csr.Subject.CommonName
	if len(cn) > 64 {
		return nil, fmt.Errorf("ca: %w: common name longer than 64 bytes", ErrBadCSR)
	}
	set, err := parseSANs(names)
	if err != nil {
		return nil, fmt.Errorf("ca: %w: %v", ErrBadCSR, trimCA(err))
	}
	if cn != "" {
		cs, err := parseSANs([]string{cn})
		if err != nil || len(cs.emails)+len(cs.uris) > 0 {
			return nil, fmt.Errorf("ca: %w: common name %q is not a dns name or address", ErrBadCSR, cut(cn, 40))
		}
		merged, err := parseSANs(append(set.strings(), cs.strings()...))
		if err != nil {
			return nil, fmt.Errorf("ca: %w: %v", ErrBadCSR, trimCA(err))
		}
		set = merged
	}
	if set.empty() {
		return nil, fmt.Errorf("ca: %w: it names nothing", ErrBadCSR)
	}
	ttl, err = checkTTL(ttl)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	leaf, err := c.signLocked(pkix.Name{CommonName: cn}, set, csr.PublicKey, ttl)
	if err != nil {
		return nil, err
	}
	c.log.Info("ca: signed a request", "serial", serialText(leaf.SerialNumber), "cn", cn)
	return []*x509.Certificate{leaf, c.inter}, nil
}

// SignCSRContext is SignCSR with a context, in the form the ACME server
// takes as its Signer.
func (c *CA) SignCSRContext(ctx context.Context, csr *x509.CertificateRequest, ttl time.Duration) ([]*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.SignCSR(csr, ttl)
}

// SignCSRPEM parses a request in PEM (or DER) and signs it with SignCSR,
// returning the chain in PEM.
func (c *CA) SignCSRPEM(data []byte, ttl time.Duration) ([]byte, error) {
	csr, err := ParseCSR(data)
	if err != nil {
		return nil, err
	}
	chain, err := c.SignCSR(csr, ttl)
	if err != nil {
		return nil, err
	}
	return certPEM(chain...), nil
}

// ParseCSR parses a certificate request in PEM or DER.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("ca: %w: empty", ErrBadCSR)
	}
	if len(data) > maxCSR {
		return nil, fmt.Errorf("ca: %w: larger than %d bytes", ErrBadCSR, maxCSR)
	}
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != pemCSR && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("ca: %w: PEM block is %q, not %q", ErrBadCSR, cut(blk.Type, 30), pemCSR)
		}
		der = blk.Bytes
	} else if data[0] != 0x30 {
		return nil, fmt.Errorf("ca: %w: not a PEM or DER request", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("ca: %w: %v", ErrBadCSR, err)
	}
	return csr, nil
}

// checkPublicKey refuses keys too weak to certify.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ca: unsupported curve")
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("ca: rsa key of %d bits is too weak (at least 2048)", k.N.BitLen())
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("ca: unsupported key type %T", pub)
}

// trimCA drops the package prefix of an error that is to be wrapped.
func trimCA(err error) string {
	s := err.Error()
	if len(s) > 4 && s[:4] == "ca: " {
		return s[4:]
	}
	return s
}
