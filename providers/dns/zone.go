package dns

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// MaxRecords is the most records a zone may hold.
const MaxRecords = 200000

// defaultTTL is the TTL of records written without one and no $TTL.
const defaultTTL = 3600

// A zone is one version of a zone's data, never changed once made: a
// change makes a new zone that replaces it atomically, so a query sees
// one version from start to end.
type zone struct {
	origin  string           // canonical name of the apex
	soa     *dns.SOA         // the apex SOA
	nodes   map[string]*node // by canonical owner name, empty non-terminals included
	chain   []*node          // authoritative names with data, canonical order: the NSEC chain
	rrs     []dns.RR         // the records as given, in canonical order
	conf    *zoneConf        // DNSSEC and TSIG settings
	sig     *signer          // nil when the zone is not signed
	nsecTTL uint32           // TTL of NSEC records and of negative answers' SOA

	// The zone's text, rendered once: a zone version never changes, so
	// the stats of its file (ls -l of /dns/zones) do not render it again.
	textOnce sync.Once
	textVal  []byte
}

// A node is an owner name of a zone and the RRsets it has.
type node struct {
	name string              // canonical owner name
	rev  [][]byte            // revLabels(name)
	sets map[uint16][]dns.RR // RRsets by type; empty for an empty non-terminal
	nsec *dns.NSEC           // the name's NSEC when the zone is signed
	cut  bool                // a delegation point: NS below the apex
	glue bool                // below a delegation point: not authoritative
}

// empty reports whether n is an empty non-terminal.
func (n *node) empty() bool { return len(n.sets) == 0 }

// forbiddenTypes are the types a zone's text may not hold: those the
// server makes (DNSSEC records), and meta types.
var forbiddenTypes = map[uint16]string{
	dns.TypeRRSIG:      "RRSIG records are made by the server",
	dns.TypeNSEC:       "NSEC records are made by the server",
	dns.TypeNSEC3:      "NSEC3 is not supported",
	dns.TypeNSEC3PARAM: "NSEC3 is not supported",
	dns.TypeDNSKEY:     "DNSKEY records are made by the server (dnssec on)",
	dns.TypeOPT:        "OPT is not a record type",
	dns.TypeTSIG:       "TSIG is not a record type",
	dns.TypeTKEY:       "TKEY is not a record type",
}

// rrError names the record rr in an error.
func rrError(rr dns.RR, format string, args ...any) error {
	h := rr.Header()
	return fmt.Errorf("%s %s: %s", h.Name, dns.TypeToString[h.Rrtype], fmt.Sprintf(format, args...))
}

