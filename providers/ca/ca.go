// Package ca is a certificate authority served as files: a root and an
// intermediate X.509 CA kept in the node's data directory, certificates
// issued by name or for a CSR, revocation and a CRL, TLS configurations
// for the node's endpoints that renew themselves, an SSH certificate
// authority, and an encrypted backup of the CA keys. Files gives the
// tree served at /ca; Module makes it a node module.
package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"

	"golang.org/x/crypto/ssh"
)

// Lifetimes and limits.
const (
	RootLifetime         = 10 * 365 * 24 * time.Hour
	IntermediateLifetime = 5 * 365 * 24 * time.Hour
	DefaultTTL           = 90 * 24 * time.Hour // of a leaf certificate
	MaxTTL               = 365 * 24 * time.Hour
	MinTTL               = time.Minute
	CRLLifetime          = 7 * 24 * time.Hour // NextUpdate after ThisUpdate
	CRLRefresh           = 24 * time.Hour     // a CRL older than this is made again

	backdate = time.Minute // NotBefore is this much before issue, for skewed clocks
)

// Files in the CA's directory.
const (
	rootCertFile  = "root.pem"
	rootKeyFile   = "root.key"
	interCertFile = "intermediate.pem"
	interKeyFile  = "intermediate.key"
	revokedFile   = "revoked"
	certsDir      = "certs"  // certs/NAME/{cert.pem,key.pem,chain.pem}
	issuedDir     = "issued" // issued/SERIAL.pem: every certificate issued
)

// ErrBadCSR is wrapped by the errors of SignCSR for a request it refuses.
var ErrBadCSR = errors.New("ca: bad certificate request")

// ErrWrongPassphrase is the error of Restore when the backup does not
// open with the passphrase.
var ErrWrongPassphrase = errors.New("ca: wrong passphrase or damaged backup")

// Options configure a CA.
type Options struct {
	// Name begins the common names of the root and intermediate (the
	// node id, say); "cheshire" if empty.
	Name string
	// Owner owns the files of Files ("none" if empty).
	Owner string
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Log receives what the CA does (discarded if nil).
	Log *slog.Logger
}

// A CA is a certificate authority kept in a directory. Its methods may be
// called concurrently.
type CA struct {
	dir  string
	name string
	now  func() time.Time
	log  *slog.Logger
	opts Options

	batchMu sync.Mutex // held by a ctl write for all its lines; before mu

	mu        sync.Mutex
	jr        *journal              // guarded by mu: what the ctl write running replaced; nil outside one
	root      *x509.Certificate     // guarded by mu
	rootKey   *ecdsa.PrivateKey     // guarded by mu
	inter     *x509.Certificate     // guarded by mu
	interKey  *ecdsa.PrivateKey     // guarded by mu
	certs     map[string]*Issued    // guarded by mu: by name
	revoked   map[string]revocation // guarded by mu: by serialText
	crl       []byte                // guarded by mu: PEM, nil when it must be made again
	crlAt     time.Time             // guarded by mu: its ThisUpdate
	crlNumber int64                 // guarded by mu: the last CRL number
	ssh       ssh.Signer            // guarded by mu
	sshText   []byte                // guarded by mu: its private key, OpenSSH format
	backup    []byte                // guarded by mu: the text of the backup file
	eab       map[string][]byte     // guarded by mu: ACME external account keys by key id; replaced, never changed
	acmeCfg   acmeConfig            // guarded by mu: the acme lines of the module's config
	zones     func() []string       // guarded by mu: the zones the node serves (SetZones)
}

// An Issued certificate: a leaf, its key and its chain.
type Issued struct {
	Name     string // its name under certs/, "" for one signed for a CSR
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
	Chain    []*x509.Certificate // the leaf, then the intermediate
	CertPEM  []byte
	KeyPEM   []byte
	ChainPEM []byte

	tls *tls.Certificate
}

// Serial is the certificate's serial number as this package writes it.
func (is *Issued) Serial() string { return serialText(is.Cert.SerialNumber) }

// TLSCertificate returns the certificate and its chain for crypto/tls.
func (is *Issued) TLSCertificate() *tls.Certificate { return is.tls }

func newIssued(name string, leaf *x509.Certificate, key *ecdsa.PrivateKey, inter *x509.Certificate) (*Issued, error) {
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	is := &Issued{Name: name, Cert: leaf, Key: key, Chain: []*x509.Certificate{leaf, inter},
		CertPEM: certPEM(leaf), KeyPEM: kp, ChainPEM: certPEM(leaf, inter)}
	is.tls = &tls.Certificate{Certificate: [][]byte{leaf.Raw, inter.Raw}, PrivateKey: key, Leaf: leaf}
	return is, nil
}

// lifetime is how long the certificate was issued for.
func (is *Issued) lifetime() time.Duration {
	return max(is.Cert.NotAfter.Sub(is.Cert.NotBefore)-backdate, MinTTL)
}

