package dns

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// An rcodeError is a refused UPDATE: its rcode and why.
type rcodeError struct {
	rcode int
	why   string
}

func (e *rcodeError) Error() string {
	return dns.RcodeToString[e.rcode] + ": " + e.why
}

func refuse(rcode int, format string, args ...any) error {
	return &rcodeError{rcode: rcode, why: fmt.Sprintf(format, args...)}
}

// update carries out the RFC 2136 UPDATE m (whose wire form is req),
// replying with r. It must be signed with a TSIG key of the zone; the
// prerequisites are checked and the changes made at once, under the
// lock of changes, so no other change comes between.
func (s *Server) update(req []byte, m, r *dns.Msg, from netip.AddrPort, buf []byte) []byte {
	zq := m.Question[0]
	origin := canon(zq.Name)
	z := s.zone(origin)
	if zq.Qtype != dns.TypeSOA || zq.Qclass != dns.ClassINET {
		r.Rcode = dns.RcodeFormatError
		return s.pack(r, dns.MaxMsgSize, buf)
	}
	if z == nil {
		r.Rcode = dns.RcodeNotAuth
		s.stats.refused.Add(1)
		return s.pack(r, dns.MaxMsgSize, buf)
	}
	meta := s.metaOf(origin)
	t := m.IsTsig()
	if t == nil {
		r.Rcode = dns.RcodeRefused
		s.stats.refused.Add(1)
		s.zlogf(meta, origin, "update from %s refused: not signed with TSIG", from.Addr())
		return s.pack(r, dns.MaxMsgSize, buf)
	}
	key, terr := s.checkTSIG(req, t, z)
	if terr != 0 {
		r.Rcode = dns.RcodeNotAuth
		s.stats.refused.Add(1)
		s.zlogf(meta, origin, "update from %s with key %s refused: %s", from.Addr(), t.Hdr.Name, dns.RcodeToString[int(terr)])
		return s.packTSIG(r, key, t, terr, buf)
	}
	var done []string
	err := s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		if _, ok := conf.tsig[key.name]; !ok {
			return nil, nil, refuse(dns.RcodeNotAuth, "key %s withdrawn", key.name)
		}
		if err := checkPrereqs(origin, rrs, m.Answer); err != nil {
			return nil, nil, err
		}
		if err := prescan(origin, m.Ns); err != nil {
			return nil, nil, err
		}
		var changed, soaSet bool
		rrs, changed, soaSet, done = applyUpdate(origin, rrs, m.Ns)
		if !changed {
			return nil, nil, errUnchanged
		}
		if !soaSet {
			bumpSerial(rrs)
		}
		return rrs, conf, nil
	})
	switch e := err.(type) {
	case nil:
		s.zlogf(meta, origin, "update from %s key %s: %s", from.Addr(), key.name, strings.Join(done, "; "))
		s.tellZoneChanged(origin)
	case *rcodeError:
		if e != errUnchanged {
			r.Rcode = e.rcode
			s.zlogf(meta, origin, "update from %s key %s refused: %v", from.Addr(), key.name, e)
		}
	default:
		r.Rcode = dns.RcodeRefused
		s.zlogf(meta, origin, "update from %s key %s refused: %v", from.Addr(), key.name, err)
	}
	return s.packTSIG(r, key, t, 0, buf)
}

// errUnchanged ends an update that changes nothing: it succeeds, and the
// serial stays.
var errUnchanged = &rcodeError{rcode: dns.RcodeSuccess, why: "nothing changed"}

// inZone reports whether name is in zone origin.
func inZone(origin, name string) bool { return dns.IsSubDomain(origin, canon(name)) }

