package acme

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// A Policy says who may hold an account and what may be certified. The
// Server asks Options.Policy for the policy in force at every request,
// so it may change while the server runs. The zero Policy admits no
// account and no identifier.
type Policy struct {
	// Zones are the DNS zones the node is authoritative for: a name in
	// one (its apex included) may be certified unless it is Reserved.
	Zones []string
	// Reserved are names refused even inside Zones (the node's own
	// names), each NAME or *.SUFFIX (the names below SUFFIX). localhost
	// and the names below it are always reserved.
	Reserved []string
	// Allow are identifiers that may be certified besides those in
	// Zones, reserved ones included: NAME, *.SUFFIX (the names below
	// SUFFIX, not SUFFIX itself), an IP address, or an IP prefix
	// (192.0.2.0/24). IP addresses are refused unless allowed here.
	Allow []string

	// AccountKeys are the RFC 7638 SHA-256 thumbprints (base64url) of
	// the keys that may make an account without an external account
	// binding.
	AccountKeys []string
	// EAB holds the HMAC keys of external account bindings (RFC 8555
	// section 7.3.4) by key id. A key id binds one account; the account
	// is refused once its key id is withdrawn.
	EAB map[string][]byte
	// Open lets any key make an account.
	Open bool

	// Caps, zero for the defaults: unfinished orders (pending, ready,
	// processing, or invalid and not yet pruned) and pending
	// authorizations, per account and in all.
	MaxOrders, MaxAuthzs           int
	MaxTotalOrders, MaxTotalAuthzs int
}

// Default caps of a Policy.
const (
	DefaultMaxOrders      = 100
	DefaultMaxAuthzs      = 300
	DefaultMaxTotalOrders = 1000
	DefaultMaxTotalAuthzs = 3000
)

func orDefault(n, d int) int {
	if n <= 0 {
		return d
	}
	return n
}

// CheckPattern reports whether p is a valid entry of Policy.Allow or
// Policy.Reserved: a DNS name, *.SUFFIX, an IP address or an IP prefix.
func CheckPattern(p string) error {
	if _, err := netip.ParseAddr(p); err == nil {
		return nil
	}
	if _, err := netip.ParsePrefix(p); err == nil {
		return nil
	}
	name := strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(p, ".")), "*.")
	if !validDNSName(name) {
		return fmt.Errorf("%q is not a DNS name, *.SUFFIX, IP address or IP prefix", p)
	}
	return nil
}

// matchName reports whether the lower-case DNS name is pattern, or below
// SUFFIX for a pattern *.SUFFIX.
func matchName(name, pattern string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(name, "."+suffix)
	}
	return name == pattern
}

// inZone reports whether name is zone or below it. The root zone holds
// nothing here: it would allow every name.
func inZone(name, zone string) bool {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	if zone == "" {
		return false
	}
	return name == zone || strings.HasSuffix(name, "."+zone)
}

// check says whether the normalized identifier id may be certified; the
// error says why not.
func (p *Policy) check(id identifier) error {
	if id.Type == "ip" {
		a, err := netip.ParseAddr(id.Value)
		if err != nil {
			return errors.New("not an IP address")
		}
		for _, pat := range p.Allow {
			if b, err := netip.ParseAddr(pat); err == nil && b.Unmap() == a {
				return nil
			}
			if pf, err := netip.ParsePrefix(pat); err == nil && pf.Contains(a) {
				return nil
			}
		}
		return errors.New("IP addresses are certified only when the owner allows them")
	}
	name := id.Value
	for _, pat := range p.Allow {
		if matchName(name, pat) {
			return nil
		}
	}
	if matchName(name, "localhost") || matchName(name, "*.localhost") {
		return errors.New("localhost is the node's own name")
	}
	for _, pat := range p.Reserved {
		if matchName(name, pat) {
			return errors.New("it is one of the node's own names")
		}
	}
	for _, z := range p.Zones {
		if inZone(name, z) {
			return nil
		}
	}
	return errors.New("it is in no zone of this node and the owner has not allowed it")
}