// Open opens the CA kept in dir, making it on first use: a root CA
// (ECDSA P-256, 10 years) and an intermediate (ECDSA P-256, 5 years,
// path length 0) that signs everything else, and an ed25519 SSH CA key.
func Open(dir string, opts Options) (*CA, error) {
	c := &CA{dir: dir, name: opts.Name, now: opts.Now, log: opts.Log, opts: opts,
		certs: map[string]*Issued{}, revoked: map[string]revocation{}}
	if c.name == "" {
		c.name = "cheshire"
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := c.loadOrCreate(); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := c.loadRevoked(); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := c.loadSSH(); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c.loadCerts()
	if err := c.loadEAB(); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return c, nil
}

// Dir is the directory the CA is kept in.
func (c *CA) Dir() string { return c.dir }

// RootPEM returns the root certificate in PEM.
func (c *CA) RootPEM() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return certPEM(c.root)
}

// IntermediatePEM returns the intermediate certificate in PEM.
func (c *CA) IntermediatePEM() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return certPEM(c.inter)
}

// Root returns the root certificate.
func (c *CA) Root() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.root
}

// Intermediate returns the intermediate certificate.
func (c *CA) Intermediate() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inter
}

// RootPool returns a pool holding the root, for clients of the node's
// endpoints.
func (c *CA) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Root())
	return p
}

// issue is Issue without waiting for a ctl write: the ctl commands call it.
func (c *CA) issue(name string, sans []string, ttl time.Duration) (*Issued, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issueLocked(name, sans, ttl)
}

func (c *CA) issueLocked(name string, sans []string, ttl time.Duration) (*Issued, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if len(sans) == 0 {
		sans = []string{name}
	}
	set, err := parseSANs(sans)
	if err != nil {
		return nil, err
	}
	ttl, err = checkTTL(ttl)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	leaf, err := c.signLocked(pkix.Name{CommonName: name}, set, key.Public(), ttl)
	if err != nil {
		return nil, err
	}
	is, err := newIssued(name, leaf, key, c.inter)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c.jr.cert(name, c.certs[name])
	err = replaceDir(filepath.Join(c.dir, certsDir), name,
		map[string][]byte{"cert.pem": is.CertPEM, "key.pem": is.KeyPEM, "chain.pem": is.ChainPEM},
		map[string]os.FileMode{"cert.pem": 0644, "key.pem": 0600, "chain.pem": 0644})
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c.certs[name] = is
	c.log.Info("ca: issued", "name", name, "serial", is.Serial(), "sans", strings.Join(set.strings(), " "),
		"not-after", leaf.NotAfter.UTC().Format(time.RFC3339))
	return is, nil
}

// checkTTL applies the default and the bounds of a leaf's lifetime.
func checkTTL(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl == 0:
		return DefaultTTL, nil
	case ttl < MinTTL:
		return 0, fmt.Errorf("ca: ttl %v too short (at least %v)", ttl, MinTTL)
	case ttl > MaxTTL:
		return 0, fmt.Errorf("ca: ttl %v too long (at most %v)", ttl, MaxTTL)
	}
	return ttl, nil
}

// signLocked makes a leaf certificate for pub and records it in issued/.
func (c *CA) signLocked(subject pkix.Name, set sanSet, pub any, ttl time.Duration) (*x509.Certificate, error) {
	now := c.now()
	notAfter := now.Add(ttl)
	if notAfter.After(c.inter.NotAfter) {
		notAfter = c.inter.NotAfter
	}
	if !now.Before(notAfter) {
		return nil, errors.New("ca: the intermediate has expired")
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok { // RSA encrypts key exchanges
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	set.apply(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.inter, pub, c.interKey)
	if err != nil {
		return nil, fmt.Errorf("ca: signing: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: signing: %w", err)
	}
	rec := filepath.Join(c.dir, issuedDir, serialText(leaf.SerialNumber)+".pem")
	if err := writeAtomic(rec, certPEM(leaf), 0644); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return leaf, nil
}

// renew is Renew without waiting for a ctl write: the ctl commands call it.
func (c *CA) renew(name string) (*Issued, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	is, ok := c.certs[name]
	if !ok {
		return nil, fmt.Errorf("ca: no certificate named %q", cut(name, 40))
	}
	return c.issueLocked(name, certSANs(is.Cert).strings(), is.lifetime())
}

// Get returns the certificate name.
func (c *CA) Get(name string) (*Issued, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	is, ok := c.certs[name]
	return is, ok
}

// Names returns the names of the certificates in certs/, sorted.
func (c *CA) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.certs))
}

// Info is the text of certs/NAME/info: "key value" lines.
func (c *CA) Info(name string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	is, ok := c.certs[name]
	if !ok {
		return "", fmt.Errorf("ca: no certificate named %q", cut(name, 40))
	}
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s %s\n", k, v) }
	kv("name", name)
	kv("serial", is.Serial())
	kv("subject", plan9.Quote(is.Cert.Subject.String()))
	kv("issuer", plan9.Quote(is.Cert.Issuer.String()))
	kv("sans", plan9.Join(certSANs(is.Cert).strings()))
	kv("not-before", is.Cert.NotBefore.UTC().Format(time.RFC3339))
	kv("not-after", is.Cert.NotAfter.UTC().Format(time.RFC3339))
	if r, ok := c.revoked[is.Serial()]; ok {
		kv("revoked", "yes")
		kv("revoked-at", r.at.UTC().Format(time.RFC3339))
		kv("reason", reasonName(r.reason))
	} else {
		kv("revoked", "no")
	}
	return b.String(), nil
}
