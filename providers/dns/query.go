package dns

import (
	"sort"
	"time"

	"github.com/miekg/dns"
)

// maxChase is the most CNAMEs followed within a zone for one answer.
const maxChase = 8

// An answer is the making of the reply to one query in one zone.
type answer struct {
	z   *zone
	do  bool // the client wants DNSSEC records and the zone is signed
	now time.Time
	m   *dns.Msg
	// nsecs holds the owner names of the NSEC records added, so that
	// none is added twice.
	nsecs []string
}

// answerQuery fills m, a reply to a query for q in z.
func answerQuery(z *zone, q dns.Question, do bool, now time.Time, m *dns.Msg) {
	a := &answer{z: z, do: do && z.sig != nil, now: now, m: m}
	m.Authoritative = true
	qname := canon(q.Name)
	if cut := z.findCut(qname); cut != nil && !(cut.name == qname && q.Qtype == dns.TypeDS) {
		a.referral(cut)
		return
	}
	name := qname
	for chase := 0; ; chase++ {
		n := z.nodes[name]
		owner := name
		wild := false
		if n == nil || n.glue {
			ce := z.closestEncloser(name)
			wn := z.nodes["*."+ce]
			if wn == nil || wn.empty() || wn.glue {
				a.nxdomain(name, ce)
				return
			}
			n, wild = wn, true
			a.addNSEC(z.covering(revLabels(name)))
		}
		if set := n.sets[q.Qtype]; len(set) > 0 && q.Qtype != dns.TypeANY {
			a.add(&m.Answer, set, owner)
			return
		}
		if q.Qtype == dns.TypeNSEC && n.nsec != nil && !wild {
			a.add(&m.Answer, []dns.RR{n.nsec}, owner)
			return
		}
		if q.Qtype == dns.TypeANY && !n.empty() {
			for _, t := range sortedTypes(n) {
				a.add(&m.Answer, n.sets[t], owner)
			}
			return
		}
		cname := n.sets[dns.TypeCNAME]
		if len(cname) == 0 {
			a.nodata(n, name)
			return
		}
		a.add(&m.Answer, cname, owner)
		target := canon(cname[0].(*dns.CNAME).Target)
		if chase >= maxChase || !dns.IsSubDomain(z.origin, target) || z.findCut(target) != nil {
			return
		}
		name = target
	}
}

// sortedTypes returns the types of n's RRsets in order.
func sortedTypes(n *node) []uint16 {
	ts := make([]uint16, 0, len(n.sets))
	for t := range n.sets {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// findCut returns the highest delegation point at or above name, below
// the apex, or nil.
func (z *zone) findCut(name string) *node {
	var cut *node
	for p := name; p != z.origin && p != ""; p = parentName(p) {
		if n := z.nodes[p]; n != nil && n.cut {
			cut = n
		}
	}
	return cut
}

// closestEncloser returns the longest existing name (data or empty
// non-terminal) that is name or an ancestor of it, within the zone.
func (z *zone) closestEncloser(name string) string {
	for p := name; p != ""; p = parentName(p) {
		if n := z.nodes[p]; n != nil && !n.glue {
			return p
		}
		if p == z.origin {
			break
		}
	}
	return z.origin
}

// covering returns the node of the chain whose NSEC covers (or matches)
// the name whose revLabels are rev: the last one not after it.
func (z *zone) covering(rev [][]byte) *node {
	if len(z.chain) == 0 {
		return nil
	}
	i := sort.Search(len(z.chain), func(i int) bool { return compareLabels(z.chain[i].rev, rev) > 0 })
	if i == 0 {
		return z.chain[len(z.chain)-1]
	}
	return z.chain[i-1]
}

// add appends set to section, its owner changed to owner if that is
// not its own (a wildcard's), with its RRSIGs if DNSSEC is wanted.
func (a *answer) add(section *[]dns.RR, set []dns.RR, owner string) {
	if len(set) == 0 {
		return
	}
	rename := set[0].Header().Name != owner
	for _, rr := range set {
		if rename {
			rr = dns.Copy(rr)
			rr.Header().Name = owner
		}
		*section = append(*section, rr)
	}
	if !a.do {
		return
	}
	for _, sig := range a.z.sig.sigs(set, a.now) {
		if rename {
			sig = dns.Copy(sig)
			sig.Header().Name = owner
		}
		*section = append(*section, sig)
	}
}

// addSOA puts the SOA of a negative answer in the authority section.
func (a *answer) addSOA() {
	soa := a.z.soa
	if soa.Hdr.Ttl != a.z.nsecTTL {
		c := *soa
		c.Hdr.Ttl = a.z.nsecTTL
		a.m.Ns = append(a.m.Ns, &c)
		if a.do {
			a.m.Ns = append(a.m.Ns, a.z.sig.sigs([]dns.RR{soa}, a.now)...)
		}
		return
	}
	a.add(&a.m.Ns, []dns.RR{soa}, soa.Hdr.Name)
}

// addNSEC puts n's NSEC in the authority section, once, if DNSSEC is
// wanted.
func (a *answer) addNSEC(n *node) {
	if !a.do || n == nil || n.nsec == nil {
		return
	}
	for _, s := range a.nsecs {
		if s == n.name {
			return
		}
	}
	a.nsecs = append(a.nsecs, n.name)
	a.add(&a.m.Ns, []dns.RR{n.nsec}, n.name)
}

// nodata answers that name, whose node is n, has no data of the type
// asked for.
func (a *answer) nodata(n *node, name string) {
	a.addSOA()
	if !a.do {
		return
	}
	if n.nsec != nil && n.name == name {
		a.addNSEC(n)
		return
	}
	if n.name != name { // wildcard: no type at the wildcard, no name at name
		a.addNSEC(n)
		return
	}
	// An empty non-terminal: the NSEC that covers it.
	a.addNSEC(a.z.covering(n.rev))
}

// nxdomain answers that name does not exist: the NSEC covering it and
// the one covering the wildcard at its closest encloser ce.
func (a *answer) nxdomain(name, ce string) {
	a.m.Rcode = dns.RcodeNameError
	a.addSOA()
	if !a.do {
		return
	}
	a.addNSEC(a.z.covering(revLabels(name)))
	a.addNSEC(a.z.covering(revLabels("*." + ce)))
}

// referral answers with the delegation at cut: its NS, DS (or the NSEC
// proving there is none) and glue.
func (a *answer) referral(cut *node) {
	a.m.Authoritative = false
	a.m.Ns = append(a.m.Ns, cut.sets[dns.TypeNS]...)
	if ds := cut.sets[dns.TypeDS]; len(ds) > 0 {
		a.add(&a.m.Ns, ds, cut.name)
	} else {
		a.addNSEC(cut)
	}
	for _, rr := range cut.sets[dns.TypeNS] {
		target := canon(rr.(*dns.NS).Ns)
		if !dns.IsSubDomain(cut.name, target) {
			continue
		}
		if n := a.z.nodes[target]; n != nil {
			a.m.Extra = append(a.m.Extra, n.sets[dns.TypeA]...)
			a.m.Extra = append(a.m.Extra, n.sets[dns.TypeAAAA]...)
		}
	}
}
