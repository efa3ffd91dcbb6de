package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSH files in the CA's directory.
const (
	sshKeyFile   = "ssh/ca"     // the SSH CA's private key (OpenSSH format)
	sshPubFile   = "ssh/ca.pub" // its public key, authorized_keys format
	sshCertsDir  = "ssh/certs"  // ssh/certs/NAME-cert.pub
	sshCertSufx  = "-cert.pub"
	maxPrincipal = 256 // principals of one certificate
)

// Lifetimes of SSH certificates.
const (
	DefaultSSHUserTTL = 7 * 24 * time.Hour
	DefaultSSHHostTTL = 365 * 24 * time.Hour
	MaxSSHTTL         = 5 * 365 * 24 * time.Hour
)

// loadSSH loads the SSH CA key, making it on first use.
func (c *CA) loadSSH() error {
	p := filepath.Join(c.dir, sshKeyFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		text, signer, err := sshKeyText(priv, c.name+" ssh ca")
		if err != nil {
			return err
		}
		var set fileSet
		if err := errors.Join(set.add(p, text, 0600),
			set.add(filepath.Join(c.dir, sshPubFile), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0644)); err != nil {
			set.abort()
			return err
		}
		if err := set.commit(); err != nil {
			return err
		}
		c.ssh, c.sshText = signer, text
		return nil
	}
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	c.ssh, c.sshText = signer, data
	return nil
}

// sshKeyText is an SSH private key in OpenSSH's format, and its signer.
func sshKeyText(priv ed25519.PrivateKey, comment string) ([]byte, ssh.Signer, error) {
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(blk), signer, nil
}

// SSHPublicKey returns the SSH CA's public key.
func (c *CA) SSHPublicKey() ssh.PublicKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ssh.PublicKey()
}

// SSHCAPub returns the SSH CA's public key as an authorized_keys line,
// for sshd's TrustedUserCAKeys or a known_hosts @cert-authority line.
func (c *CA) SSHCAPub() []byte { return ssh.MarshalAuthorizedKey(c.SSHPublicKey()) }

// ParseSSHKey parses a public key given as its authorized_keys text
// (type, base64, optional comment), refusing certificates and RSA keys
// of fewer than 2048 bits.
func ParseSSHKey(text string) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("ca: bad ssh public key: %w", err)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, errors.New("ca: want a public key, not a certificate")
	}
	if ck, ok := pub.(ssh.CryptoPublicKey); ok {
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
			return nil, fmt.Errorf("ca: rsa key of %d bits is too weak (at least 2048)", rk.N.BitLen())
		}
	}
	return pub, nil
}

// userExtensions are the permissions of a user certificate, as
// ssh-keygen gives them by default.
var userExtensions = []string{"permit-X11-forwarding", "permit-agent-forwarding",
	"permit-port-forwarding", "permit-pty", "permit-user-rc"}

// signSSHUser is SignSSHUser without waiting for a ctl write: the ctl commands call it.
func (c *CA) signSSHUser(name string, principals []string, pub ssh.PublicKey, ttl time.Duration) (*ssh.Certificate, error) {
	if ttl == 0 {
		ttl = DefaultSSHUserTTL
	}
	ext := map[string]string{}
	for _, e := range userExtensions {
		ext[e] = ""
	}
	return c.signSSH(name, ssh.UserCert, principals, pub, ttl, ext)
}

// signSSHHost is SignSSHHost without waiting for a ctl write: the ctl commands call it.
func (c *CA) signSSHHost(name string, principals []string, pub ssh.PublicKey, ttl time.Duration) (*ssh.Certificate, error) {
	if ttl == 0 {
		ttl = DefaultSSHHostTTL
	}
	if len(principals) == 0 {
		principals = []string{name}
	}
	return c.signSSH(name, ssh.HostCert, principals, pub, ttl, nil)
}

func (c *CA) signSSH(name string, kind uint32, principals []string, pub ssh.PublicKey, ttl time.Duration, ext map[string]string) (*ssh.Certificate, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkPrincipals(principals); err != nil {
		return nil, err
	}
	if ttl < MinTTL || ttl > MaxSSHTTL {
		return nil, fmt.Errorf("ca: ssh ttl %v out of range (%v to %v)", ttl, MinTTL, MaxSSHTTL)
	}
	if pub == nil {
		return nil, errors.New("ca: no public key")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, errors.New("ca: want a public key, not a certificate")
	}
	var serial [8]byte
	rand.Read(serial[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        kind,
		KeyId:           name,
		ValidPrincipals: slices.Clone(principals),
		ValidAfter:      uint64(now.Add(-backdate).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions:     ssh.Permissions{Extensions: ext},
	}
	if err := cert.SignCert(rand.Reader, c.ssh); err != nil {
		return nil, fmt.Errorf("ca: signing ssh certificate: %w", err)
	}
	text := ssh.MarshalAuthorizedKey(cert)
	p := filepath.Join(c.dir, sshCertsDir, name+sshCertSufx)
	if c.jr != nil {
		old, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("ca: %w", err)
		}
		c.jr.sshCert(name, old)
	}
	if err := writeAtomic(p, text, 0644); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	what := "user"
	if kind == ssh.HostCert {
		what = "host"
	}
	c.log.Info("ca: issued ssh certificate", "kind", what, "name", name,
		"principals", strings.Join(principals, ","), "serial", cert.Serial)
	return cert, nil
}

// checkPrincipals refuses empty, spaced or too many principals.
func checkPrincipals(ps []string) error {
	if len(ps) == 0 {
		return errors.New("ca: no principals")
	}
	if len(ps) > maxPrincipal {
		return fmt.Errorf("ca: too many principals (%d, at most %d)", len(ps), maxPrincipal)
	}
	for _, p := range ps {
		if p == "" || len(p) > 255 || strings.ContainsAny(p, " \t\r\n,") {
			return fmt.Errorf("ca: bad principal %q", cut(p, 40))
		}
		for _, r := range p {
			if r < ' ' || r == 0x7f {
				return fmt.Errorf("ca: bad principal %q", cut(p, 40))
			}
		}
	}
	return nil
}

// SSHCert returns the text of ssh/certs/NAME-cert.pub.
func (c *CA) SSHCert(name string) ([]byte, error) {
	if !validName(name) {
		return nil, fmt.Errorf("ca: no ssh certificate named %q", cut(name, 40))
	}
	data, err := os.ReadFile(filepath.Join(c.dir, sshCertsDir, name+sshCertSufx))
	if err != nil {
		return nil, fmt.Errorf("ca: no ssh certificate named %q", name)
	}
	return data, nil
}

// SSHCertNames returns the names of the SSH certificates, sorted.
func (c *CA) SSHCertNames() []string {
	ents, err := os.ReadDir(filepath.Join(c.dir, sshCertsDir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), sshCertSufx); ok && validName(n) && e.Type().IsRegular() {
			out = append(out, n)
		}
	}
	return out
}
