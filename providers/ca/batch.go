package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// The lines of one ctl write apply all or none. While a write runs, the
// CA keeps a journal of what each change replaced (the first time it
// replaces it), and if a line fails the journal is played back: files
// first, then memory. Writes to ctl are serialised by batchMu, which is
// taken before mu.
//
// Certificates signed during a failed write stay recorded in issued/
// (they were made, if never handed out) and can still be revoked.

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