// checkPrereqs checks the prerequisite section of an update against the
// zone's records (RFC 2136 section 3.2).
func checkPrereqs(origin string, rrs []dns.RR, prereqs []dns.RR) error {
	byName := make(map[string][]dns.RR)
	for _, rr := range rrs {
		byName[rr.Header().Name] = append(byName[rr.Header().Name], rr)
	}
	type setKey struct {
		name  string
		rtype uint16
	}
	want := make(map[setKey][]dns.RR)
	for _, p := range prereqs {
		h := p.Header()
		name := canon(h.Name)
		if h.Ttl != 0 {
			return refuse(dns.RcodeFormatError, "prerequisite with a TTL")
		}
		if !inZone(origin, name) {
			return refuse(dns.RcodeNotZone, "prerequisite %s outside the zone", name)
		}
		at := byName[name]
		has := func(t uint16) bool {
			for _, rr := range at {
				if rr.Header().Rrtype == t {
					return true
				}
			}
			return false
		}
		switch h.Class {
		case dns.ClassANY:
			if h.Rdlength != 0 {
				return refuse(dns.RcodeFormatError, "prerequisite with data")
			}
			if h.Rrtype == dns.TypeANY {
				if len(at) == 0 {
					return refuse(dns.RcodeNameError, "%s does not exist", name)
				}
			} else if !has(h.Rrtype) {
				return refuse(dns.RcodeNXRrset, "%s has no %s", name, dns.TypeToString[h.Rrtype])
			}
		case dns.ClassNONE:
			if h.Rdlength != 0 {
				return refuse(dns.RcodeFormatError, "prerequisite with data")
			}
			if h.Rrtype == dns.TypeANY {
				if len(at) > 0 {
					return refuse(dns.RcodeYXDomain, "%s exists", name)
				}
			} else if has(h.Rrtype) {
				return refuse(dns.RcodeYXRrset, "%s has %s", name, dns.TypeToString[h.Rrtype])
			}
		case dns.ClassINET:
			k := setKey{name, h.Rrtype}
			want[k] = append(want[k], p)
		default:
			return refuse(dns.RcodeFormatError, "prerequisite of class %d", h.Class)
		}
	}
	for k, set := range want {
		var have []dns.RR
		for _, rr := range byName[k.name] {
			if rr.Header().Rrtype == k.rtype {
				have = append(have, rr)
			}
		}
		if !sameSet(have, set) {
			return refuse(dns.RcodeNXRrset, "%s %s is not as given", k.name, dns.TypeToString[k.rtype])
		}
	}
	return nil
}

// sameSet reports whether two RRsets hold the same records, TTLs and
// owner-name case aside.
func sameSet(a, b []dns.RR) bool {
	contains := func(set []dns.RR, rr dns.RR) bool {
		for _, o := range set {
			if equalRR(o, rr) {
				return true
			}
		}
		return false
	}
	for _, rr := range a {
		if !contains(b, rr) {
			return false
		}
	}
	for _, rr := range b {
		if !contains(a, rr) {
			return false
		}
	}
	return true
}

// equalRR reports whether two records are the same, TTL and owner-name
// case aside, whatever their classes.
func equalRR(a, b dns.RR) bool {
	a, b = dns.Copy(a), dns.Copy(b)
	a.Header().Name, b.Header().Name = canon(a.Header().Name), canon(b.Header().Name)
	a.Header().Class, b.Header().Class = dns.ClassINET, dns.ClassINET
	return dns.IsDuplicate(a, b)
}

// updateForbidden are the types an update may not touch: the server makes
// them.
var updateForbidden = map[uint16]bool{
	dns.TypeRRSIG: true, dns.TypeNSEC: true, dns.TypeNSEC3: true,
	dns.TypeNSEC3PARAM: true, dns.TypeDNSKEY: true,
}

// prescan checks the update section (RFC 2136 section 3.4.1).
func prescan(origin string, updates []dns.RR) error {
	for _, u := range updates {
		h := u.Header()
		if !inZone(origin, h.Name) {
			return refuse(dns.RcodeNotZone, "%s is outside the zone", h.Name)
		}
		meta := h.Rrtype == dns.TypeANY || h.Rrtype == dns.TypeAXFR || h.Rrtype == dns.TypeIXFR ||
			h.Rrtype == dns.TypeMAILA || h.Rrtype == dns.TypeMAILB || h.Rrtype == dns.TypeOPT ||
			h.Rrtype == dns.TypeTSIG || h.Rrtype == dns.TypeTKEY
		if updateForbidden[h.Rrtype] {
			return refuse(dns.RcodeRefused, "%s records are made by the server", dns.TypeToString[h.Rrtype])
		}
		switch h.Class {
		case dns.ClassINET:
			if meta || h.Rdlength == 0 {
				return refuse(dns.RcodeFormatError, "bad record to add at %s", h.Name)
			}
		case dns.ClassANY:
			if h.Ttl != 0 || h.Rdlength != 0 || (meta && h.Rrtype != dns.TypeANY) {
				return refuse(dns.RcodeFormatError, "bad delete of %s", h.Name)
			}
		case dns.ClassNONE:
			if h.Ttl != 0 || meta {
				return refuse(dns.RcodeFormatError, "bad delete of a record at %s", h.Name)
			}
		default:
			return refuse(dns.RcodeFormatError, "update of class %d", h.Class)
		}
	}
	return nil
}