// newZone checks rrs as the content of the zone origin and indexes them.
// rrs is taken over (owner names are made canonical, duplicates removed,
// each RRset's TTLs made equal). The zone is signed if conf says so.
func newZone(origin string, rrs []dns.RR, conf *zoneConf) (*zone, error) {
	if conf == nil {
		conf = &zoneConf{}
	}
	z := &zone{origin: origin, nodes: make(map[string]*node), conf: conf}
	if len(rrs) > MaxRecords {
		return nil, fmt.Errorf("dns: more than %d records", MaxRecords)
	}
	for _, rr := range rrs {
		h := rr.Header()
		h.Name = canon(h.Name)
		if h.Class != dns.ClassINET {
			return nil, rrError(rr, "class %s is not IN", dns.ClassToString[h.Class])
		}
		if why, bad := forbiddenTypes[h.Rrtype]; bad {
			return nil, rrError(rr, "%s", why)
		}
		if h.Rrtype >= 128 && h.Rrtype <= 255 {
			return nil, rrError(rr, "meta type")
		}
		if !dns.IsSubDomain(origin, h.Name) {
			return nil, rrError(rr, "not in zone %s", origin)
		}
		if dns.CountLabel(h.Name) > 127 {
			return nil, rrError(rr, "name too long")
		}
		n := z.nodes[h.Name]
		if n == nil || n.sets == nil {
			n = z.addNode(h.Name)
		}
		set := n.sets[h.Rrtype]
		dup := false
		for _, o := range set {
			if dns.IsDuplicate(o, rr) {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		n.sets[h.Rrtype] = append(set, rr)
	}
	apex := z.nodes[origin]
	if apex == nil || len(apex.sets[dns.TypeSOA]) == 0 {
		return nil, fmt.Errorf("dns: no SOA record at %s", origin)
	}
	if len(apex.sets[dns.TypeSOA]) > 1 {
		return nil, fmt.Errorf("dns: more than one SOA record at %s", origin)
	}
	z.soa = apex.sets[dns.TypeSOA][0].(*dns.SOA)
	z.nsecTTL = min(z.soa.Minttl, z.soa.Hdr.Ttl)
	for _, n := range z.nodes {
		if n.empty() {
			continue
		}
		for t, set := range n.sets {
			if t == dns.TypeSOA && n.name != origin {
				return nil, rrError(set[0], "SOA below the apex")
			}
			if t == dns.TypeCNAME {
				if n.name == origin {
					return nil, rrError(set[0], "CNAME at the apex")
				}
				if len(set) > 1 {
					return nil, rrError(set[0], "more than one CNAME")
				}
				if len(n.sets) > 1 {
					return nil, rrError(set[0], "CNAME and other data")
				}
			}
			if t == dns.TypeDS && n.name == origin {
				return nil, rrError(set[0], "DS at the apex belongs in the parent zone")
			}
			ttl := set[0].Header().Ttl
			for _, rr := range set[1:] {
				ttl = min(ttl, rr.Header().Ttl)
			}
			for _, rr := range set {
				rr.Header().Ttl = ttl
			}
		}
		if n.name != origin && len(n.sets[dns.TypeNS]) > 0 {
			n.cut = true
		}
	}
	for _, n := range z.nodes {
		for p := parentName(n.name); p != "" && p != parentName(origin); p = parentName(p) {
			if pn := z.nodes[p]; pn != nil && pn.cut {
				n.glue = true
				break
			}
		}
	}
	for _, n := range z.nodes {
		if !n.empty() && !n.glue {
			z.chain = append(z.chain, n)
		}
		for _, set := range n.sets {
			z.rrs = append(z.rrs, set...)
		}
	}
	sortNodes(z.chain)
	sortRRs(z.rrs)
	if conf.dnssec {
		if err := z.sign(); err != nil {
			return nil, err
		}
	}
	return z, nil
}

// addNode adds name, and the empty non-terminals between it and the
// apex, to z.
func (z *zone) addNode(name string) *node {
	n := z.nodes[name]
	if n == nil {
		n = &node{name: name, rev: revLabels(name)}
		z.nodes[name] = n
	}
	n.sets = make(map[uint16][]dns.RR)
	for p := name; p != z.origin; {
		p = parentName(p)
		if p == "" || z.nodes[p] != nil {
			break
		}
		z.nodes[p] = &node{name: p, rev: revLabels(p)}
	}
	return n
}

// sortNodes puts nodes in canonical order.
func sortNodes(nodes []*node) {
	slices.SortFunc(nodes, func(a, b *node) int { return compareLabels(a.rev, b.rev) })
}

// sortRRs puts records in canonical order of their owners; at a name the
// SOA comes first, then types in numeric order, then the records as
// their text sorts.
func sortRRs(rrs []dns.RR) {
	keys := make(map[string][][]byte)
	key := func(name string) [][]byte {
		k, ok := keys[name]
		if !ok {
			k = revLabels(name)
			keys[name] = k
		}
		return k
	}
	sort.SliceStable(rrs, func(i, j int) bool {
		a, b := rrs[i].Header(), rrs[j].Header()
		if a.Name != b.Name {
			return compareLabels(key(a.Name), key(b.Name)) < 0
		}
		ta, tb := a.Rrtype, b.Rrtype
		if ta != tb {
			if ta == dns.TypeSOA || tb == dns.TypeSOA {
				return ta == dns.TypeSOA
			}
			return ta < tb
		}
		return rrs[i].String() < rrs[j].String()
	})
}

// text returns the zone's records in master-file format.
// text is the zone in master-file format, rendered at the first call.
// The slice is shared (its capacity is its length, so an append copies):
// callers must not change it.
func (z *zone) text() []byte {
	z.textOnce.Do(func() {
		var b strings.Builder
		fmt.Fprintf(&b, "$ORIGIN %s\n", z.origin)
		for _, rr := range z.rrs {
			b.WriteString(rr.String())
			b.WriteByte('\n')
		}
		z.textVal = slices.Clip([]byte(b.String()))
	})
	return z.textVal
}

// records returns a copy of the zone's records, for making a changed zone.
func (z *zone) records() []dns.RR {
	out := make([]dns.RR, len(z.rrs))
	for i, rr := range z.rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

// lineRe finds the line number in a miekg/dns parse error.
var lineRe = regexp.MustCompile(`^(?:.*?: )?dns: (.*) at line: (\d+):\d+$`)

// parseError rewrites a parse error as "line N: what", so that the line
// comes first and survives the cut to a Plan 9 error string.
func parseError(err error) error {
	var pe *dns.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	m := lineRe.FindStringSubmatch(pe.Error())
	if m == nil {
		return err
	}
	line, _ := strconv.Atoi(m[2])
	return fmt.Errorf("dns: line %d: %s", line, fieldError(m[1]))
}

// fieldRe finds miekg/dns's "bad TYPE FIELD: TOKEN" (as `bad A A: "x"`).
var fieldRe = regexp.MustCompile(`^bad ([A-Z0-9]+) ([A-Za-z0-9]+): (".*")$`)

// fieldError says what miekg/dns's "bad TYPE FIELD" means in words:
// `bad A record: "x" is not an IPv4 address`.
func fieldError(s string) string {
	m := fieldRe.FindStringSubmatch(s)
	switch {
	case m == nil:
		return s
	case m[1] == "A" && m[2] == "A":
		return fmt.Sprintf("bad A record: %s is not an IPv4 address", m[3])
	case m[1] == "AAAA" && m[2] == "AAAA":
		return fmt.Sprintf("bad AAAA record: %s is not an IPv6 address", m[3])
	case strings.EqualFold(m[1], m[2]):
		return fmt.Sprintf("bad %s record: %s", m[1], m[3])
	}
	return fmt.Sprintf("bad %s record: bad %s %s", m[1], m[2], m[3])
}

// parseZone parses text, a zone in master-file format with origin as the
// initial $ORIGIN. $INCLUDE is refused.
func parseZone(origin string, text string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetDefaultTTL(defaultTTL)
	zp.SetIncludeAllowed(false)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if len(rrs) >= MaxRecords {
			return nil, fmt.Errorf("dns: more than %d records", MaxRecords)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, parseError(err)
	}
	for _, rr := range rrs {
		if err := checkRoundTrip(rr); err != nil {
			return nil, err
		}
	}
	return rrs, nil
}

// checkRoundTrip refuses a record whose text does not parse back as the
// same record: the parser accepts a few incomplete records (an SOA
// without names, an A without an address) that would make a zone file
// that does not load.
func checkRoundTrip(rr dns.RR) error {
	text := rr.String()
	back, err := dns.NewRR(text)
	if err != nil || back == nil || !dns.IsDuplicate(rr, back) || back.Header().Ttl != rr.Header().Ttl {
		return rrError(rr, "incomplete record")
	}
	return nil
}

// parseRecord parses one record, relative names taken from origin.
func parseRecord(origin, text string) (dns.RR, error) {
	if strings.HasPrefix(strings.TrimSpace(text), "$") {
		return nil, errors.New("dns: bad record: directives are for the zone file")
	}
	rrs, err := parseZone(origin, text)
	if err != nil {
		if s, ok := strings.CutPrefix(err.Error(), "line 1: "); ok {
			return nil, errors.New(s)
		}
		return nil, err
	}
	if len(rrs) != 1 {
		return nil, fmt.Errorf("dns: want one record, have %d", len(rrs))
	}
	return rrs[0], nil
}

// defaultZone is the content of a zone made by "zone add".
func defaultZone(origin string) []dns.RR {
	soa := &dns.SOA{
		Hdr:     dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: defaultTTL},
		Ns:      "ns." + origin,
		Mbox:    "hostmaster." + origin,
		Serial:  1,
		Refresh: 7200,
		Retry:   3600,
		Expire:  1209600,
		Minttl:  300,
	}
	ns := &dns.NS{
		Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: defaultTTL},
		Ns:  "ns." + origin,
	}
	return []dns.RR{soa, ns}
}

// bumpSerial advances the SOA serial of rrs (serial arithmetic, RFC 1982).
func bumpSerial(rrs []dns.RR) {
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			soa.Serial++
		}
	}
}

// findZone returns the zone of zs that is the closest enclosing zone of
// name (canonical), or nil.
func (zs zoneSet) findZone(name string) *zone {
	for off := 0; ; {
		if z := zs[name[off:]]; z != nil {
			return z
		}
		next, end := dns.NextLabel(name, off)
		if end {
			break
		}
		off = next
	}
	return zs["."]
}

// served is what queries are answered from: the zones and the cache of
// replies made from them, replaced together at each change.
type served struct {
	zones zoneSet
	cache *respCache
}

// A zoneSet maps the canonical names of the zones served to their
// current versions. A zoneSet is never changed once published.
type zoneSet map[string]*zone