// An admission is how an account was let in, kept with it: "eab KID",
// "key THUMBPRINT" or "open".
const (
	viaEAB  = "eab "
	viaKey  = "key "
	viaOpen = "open"
)

// admits reports whether the account may still act: its admission holds
// (its EAB key id is still there, its listed key is still listed,
// accounts are open) or its key is listed now.
func (p *Policy) admits(a *account) bool {
	switch {
	case p.Open:
		return true
	case slices.Contains(p.AccountKeys, a.Thumbprint):
		return true
	case strings.HasPrefix(a.Via, viaEAB):
		_, ok := p.EAB[strings.TrimPrefix(a.Via, viaEAB)]
		return ok
	case strings.HasPrefix(a.Via, viaKey):
		return slices.Contains(p.AccountKeys, strings.TrimPrefix(a.Via, viaKey))
	}
	return false
}

// eabRequired is the directory's meta.externalAccountRequired: true
// unless some key may do without.
func (p *Policy) eabRequired() bool { return !p.Open && len(p.AccountKeys) == 0 }

// admit decides whether the key with thumbprint tp may make an account,
// given the externalAccountBinding member of the request (RFC 8555
// section 7.3.4) and the request's URL. It returns the admission to keep
// with the account; bound reports whether a key id is already bound to an
// account.
func (p *Policy) admit(tp string, jwk []byte, eab json.RawMessage, url string, bound func(kid string) bool) (string, *problem) {
	if len(eab) > 0 && string(eab) != "null" {
		kid, pr := p.checkEAB(jwk, eab, url)
		if pr != nil {
			return "", pr
		}
		if bound(kid) {
			return "", unauthorized("external account key id %q is bound to another account", kid)
		}
		return viaEAB + kid, nil
	}
	switch {
	case slices.Contains(p.AccountKeys, tp):
		return viaKey + tp, nil
	case p.Open:
		return viaOpen, nil
	}
	return "", newProblem(http.StatusForbidden, errExternalAccountRequired,
		"this server makes accounts only with an external account binding from its owner, or for keys the owner lists")
}

// checkEAB verifies an external account binding: a JWS with a MAC
// algorithm, a key id the owner made, the request's URL, no nonce, and the
// account's key as its payload. It returns the key id.
func (p *Policy) checkEAB(jwk []byte, raw json.RawMessage, url string) (string, *problem) {
	j, err := parseJWS(raw)
	if err != nil {
		return "", malformed("externalAccountBinding: %v", err)
	}
	h := j.header
	var mac func() hash.Hash
	switch h.Alg {
	case "HS256":
		mac = sha256.New
	case "HS384":
		mac = sha512.New384
	case "HS512":
		mac = sha512.New
	default:
		return "", malformed("externalAccountBinding: alg %q is not HS256, HS384 or HS512", h.Alg)
	}
	if j.hasNonce || len(h.JWK) > 0 {
		return "", malformed("externalAccountBinding must have no nonce and no jwk")
	}
	if h.URL != url {
		return "", unauthorized("externalAccountBinding url %q is not the request's", h.URL)
	}
	key, ok := p.EAB[h.KID]
	if !ok || h.KID == "" {
		return "", unauthorized("unknown external account key id %q", h.KID)
	}
	m := hmac.New(mac, key)
	m.Write(j.signingInput)
	if !hmac.Equal(m.Sum(nil), j.signature) {
		return "", unauthorized("externalAccountBinding MAC does not verify")
	}
	inner, err := parseJWK(j.payload)
	if err != nil {
		return "", malformed("externalAccountBinding payload: %v", err)
	}
	canon, err := encodeJWK(inner)
	if err != nil || string(canon) != string(jwk) {
		return "", unauthorized("externalAccountBinding payload is not the account key")
	}
	return h.KID, nil
}