// applyUpdate makes the changes of an update section that passed
// prescan to rrs (RFC 2136 section 3.4.2). It reports whether anything
// changed, whether the SOA was replaced, and what was done.
func applyUpdate(origin string, rrs []dns.RR, updates []dns.RR) (out []dns.RR, changed, soaSet bool, done []string) {
	for _, u := range updates {
		h := u.Header()
		name := canon(h.Name)
		switch h.Class {
		case dns.ClassINET:
			rr := dns.Copy(u)
			rr.Header().Name = name
			var hasCNAME, hasOther bool
			for _, o := range rrs {
				if o.Header().Name != name {
					continue
				}
				if o.Header().Rrtype == dns.TypeCNAME {
					hasCNAME = true
				} else {
					hasOther = true
				}
			}
			if (h.Rrtype == dns.TypeCNAME && hasOther) || (h.Rrtype != dns.TypeCNAME && hasCNAME) {
				continue // RFC 2136 3.4.2.2: silently ignored
			}
			if h.Rrtype == dns.TypeSOA {
				if name != origin {
					continue
				}
				for i, o := range rrs {
					if o.Header().Rrtype == dns.TypeSOA {
						if dns.IsDuplicate(o, rr) && o.Header().Ttl == h.Ttl {
							break
						}
						rrs[i] = rr
						changed, soaSet = true, true
						done = append(done, "soa "+rr.String())
					}
				}
				continue
			}
			if h.Rrtype == dns.TypeCNAME && hasCNAME {
				// replace the CNAME
				rrs = deleteRRs(rrs, func(o dns.RR) bool {
					return o.Header().Name == name && o.Header().Rrtype == dns.TypeCNAME
				})
			}
			dup := false
			for _, o := range rrs {
				if equalRR(o, rr) {
					dup = true
					if o.Header().Ttl != h.Ttl {
						o.Header().Ttl = h.Ttl
						changed = true
					}
				}
			}
			if !dup {
				rrs = append(rrs, rr)
				changed = true
				done = append(done, "add "+rr.String())
			}
		case dns.ClassANY:
			n := len(rrs)
			rrs = deleteRRs(rrs, func(o dns.RR) bool {
				oh := o.Header()
				if oh.Name != name || oh.Rrtype == dns.TypeSOA || (name == origin && oh.Rrtype == dns.TypeNS) {
					return false
				}
				return h.Rrtype == dns.TypeANY || oh.Rrtype == h.Rrtype
			})
			if len(rrs) < n {
				changed = true
				done = append(done, fmt.Sprintf("del %s %s", name, dns.TypeToString[h.Rrtype]))
			}
		case dns.ClassNONE:
			if h.Rrtype == dns.TypeSOA {
				continue
			}
			if name == origin && h.Rrtype == dns.TypeNS {
				nns := 0
				for _, o := range rrs {
					if o.Header().Name == origin && o.Header().Rrtype == dns.TypeNS {
						nns++
					}
				}
				if nns <= 1 {
					continue // the last NS of the apex stays
				}
			}
			n := len(rrs)
			rrs = deleteRRs(rrs, func(o dns.RR) bool { return equalRR(o, u) })
			if len(rrs) < n {
				changed = true
				c := dns.Copy(u)
				c.Header().Class = dns.ClassINET
				done = append(done, "del "+c.String())
			}
		}
	}
	return rrs, changed, soaSet, done
}

// deleteRRs removes the records del picks from rrs.
func deleteRRs(rrs []dns.RR, del func(dns.RR) bool) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if !del(rr) {
			out = append(out, rr)
		}
	}
	return out
}
