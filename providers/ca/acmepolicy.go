package ca

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"cheshire/module"
	"cheshire/providers/ca/acme"
	"cheshire/styx"
	"cheshire/synth"
)

// The node's ACME server takes its policy from the CA: the acme lines of
// the ca module's config (names allowed, account keys, caps), the
// external account keys made through ctl, the zones the node serves
// (SetZones) and the node's own names.

// Files in the CA's directory for ACME.
const (
	acmeDir = "acme"     // the ACME server's store
	eabFile = "acme-eab" // "KID HMAC" lines, HMAC in base64url
)

// acmeConfig is what the acme lines of the module's config say.
type acmeConfig struct {
	allow    []string // acme allow PATTERN...
	accounts []string // acme account THUMBPRINT...
	open     bool     // acme open
	orders   [2]int   // acme orders PER-ACCOUNT [TOTAL]
	authzs   [2]int   // acme authz PER-ACCOUNT [TOTAL]
}

// parseConfig reads the ca module's config: only acme lines.
func parseConfig(cfg module.Config) (acmeConfig, error) {
	var ac acmeConfig
	for _, e := range cfg.Entries {
		if e.Key != "acme" || len(e.Args) == 0 {
			return ac, e.Errorf("unknown setting; want acme allow|account|open|orders|authz ...")
		}
		verb, args := e.Args[0], e.Args[1:]
		switch verb {
		case "allow":
			if len(args) == 0 {
				return ac, e.Errorf("want acme allow NAME|*.SUFFIX|IP|PREFIX...")
			}
			for _, a := range args {
				if err := acme.CheckPattern(a); err != nil {
					return ac, e.Errorf("%v", err)
				}
			}
			ac.allow = append(ac.allow, args...)
		case "account":
			if len(args) == 0 {
				return ac, e.Errorf("want acme account THUMBPRINT...")
			}
			for _, a := range args {
				if b, err := base64.RawURLEncoding.DecodeString(a); err != nil || len(b) != 32 {
					return ac, e.Errorf("%q is not a base64url SHA-256 key thumbprint (RFC 7638)", a)
				}
			}
			ac.accounts = append(ac.accounts, args...)
		case "open":
			if len(args) != 0 {
				return ac, e.Errorf("want acme open")
			}
			ac.open = true
		case "orders", "authz":
			if len(args) < 1 || len(args) > 2 {
				return ac, e.Errorf("want acme %s PER-ACCOUNT [TOTAL]", verb)
			}
			var n [2]int
			for i, a := range args {
				v, err := strconv.Atoi(a)
				if err != nil || v < 1 || v > 1000000 {
					return ac, e.Errorf("%q: want a count from 1 to 1000000", a)
				}
				n[i] = v
			}
			if verb == "orders" {
				ac.orders = n
			} else {
				ac.authzs = n
			}
		default:
			return ac, e.Errorf("unknown acme setting %q; want allow, account, open, orders or authz", verb)
		}
	}
	return ac, nil
}

// SetZones tells the CA where to learn the zones the node serves: names
// in them may be certified over ACME (the node's own names excepted).
// Until it is called no zone is known.
func (c *CA) SetZones(zones func() []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.zones = zones
}

// ownNames are the node's own names, refused over ACME unless the owner
// allows them: the host name, and the node's zone ID.cheshire and the
// names in it. (localhost the acme package refuses itself.)
func (c *CA) ownNames() []string {
	var out []string
	if h, err := os.Hostname(); err == nil && h != "" {
		h = strings.ToLower(h)
		out = append(out, h)
		if short, _, ok := strings.Cut(h, "."); ok {
			out = append(out, short)
		}
	}
	if c.opts.Name != "" {
		z := strings.ToLower(c.opts.Name) + ".cheshire"
		out = append(out, z, "*."+z)
	}
	return out
}

// ACMEPolicy is the policy the node's ACME server applies now.
func (c *CA) ACMEPolicy() *acme.Policy {
	c.mu.Lock()
	ac, eab, zones := c.acmeCfg, c.eab, c.zones
	c.mu.Unlock()
	p := &acme.Policy{
		Reserved:    c.ownNames(),
		Allow:       ac.allow,
		AccountKeys: ac.accounts,
		EAB:         eab, // replaced, never changed
		Open:        ac.open,
		MaxOrders:   ac.orders[0], MaxTotalOrders: ac.orders[1],
		MaxAuthzs: ac.authzs[0], MaxTotalAuthzs: ac.authzs[1],
	}
	if zones != nil {
		p.Zones = zones()
	}
	return p
}

// ACME makes the node's ACME server on o: it signs and revokes with the
// CA, keeps its state in DIR/acme, and applies ACMEPolicy.
func (c *CA) ACME(o acme.Options) (*acme.Server, error) {
	o.Signer = c.SignCSRContext
	o.Revoke = c.RevokeCert
	o.Dir = filepath.Join(c.dir, acmeDir)
	o.Policy = c.ACMEPolicy
	if o.Now == nil {
		o.Now = c.now
	}
	return acme.New(o)
}

// setACMEConfig applies the acme lines of a config.
func (c *CA) setACMEConfig(ac acmeConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acmeCfg = ac
}

// External account keys.

// validKID reports whether kid can name an external account key: what
// validName allows, which is also safe in a file name and a URL.
func validKID(kid string) bool { return validName(kid) }

