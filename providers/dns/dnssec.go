package dns

import (
	"crypto/ecdsa"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Signature timing: signatures are made valid from an hour before they
// are made (clock skew) for sigValidity, and made again once they are
// sigRefresh old, so a cached signature always has a week to run.
const (
	sigInception = time.Hour
	sigValidity  = 14 * 24 * time.Hour
	sigRefresh   = 7 * 24 * time.Hour
	dnskeyTTL    = 3600
)

// zoneConf is a zone's settings besides its records: DNSSEC and the TSIG
// keys allowed to update it. A zoneConf is never changed once made.
type zoneConf struct {
	dnssec bool
	keys   []*zoneKey         // newest last; kept while dnssec is off
	tsig   map[string]tsigKey // by canonical key name
	// nodeNames are the names whose addresses SetNodeNames set last.
	nodeNames []string
}

// clone returns a copy of c that may be changed.
func (c *zoneConf) clone() *zoneConf {
	n := &zoneConf{dnssec: c.dnssec, keys: slices.Clone(c.keys), tsig: make(map[string]tsigKey, len(c.tsig)),
		nodeNames: slices.Clone(c.nodeNames)}
	for k, v := range c.tsig {
		n.tsig[k] = v
	}
	return n
}

// A zoneKey is a DNSSEC signing key: a combined signing key (CSK, flags
// 257) of algorithm 13, ECDSA P-256 with SHA-256.
type zoneKey struct {
	pub     *dns.DNSKEY
	priv    *ecdsa.PrivateKey
	created time.Time
	// retired keys stay published, and sign the DNSKEY RRset, so that
	// resolvers holding them as trust anchors or in a DS keep validating
	// until "rollkey done" removes them. They sign nothing else.
	retired bool
}

// A tsigKey is a TSIG key allowed to update a zone.
type tsigKey struct {
	name      string // canonical key name
	algorithm string // canonical algorithm name, such as hmac-sha256.
	secret    string // base64
}

// tsigAlgorithms are the TSIG algorithms accepted, by their short names.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// newKey makes a new signing key for origin.
func newKey(origin string, now time.Time) (*zoneKey, error) {
	pub := &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: dnskeyTTL},
		Flags:     dns.ZONE | dns.SEP,
		Protocol:  3,
		Algorithm: dns.ECDSAP256SHA256,
	}
	priv, err := pub.Generate(256)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("dns: generate key: unexpected key type %T", priv)
	}
	return &zoneKey{pub: pub, priv: ec, created: now}, nil
}

// A signer makes and caches the RRSIGs of one version of a zone. The
// cache lives as long as the version: a change of the zone starts an
// empty one.
type signer struct {
	origin string
	keys   []*zoneKey
	dnskey []dns.RR
	cache  sync.Map // sigKey -> *sigEntry
}

type sigKey struct {
	name  string
	rtype uint16
}

type sigEntry struct {
	sigs    []dns.RR
	refresh time.Time // make them again from then on
}

// sign makes z a signed zone: a DNSKEY RRset at the apex, an NSEC at
// every name of the chain, and a signer for the RRSIGs.
func (z *zone) sign() error {
	if len(z.conf.keys) == 0 {
		return fmt.Errorf("dns: dnssec on without a key")
	}
	s := &signer{origin: z.origin, keys: z.conf.keys}
	for _, k := range z.conf.keys {
		pub := dns.Copy(k.pub).(*dns.DNSKEY)
		pub.Hdr.Name = z.origin
		pub.Hdr.Ttl = dnskeyTTL
		s.dnskey = append(s.dnskey, pub)
	}
	apex := z.nodes[z.origin]
	apex.sets[dns.TypeDNSKEY] = s.dnskey
	for i, n := range z.chain {
		next := z.chain[(i+1)%len(z.chain)]
		types := make([]uint16, 0, len(n.sets)+2)
		for t := range n.sets {
			if n.cut && t != dns.TypeNS && t != dns.TypeDS {
				continue // occluded: only NS and DS belong to this zone at a cut
			}
			types = append(types, t)
		}
		types = append(types, dns.TypeRRSIG, dns.TypeNSEC)
		slices.Sort(types)
		n.nsec = &dns.NSEC{
			Hdr:        dns.RR_Header{Name: n.name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: z.nsecTTL},
			NextDomain: next.name,
			TypeBitMap: types,
		}
	}
	z.sig = s
	return nil
}

// sigs returns the RRSIGs of set, an RRset of the zone (the DNSKEY RRset
// is signed by every key, the rest by the keys that are not retired).
// They are made at the first call and cached until sigRefresh.
func (s *signer) sigs(set []dns.RR, now time.Time) []dns.RR {
	if len(set) == 0 {
		return nil
	}
	h := set[0].Header()
	k := sigKey{h.Name, h.Rrtype}
	if v, ok := s.cache.Load(k); ok {
		e := v.(*sigEntry)
		if now.Before(e.refresh) {
			return e.sigs
		}
	}
	inception := now.Add(-sigInception)
	expiration := now.Add(sigValidity)
	var sigs []dns.RR
	for _, key := range s.keys {
		if key.retired && h.Rrtype != dns.TypeDNSKEY {
			continue
		}
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Ttl: h.Ttl},
			Algorithm:  key.pub.Algorithm,
			Expiration: uint32(expiration.Unix()),
			Inception:  uint32(inception.Unix()),
			KeyTag:     key.pub.KeyTag(),
			SignerName: s.origin,
			OrigTtl:    h.Ttl,
		}
		if err := sig.Sign(key.priv, set); err != nil {
			continue // cannot happen with a well-formed key; the answer goes unsigned
		}
		sigs = append(sigs, sig)
	}
	s.cache.Store(k, &sigEntry{sigs: sigs, refresh: now.Add(sigRefresh)})
	return sigs
}

// dnskeyText is the zone's keys as DNSKEY records (all of them, retired
// ones included, even when signing is off).
func (c *zoneConf) dnskeyText() string {
	var b strings.Builder
	for _, k := range c.keys {
		b.WriteString(k.pub.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// dsText is the DS records of the zone's keys, for the parent zone.
func (c *zoneConf) dsText() string {
	var b strings.Builder
	for _, k := range c.keys {
		if ds := k.pub.ToDS(dns.SHA256); ds != nil {
			b.WriteString(ds.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// anchorText is the zone's keys as a BIND trust-anchors clause, the
// file delv -a and named.conf take.
func (c *zoneConf) anchorText(origin string) string {
	var b strings.Builder
	b.WriteString("trust-anchors {\n")
	for _, k := range c.keys {
		fmt.Fprintf(&b, "\t%q static-key %d %d %d %q;\n", origin, k.pub.Flags, k.pub.Protocol, k.pub.Algorithm, k.pub.PublicKey)
	}
	b.WriteString("};\n")
	return b.String()
}
