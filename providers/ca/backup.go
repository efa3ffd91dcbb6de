package ca

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/scrypt"
	"golang.org/x/crypto/ssh"
)

// The backup format: one PEM block of type backupType whose headers give
// the key derivation (scrypt, N=32768, r=8, p=1, a random 16-byte salt)
// and the AES-256-GCM nonce, and whose body is the sealed content: PEM
// blocks of the root and intermediate certificates and keys, the SSH CA
// key and the revocation list.
const (
	backupType    = "CHESHIRE CA BACKUP"
	backupVersion = "1"
	scryptN       = 32768
	scryptR       = 8
	scryptP       = 1
	minPassphrase = 8
	maxBackup     = 4 << 20

	blkRootCert  = "ROOT CERTIFICATE"
	blkRootKey   = "ROOT PRIVATE KEY"
	blkInterCert = "INTERMEDIATE CERTIFICATE"
	blkInterKey  = "INTERMEDIATE PRIVATE KEY"
	blkSSHKey    = "SSH CA PRIVATE KEY"
	blkRevoked   = "REVOKED"
)

// backupAAD binds the format's parameters to the sealed content.
var backupAAD = []byte(fmt.Sprintf("%s v%s scrypt N=%d r=%d p=%d aes-256-gcm", backupType, backupVersion, scryptN, scryptR, scryptP))

// backupKey derives the sealing key from a passphrase and salt.
func backupKey(passphrase string, salt []byte) (cipher.AEAD, error) {
	key, err := scrypt.Key([]byte(passphrase), salt, scryptN, scryptR, scryptP, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// Backup returns the CA's keys and certificates (root, intermediate, SSH
// CA key) and its revocation list sealed with a key derived from the
// passphrase (at least 8 bytes): an armored text for Restore.
func (c *CA) Backup(passphrase string) ([]byte, error) {
	if len(passphrase) < minPassphrase {
		return nil, fmt.Errorf("ca: passphrase too short (at least %d bytes)", minPassphrase)
	}
	c.mu.Lock()
	root, rootKey, inter, interKey, sshText, revoked := c.root, c.rootKey, c.inter, c.interKey, c.sshText, c.revoked
	c.mu.Unlock()

	rk, err := keyPEM(rootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: backup: %w", err)
	}
	ik, err := keyPEM(interKey)
	if err != nil {
		return nil, fmt.Errorf("ca: backup: %w", err)
	}
	var plain bytes.Buffer
	add := func(typ string, der []byte) { pem.Encode(&plain, &pem.Block{Type: typ, Bytes: der}) }
	add(blkRootCert, root.Raw)
	add(blkRootKey, pemBody(rk))
	add(blkInterCert, inter.Raw)
	add(blkInterKey, pemBody(ik))
	add(blkSSHKey, sshText)
	add(blkRevoked, revokedText(revoked))

	salt := make([]byte, 16)
	nonce := make([]byte, 12)
	rand.Read(salt)
	rand.Read(nonce)
	aead, err := backupKey(passphrase, salt)
	if err != nil {
		return nil, fmt.Errorf("ca: backup: %w", err)
	}
	sealed := aead.Seal(nil, nonce, plain.Bytes(), backupAAD)
	b64 := base64.StdEncoding.EncodeToString
	return pem.EncodeToMemory(&pem.Block{Type: backupType, Headers: map[string]string{
		"Version": backupVersion,
		"Kdf":     fmt.Sprintf("scrypt N=%d r=%d p=%d", scryptN, scryptR, scryptP),
		"Salt":    b64(salt),
		"Cipher":  "AES-256-GCM",
		"Nonce":   b64(nonce),
		"Root":    root.Subject.CommonName,
		"Created": c.now().UTC().Format(time.RFC3339),
	}, Bytes: sealed}), nil
}

// pemBody is the DER of the first block of a PEM text.
func pemBody(p []byte) []byte {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil
	}
	return b.Bytes
}

// backupContent is what a backup holds.
type backupContent struct {
	root, inter       []byte // certificates, DER
	rootKey, interKey []byte // PKCS #8 keys, DER
	sshKey            []byte // OpenSSH private key text
	revoked           []byte // the revoked file
}

// openBackup decrypts and checks a backup's text.
func openBackup(text []byte, passphrase string) (*backupContent, error) {
	blk, _ := pem.Decode(bytes.TrimSpace(text))
	if blk == nil || blk.Type != backupType {
		return nil, fmt.Errorf("ca: not a backup (want a %q block)", backupType)
	}
	if v := blk.Headers["Version"]; v != backupVersion {
		return nil, fmt.Errorf("ca: backup version %q not supported", cut(v, 20))
	}
	if kdf := blk.Headers["Kdf"]; kdf != fmt.Sprintf("scrypt N=%d r=%d p=%d", scryptN, scryptR, scryptP) {
		return nil, fmt.Errorf("ca: backup key derivation %q not supported", cut(kdf, 40))
	}
	salt, err1 := base64.StdEncoding.DecodeString(blk.Headers["Salt"])
	nonce, err2 := base64.StdEncoding.DecodeString(blk.Headers["Nonce"])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(nonce) != 12 {
		return nil, ErrWrongPassphrase
	}
	aead, err := backupKey(passphrase, salt)
	if err != nil {
		return nil, fmt.Errorf("ca: restore: %w", err)
	}
	plain, err := aead.Open(nil, nonce, blk.Bytes, backupAAD)
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	var bc backupContent
	rest := plain
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case blkRootCert:
			bc.root = b.Bytes
		case blkRootKey:
			bc.rootKey = b.Bytes
		case blkInterCert:
			bc.inter = b.Bytes
		case blkInterKey:
			bc.interKey = b.Bytes
		case blkSSHKey:
			bc.sshKey = b.Bytes
		case blkRevoked:
			bc.revoked = b.Bytes
		}
	}
	if bc.root == nil || bc.rootKey == nil || bc.inter == nil || bc.interKey == nil {
		return nil, ErrWrongPassphrase
	}
	return &bc, nil
}

