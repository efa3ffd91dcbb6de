package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// The lines of one ctl write apply all or none. While a write runs, the
// CA keeps a journal of what each change replaced (the first time it
// replaces it), and if a line fails the journal is played back: files
// first, then memory. Writes to ctl are serialised by batchMu, which is
// taken before mu.
//
// Every other change to the CA (the exported methods below, which the
// ctl commands do not use) waits for the write running to end, so that a
// failed write never undoes what it did not do. Certificates signed for
// CSRs are only recorded in issued/ and need not wait. Certificates
// signed during a failed write stay recorded in issued/ (they were made,
// if never handed out) and can still be revoked.

// A journal is what the lines of a write replaced. It is guarded by c.mu.
type journal struct {
	certs       map[string]*Issued // certs/NAME before the write; nil for none
	ssh         map[string][]byte  // ssh/certs/NAME-cert.pub before; nil for none
	revoked     map[string]revocation
	haveRevoked bool
	backup      []byte
	haveBackup  bool
	eab         map[string][]byte
	haveEAB     bool
	ca          *caKeys // before a restore
}

// caKeys are the CA's keys and certificates.
type caKeys struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	ssh               ssh.Signer
	sshText           []byte
}

// The record methods note the state a change is about to replace; each
// keeps only the first, the state before the write. They are no-ops
// outside a write (j nil). The caller holds c.mu.

func (j *journal) cert(name string, old *Issued) {
	if j == nil {
		return
	}
	if _, ok := j.certs[name]; !ok {
		j.certs[name] = old
	}
}

func (j *journal) sshCert(name string, old []byte) {
	if j == nil {
		return
	}
	if _, ok := j.ssh[name]; !ok {
		j.ssh[name] = old
	}
}

func (j *journal) revocations(old map[string]revocation) {
	if j != nil && !j.haveRevoked {
		j.revoked, j.haveRevoked = old, true
	}
}

func (j *journal) backupText(old []byte) {
	if j != nil && !j.haveBackup {
		j.backup, j.haveBackup = old, true
	}
}

func (j *journal) eabKeys(old map[string][]byte) {
	if j != nil && !j.haveEAB {
		j.eab, j.haveEAB = old, true
	}
}

func (j *journal) keys(old caKeys) {
	if j != nil && j.ca == nil {
		j.ca = &old
	}
}

