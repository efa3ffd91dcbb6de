// Revocation: the revoked list kept in the data directory, the CRL
// signed from it, and revocation by certificate (as ACME asks).

package ca

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A revocation is a revoked serial.
type revocation struct {
	serial *big.Int
	at     time.Time
	reason int
}

// revoke is Revoke without waiting for a ctl write: the ctl commands call it.
func (c *CA) revoke(serial, reason string) error {
	n, err := parseSerial(serial)
	if err != nil {
		return err
	}
	code, err := parseReason(reason)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := serialText(n)
	rec, err := os.ReadFile(filepath.Join(c.dir, issuedDir, st+".pem"))
	if err != nil {
		return fmt.Errorf("ca: no certificate with serial %s", st)
	}
	if cert, err := parseCertPEM(rec); err != nil || cert.CheckSignatureFrom(c.inter) != nil {
		return fmt.Errorf("ca: no certificate with serial %s from this ca", st)
	}
	if _, ok := c.revoked[st]; ok {
		return fmt.Errorf("ca: serial %s is already revoked", st)
	}
	next := maps.Clone(c.revoked)
	next[st] = revocation{serial: n, at: c.now(), reason: code}
	c.jr.revocations(c.revoked)
	if err := writeAtomic(filepath.Join(c.dir, revokedFile), revokedText(next), 0644); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	c.revoked = next
	c.crl = nil
	c.log.Info("ca: revoked", "serial", st, "reason", reasonName(code))
	return nil
}

// IsRevoked reports whether the serial was revoked.
func (c *CA) IsRevoked(serial *big.Int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.revoked[serialText(serial)]
	return ok
}

// revokedText is the revoked file: "SERIAL UNIX-SECONDS REASON" lines,
// sorted by serial.
func revokedText(m map[string]revocation) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(m)) {
		r := m[k]
		fmt.Fprintf(&b, "%s %d %s\n", k, r.at.Unix(), reasonName(r.reason))
	}
	return b.Bytes()
}

func parseRevoked(data []byte) (map[string]revocation, error) {
	m := map[string]revocation{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("ca: line %d: want SERIAL TIME REASON", ln)
		}
		n, err := parseSerial(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		sec, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ca: line %d: bad time %q", ln, f[1])
		}
		code, err := parseReason(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		m[serialText(n)] = revocation{serial: n, at: time.Unix(sec, 0), reason: code}
	}
	return m, sc.Err()
}

func (c *CA) loadRevoked() error {
	p := filepath.Join(c.dir, revokedFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	m, err := parseRevoked(data)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	c.revoked = m
	return nil
}

// CRL returns the certificate revocation list in PEM, signed by the
// intermediate. It is made again after every revocation and when it is
// a day old; NextUpdate is 7 days after ThisUpdate.
func (c *CA) CRL() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crlLocked()
}

func (c *CA) crlLocked() ([]byte, error) {
	now := c.now()
	if c.crl != nil && now.Sub(c.crlAt) < CRLRefresh && !now.Before(c.crlAt) {
		return c.crl, nil
	}
	var entries []x509.RevocationListEntry
	for _, k := range slices.Sorted(maps.Keys(c.revoked)) {
		r := c.revoked[k]
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.serial, RevocationTime: r.at.UTC(), ReasonCode: r.reason})
	}
	num := max(c.crlNumber+1, now.UnixMilli())
	tmpl := &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    big.NewInt(num),
		ThisUpdate:                now.Add(-backdate).UTC(),
		NextUpdate:                now.Add(CRLLifetime).UTC(),
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.inter, c.interKey)
	if err != nil {
		return nil, fmt.Errorf("ca: making crl: %w", err)
	}
	c.crl = pem.EncodeToMemory(&pem.Block{Type: pemCRL, Bytes: der})
	c.crlAt, c.crlNumber = now, num
	return c.crl, nil
}

// RevokeCert revokes cert, which must have been issued by this CA, with
// an RFC 5280 reason code (what ACME's revokeCert carries).
func (c *CA) RevokeCert(ctx context.Context, cert *x509.Certificate, reason int) error {
	if err := cert.CheckSignatureFrom(c.Intermediate()); err != nil {
		return fmt.Errorf("ca: certificate not issued by this ca: %w", err)
	}
	return c.Revoke(serialText(cert.SerialNumber), reasonName(reason))
}