// loadEAB reads the external account keys.
func (c *CA) loadEAB() error {
	p := filepath.Join(c.dir, eabFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		c.eab = map[string][]byte{}
		return nil
	}
	if err != nil {
		return err
	}
	m := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		key, err := base64.RawURLEncoding.DecodeString(safeIndex(f, 1))
		if len(f) != 2 || !validKID(f[0]) || err != nil || len(key) == 0 {
			return fmt.Errorf("%s line %d: want KID HMAC-BASE64URL", p, ln)
		}
		m[f[0]] = key
	}
	c.eab = m
	return sc.Err()
}

func safeIndex(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

// saveEABLocked writes m as the external account keys file. The caller
// holds c.mu.
func (c *CA) saveEABLocked(m map[string][]byte) error {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s %s\n", k, base64.RawURLEncoding.EncodeToString(m[k]))
	}
	return writeAtomic(filepath.Join(c.dir, eabFile), b.Bytes(), 0600)
}

// addEAB makes an external account key kid for ACME (RFC 8555 section
// 7.3.4) with the HMAC key hmacKey, or a random 256-bit one if it is
// empty. An account made with it is the only one it admits.
func (c *CA) addEAB(kid string, hmacKey []byte) error {
	if !validKID(kid) {
		return fmt.Errorf("ca: bad key id %q: want letters, digits, '.', '_' and '-'", cut(kid, 40))
	}
	if len(hmacKey) == 0 {
		hmacKey = make([]byte, 32)
		rand.Read(hmacKey)
	} else if len(hmacKey) < 16 {
		return errors.New("ca: hmac key shorter than 16 bytes")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.eab[kid]; ok {
		return fmt.Errorf("ca: key id %q exists", kid)
	}
	next := maps.Clone(c.eab)
	next[kid] = hmacKey
	c.jr.eabKeys(c.eab)
	if err := c.saveEABLocked(next); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	c.eab = next
	c.log.Info("ca: acme external account key made", "kid", kid)
	return nil
}

// removeEAB withdraws the external account key kid: no account can be
// made with it, and the account made with it is refused.
func (c *CA) removeEAB(kid string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.eab[kid]; !ok {
		return fmt.Errorf("ca: no key id %q", cut(kid, 40))
	}
	next := maps.Clone(c.eab)
	delete(next, kid)
	c.jr.eabKeys(c.eab)
	if err := c.saveEABLocked(next); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	c.eab = next
	c.log.Info("ca: acme external account key withdrawn", "kid", kid)
	return nil
}

// EABKeyIDs returns the external account key ids, sorted.
func (c *CA) EABKeyIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.eab))
}

// EABText is the text of acme/eab/KID: the key id, the HMAC key in
// base64url, and lego's flags for them.
func (c *CA) EABText(kid string) ([]byte, bool) {
	c.mu.Lock()
	key, ok := c.eab[kid]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	h := base64.RawURLEncoding.EncodeToString(key)
	return fmt.Appendf(nil, "kid %s\nhmac %s\nlego --eab --kid %s --hmac %s\n", kid, h, kid, h), true
}

// PolicyText is the text of acme/policy: the policy in force, "key
// value" lines.
func (c *CA) PolicyText() []byte {
	p := c.ACMEPolicy()
	var b bytes.Buffer
	line := func(k string, vs []string) {
		if len(vs) > 0 {
			fmt.Fprintf(&b, "%s %s\n", k, strings.Join(vs, " "))
		}
	}
	line("zones", p.Zones)
	line("reserved", append([]string{"localhost", "*.localhost"}, p.Reserved...))
	line("allow", p.Allow)
	line("account", p.AccountKeys)
	line("eab", slices.Sorted(maps.Keys(p.EAB)))
	open := "no"
	if p.Open {
		open = "yes"
	}
	fmt.Fprintf(&b, "open %s\n", open)
	or := func(n, d int) int {
		if n > 0 {
			return n
		}
		return d
	}
	fmt.Fprintf(&b, "orders %d %d\n", or(p.MaxOrders, acme.DefaultMaxOrders), or(p.MaxTotalOrders, acme.DefaultMaxTotalOrders))
	fmt.Fprintf(&b, "authz %d %d\n", or(p.MaxAuthzs, acme.DefaultMaxAuthzs), or(p.MaxTotalAuthzs, acme.DefaultMaxTotalAuthzs))
	return b.Bytes()
}

// The module.

// caModule is the ca as a node module: its files, and its config (the acme
// lines) applied to the CA.
type caModule struct {
	c     *CA
	mf    module.Manifest
	files *synth.Server
}

// Module makes the CA a built-in module named "ca", mounted at /ca. Its
// config holds the ACME policy's lines (see README).
func Module(c *CA, version string) module.Module {
	return &caModule{c: c, files: c.Files(), mf: module.Manifest{Name: "ca", Version: version, Mount: "/ca",
		Description: "certificate authority: x509 and ssh certificates, crl, backup, acme policy"}}
}

func (m *caModule) Manifest() module.Manifest { return m.mf }

func (m *caModule) CheckConfig(cfg module.Config) error {
	_, err := parseConfig(cfg)
	return err
}

func (m *caModule) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	ac, err := parseConfig(env.Config)
	if err != nil {
		return nil, err
	}
	m.c.setACMEConfig(ac)
	return &instance{m: m}, nil
}

// instance is the running ca module.
type instance struct{ m *caModule }

func (i *instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.m.files.Attach(ctx, uname, aname, auth)
}

func (i *instance) Stop(ctx context.Context) error { return nil }

// Reconfigure applies a new config in place.
func (i *instance) Reconfigure(ctx context.Context, cfg module.Config) error {
	ac, err := parseConfig(cfg)
	if err != nil {
		return err
	}
	i.m.c.setACMEConfig(ac)
	return nil
}

var (
	_ module.Instance     = (*instance)(nil)
	_ module.Reconfigurer = (*instance)(nil)
)