// batch runs the lines of one ctl write as a unit (a synth.Batch).
func (c *CA) batch(ctx context.Context, run func(ctx context.Context) error) error {
	c.batchMu.Lock()
	defer c.batchMu.Unlock()
	c.mu.Lock()
	c.jr = &journal{certs: map[string]*Issued{}, ssh: map[string][]byte{}}
	c.mu.Unlock()
	err := run(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jr
	c.jr = nil
	if err == nil {
		return nil
	}
	if uerr := c.undoLocked(j); uerr != nil {
		c.log.Error("ca: undoing a failed ctl write", "err", uerr)
		return fmt.Errorf("%w (and undoing the lines before it: %v)", err, uerr)
	}
	return err
}

// undoLocked puts back what j recorded. The caller holds c.mu.
func (c *CA) undoLocked(j *journal) error {
	var errs []error
	if j.ca != nil {
		more := map[string][]byte{sshKeyFile: j.ca.sshText, sshPubFile: ssh.MarshalAuthorizedKey(j.ca.ssh.PublicKey())}
		if err := c.writeCA(j.ca.root, j.ca.rootKey, j.ca.inter, j.ca.interKey, more); err != nil {
			errs = append(errs, err)
		} else {
			c.root, c.rootKey, c.inter, c.interKey = j.ca.root, j.ca.rootKey, j.ca.inter, j.ca.interKey
			c.ssh, c.sshText = j.ca.ssh, j.ca.sshText
		}
	}
	if j.haveRevoked {
		if err := writeAtomic(filepath.Join(c.dir, revokedFile), revokedText(j.revoked), 0644); err != nil {
			errs = append(errs, err)
		} else {
			c.revoked = j.revoked
		}
	}
	if j.ca != nil || j.haveRevoked {
		c.crl = nil
	}
	for name, old := range j.certs {
		dir := filepath.Join(c.dir, certsDir)
		if old == nil {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(c.certs, name)
			continue
		}
		err := replaceDir(dir, name,
			map[string][]byte{"cert.pem": old.CertPEM, "key.pem": old.KeyPEM, "chain.pem": old.ChainPEM},
			map[string]os.FileMode{"cert.pem": 0644, "key.pem": 0600, "chain.pem": 0644})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.certs[name] = old
	}
	for name, old := range j.ssh {
		p := filepath.Join(c.dir, sshCertsDir, name+sshCertSufx)
		var err error
		if old == nil {
			if err = os.Remove(p); errors.Is(err, os.ErrNotExist) {
				err = nil
			}
		} else {
			err = writeAtomic(p, old, 0644)
		}
		errs = append(errs, err)
	}
	if j.haveBackup {
		c.backup = j.backup
	}
	if j.haveEAB {
		if err := c.saveEABLocked(j.eab); err != nil {
			errs = append(errs, err)
		} else {
			c.eab = j.eab
		}
	}
	return errors.Join(errs...)
}

// outside waits for the ctl write running, if any, to end; the caller
// calls the function returned when its change is made.
func (c *CA) outside() func() {
	c.batchMu.Lock()
	return c.batchMu.Unlock
}

// Issue issues a certificate named name for the names sans (DNS names,
// IP addresses, email addresses with @, URIs with ://; name itself if
// there are none), valid for ttl (DefaultTTL if 0, at most MaxTTL), with
// a new ECDSA P-256 key, signed by the intermediate. It is kept in
// certs/NAME, replacing any certificate of that name (which stays valid
// until it expires or is revoked).
func (c *CA) Issue(name string, sans []string, ttl time.Duration) (*Issued, error) {
	defer c.outside()()
	return c.issue(name, sans, ttl)
}

// Renew issues the certificate name again, for the same names and as
// long a lifetime, with a new key.
func (c *CA) Renew(name string) (*Issued, error) {
	defer c.outside()()
	return c.renew(name)
}

// Revoke revokes the certificate with the serial number serial (hex, as
// info and openssl show it) for reason, an RFC 5280 reason name
// (keyCompromise, superseded, cessationOfOperation, ...; "" for
// unspecified). The serial must be one this CA issued. The CRL is made
// again at once.
func (c *CA) Revoke(serial, reason string) error {
	defer c.outside()()
	return c.revoke(serial, reason)
}

// SignSSHUser issues a user certificate named name for pub, letting it
// log in as the principals, valid for ttl (DefaultSSHUserTTL if 0), with
// the usual permissions (pty, forwarding, agent, X11, user rc). It is
// kept as ssh/certs/NAME-cert.pub.
func (c *CA) SignSSHUser(name string, principals []string, pub ssh.PublicKey, ttl time.Duration) (*ssh.Certificate, error) {
	defer c.outside()()
	return c.signSSHUser(name, principals, pub, ttl)
}

// SignSSHHost issues a host certificate named name for pub, valid for the
// host names principals (name if none) and for ttl (DefaultSSHHostTTL if
// 0). It is kept as ssh/certs/NAME-cert.pub.
func (c *CA) SignSSHHost(name string, principals []string, pub ssh.PublicKey, ttl time.Duration) (*ssh.Certificate, error) {
	defer c.outside()()
	return c.signSSHHost(name, principals, pub, ttl)
}

// Restore replaces the CA with the one sealed in text (see restore).
func (c *CA) Restore(text []byte, passphrase string) error {
	defer c.outside()()
	return c.restore(text, passphrase)
}

// SetBackupText sets the text of the backup file.
func (c *CA) SetBackupText(text []byte) error {
	defer c.outside()()
	return c.setBackupText(text)
}

// AddEAB makes an external account key kid for ACME (see addEAB).
func (c *CA) AddEAB(kid string, hmacKey []byte) error {
	defer c.outside()()
	return c.addEAB(kid, hmacKey)
}

// RemoveEAB withdraws the external account key kid (see removeEAB).
func (c *CA) RemoveEAB(kid string) error {
	defer c.outside()()
	return c.removeEAB(kid)
}

// Certificate returns the TLS certificate of the node's endpoint name
// (see certificate), waiting for a ctl write that is running.
func (c *CA) Certificate(name string, sans []string) (*tls.Certificate, error) {
	defer c.outside()()
	return c.certificate(name, sans)
}