// restore replaces the CA with the one sealed in a backup's text: its
// root, intermediate, SSH CA key and revocation list. It is meant for a
// new node; certificates in certs/ are issued again by the restored
// intermediate, for the same names and lifetimes. It changes
// nothing if the text does not open with the passphrase
// (ErrWrongPassphrase) or holds an inconsistent CA.
func (c *CA) restore(text []byte, passphrase string) error {
	if len(text) == 0 {
		return errors.New("ca: no backup to restore")
	}
	if len(text) > maxBackup {
		return fmt.Errorf("ca: backup larger than %d bytes", maxBackup)
	}
	bc, err := openBackup(text, passphrase)
	if err != nil {
		return err
	}
	damaged := func(what string, err error) error {
		return fmt.Errorf("%w: %s: %v", ErrWrongPassphrase, what, err)
	}
	root, err := x509ParseCert(bc.root)
	if err != nil {
		return damaged("root", err)
	}
	inter, err := x509ParseCert(bc.inter)
	if err != nil {
		return damaged("intermediate", err)
	}
	rootKey, err := parseKeyDER(bc.rootKey)
	if err != nil {
		return damaged("root key", err)
	}
	interKey, err := parseKeyDER(bc.interKey)
	if err != nil {
		return damaged("intermediate key", err)
	}
	if !rootKey.PublicKey.Equal(root.PublicKey) || !interKey.PublicKey.Equal(inter.PublicKey) {
		return damaged("keys", errNoKey)
	}
	if err := checkHierarchy(root, inter); err != nil {
		return damaged("hierarchy", err)
	}
	revoked := map[string]revocation{}
	if bc.revoked != nil {
		if revoked, err = parseRevoked(bc.revoked); err != nil {
			return damaged("revocation list", err)
		}
	}
	more := map[string][]byte{revokedFile: revokedText(revoked)}
	var signer ssh.Signer
	if bc.sshKey != nil {
		if signer, err = ssh.ParsePrivateKey(bc.sshKey); err != nil {
			return damaged("ssh key", err)
		}
		more[sshKeyFile] = bc.sshKey
		more[sshPubFile] = ssh.MarshalAuthorizedKey(signer.PublicKey())
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.jr.keys(caKeys{root: c.root, rootKey: c.rootKey, inter: c.inter, interKey: c.interKey, ssh: c.ssh, sshText: c.sshText})
	c.jr.revocations(c.revoked)
	if err := c.writeCA(root, rootKey, inter, interKey, more); err != nil {
		return fmt.Errorf("ca: restore: %w", err)
	}
	c.root, c.rootKey, c.inter, c.interKey = root, rootKey, inter, interKey
	c.revoked = revoked
	if signer != nil {
		c.ssh, c.sshText = signer, bc.sshKey
	}
	c.crl = nil
	c.log.Info("ca: restored from backup", "root", root.Subject.String())
	for name, is := range c.certs {
		if _, err := c.issueLocked(name, certSANs(is.Cert).strings(), is.lifetime()); err != nil {
			c.log.Warn("ca: reissuing after restore", "name", name, "err", err)
		}
	}
	return nil
}

// BackupText returns the text of the backup file: the last backup made,
// or what was written to it for restore.
func (c *CA) BackupText() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.backup)
}

// setBackupText is SetBackupText without waiting for a ctl write: the ctl commands call it.
func (c *CA) setBackupText(text []byte) error {
	if len(text) > maxBackup {
		return fmt.Errorf("ca: backup larger than %d bytes", maxBackup)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.jr.backupText(c.backup)
	c.backup = bytes.Clone(text)
	return nil
}

func x509ParseCert(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }

// parseKeyDER parses a PKCS #8 ECDSA key.
func parseKeyDER(der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("ca: key is %T, not ECDSA", k)
	}
	return ek, nil
}
