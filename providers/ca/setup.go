// Making and loading the CA: the root and intermediate, made on first
// use, written atomically, and checked to form a hierarchy.

package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// loadOrCreate loads the root and intermediate, or makes them if none of
// their files exist.
func (c *CA) loadOrCreate() error {
	files := []string{rootCertFile, rootKeyFile, interCertFile, interKeyFile}
	var have, missing []string
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(c.dir, f)); err == nil {
			have = append(have, f)
		} else if errors.Is(err, os.ErrNotExist) {
			missing = append(missing, f)
		} else {
			return err
		}
	}
	if len(have) == 0 {
		return c.create()
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s holds an incomplete CA: %s missing", c.dir, strings.Join(missing, ", "))
	}
	for _, f := range []string{rootKeyFile, interKeyFile, sshKeyFile} {
		p := filepath.Join(c.dir, f)
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0077 != 0 {
			return fmt.Errorf("%s is readable by others (mode %v); chmod 600 it", p, fi.Mode().Perm())
		}
	}
	root, rootKey, err := loadPair(filepath.Join(c.dir, rootCertFile), filepath.Join(c.dir, rootKeyFile))
	if err != nil {
		return err
	}
	inter, interKey, err := loadPair(filepath.Join(c.dir, interCertFile), filepath.Join(c.dir, interKeyFile))
	if err != nil {
		return err
	}
	if err := checkHierarchy(root, inter); err != nil {
		return err
	}
	c.root, c.rootKey, c.inter, c.interKey = root, rootKey, inter, interKey
	return nil
}

// checkHierarchy checks that root signed itself and inter.
func checkHierarchy(root, inter *x509.Certificate) error {
	if !root.IsCA || !inter.IsCA {
		return errors.New("ca: root or intermediate is not a CA certificate")
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("root is not self-signed: %w", err)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("intermediate is not signed by the root: %w", err)
	}
	return nil
}

// commonName is prefix and suffix, the prefix cut to keep it within the
// 64 bytes X.509 allows.
func commonName(prefix, suffix string) string {
	if room := 64 - len(suffix); len(prefix) > room {
		prefix = prefix[:room]
	}
	return prefix + suffix
}

// create makes a new root and intermediate and writes them.
// caTemplate is the template of a CA certificate for subject, valid
// from now (backdated) for life.
func caTemplate(subject pkix.Name, now time.Time, life time.Duration) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(life),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func (c *CA) create() error {
	now := c.now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	org := []string{commonName(c.name, "")}
	rootTmpl := caTemplate(pkix.Name{CommonName: commonName(c.name, " root CA"), Organization: org}, now, RootLifetime)
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("making root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	interTmpl := caTemplate(pkix.Name{CommonName: commonName(c.name, " intermediate CA"), Organization: org}, now, IntermediateLifetime)
	interTmpl.MaxPathLen, interTmpl.MaxPathLenZero = 0, true // signs leaves only
	der, err = x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("making intermediate: %w", err)
	}
	inter, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if err := c.writeCA(root, rootKey, inter, interKey, nil); err != nil {
		return err
	}
	c.root, c.rootKey, c.inter, c.interKey = root, rootKey, inter, interKey
	c.log.Info("ca: made a new root and intermediate", "root", root.Subject.String(), "dir", c.dir)
	return nil
}

// writeCA writes the root and intermediate, with more files to replace
// in the same step, all or (barring a failed rename) none.
func (c *CA) writeCA(root *x509.Certificate, rootKey *ecdsa.PrivateKey, inter *x509.Certificate, interKey *ecdsa.PrivateKey, more map[string][]byte) error {
	rk, err := keyPEM(rootKey)
	if err != nil {
		return err
	}
	ik, err := keyPEM(interKey)
	if err != nil {
		return err
	}
	var set fileSet
	add := func(name string, data []byte, perm os.FileMode) error {
		return set.add(filepath.Join(c.dir, name), data, perm)
	}
	// Keys first, certificates last: a crash between renames leaves a
	// set that the next start refuses rather than mismatched pairs.
	errs := []error{
		add(rootKeyFile, rk, 0600),
		add(interKeyFile, ik, 0600),
	}
	names := slices.Sorted(maps.Keys(more))
	for _, n := range names {
		perm := os.FileMode(0644)
		if strings.HasSuffix(n, ".key") || n == sshKeyFile {
			perm = 0600
		}
		errs = append(errs, add(n, more[n], perm))
	}
	errs = append(errs, add(interCertFile, certPEM(inter), 0644), add(rootCertFile, certPEM(root), 0644))
	if err := errors.Join(errs...); err != nil {
		set.abort()
		return err
	}
	return set.commit()
}

// randSerial returns a random positive 128-bit serial number.
func randSerial() *big.Int {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			panic(fmt.Sprintf("ca: crypto/rand: %v", err)) // crypto/rand does not fail
		}
		if n.BitLen() > 64 {
			return n
		}
	}
}

// loadCerts loads certs/*, skipping (and logging) what does not load.
func (c *CA) loadCerts() {
	d := filepath.Join(c.dir, certsDir)
	recoverDirs(d)
	ents, err := os.ReadDir(d)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("ca: reading certificates", "err", err)
		}
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !validName(e.Name()) {
			continue
		}
		p := filepath.Join(d, e.Name())
		leaf, key, err := loadPair(filepath.Join(p, "cert.pem"), filepath.Join(p, "key.pem"))
		if err != nil {
			c.log.Warn("ca: skipping certificate", "name", e.Name(), "err", err)
			continue
		}
		inter := c.inter
		if chain, err := os.ReadFile(filepath.Join(p, "chain.pem")); err == nil {
			if certs := parseCerts(chain); len(certs) > 1 {
				inter = certs[1]
			}
		}
		is, err := newIssued(e.Name(), leaf, key, inter)
		if err != nil {
			c.log.Warn("ca: skipping certificate", "name", e.Name(), "err", err)
			continue
		}
		c.certs[e.Name()] = is
	}
}

// parseCerts returns the certificates of PEM data that parse.
func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != pemCert {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
