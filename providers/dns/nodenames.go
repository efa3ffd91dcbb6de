package dns

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"cheshire/plan9"

	"github.com/miekg/dns"
)

// nodeTTL is the TTL of the addresses SetNodeNames sets: short, as they
// follow the node's addresses.
const nodeTTL = 60

// PublishListeners sets the node's own zone (SetNodeNames) from the
// dial strings of its bound listeners: the apex and "9p" get the hosts
// of the 9P listeners (tcp!, tls!), "https" those of the HTTPS listeners
// (https!). Loopback hosts are included: the zone tells what the node
// listens on. With no such listener, nothing changes.
func (s *Server) PublishListeners(zone string, bound []string) error {
	recs := map[string][]net.IP{}
	for _, a := range bound {
		kind, rest, _ := strings.Cut(a, "!")
		host, _, _ := strings.Cut(rest, "!")
		ips := plan9.HostIPs(host)
		switch kind {
		case "tcp", "tls":
			recs["@"] = append(recs["@"], ips...)
			recs["9p"] = append(recs["9p"], ips...)
		case "https":
			recs["https"] = append(recs["https"], ips...)
			recs["*.app"] = append(recs["*.app"], ips...) // NAME.app.ZONE: the app NAME (apps.go)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	origin, err := zoneName(zone)
	if err != nil {
		return err
	}
	s.apps.mu.Lock()
	s.apps.zone, s.apps.node, s.apps.https = origin, recs, recs["https"]
	all := s.appRecordsLocked(origin)
	s.apps.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setNodeNamesLocked(origin, all); err != nil {
		return err
	}
	return s.publishAllAppsLocked()
}

// SetNodeNames makes zone the node's own zone: it is made if need be,
// and the A and AAAA records of the names in records (absolute, or
// relative to the zone; "@" is the apex) become the addresses given. The
// A and AAAA records of the names given the last time but not this time
// are deleted. Nothing changes, and the serial stays, if the addresses
// are those already served. The names set are kept with the zone, so
// the next call after a restart still removes the old ones.
func (s *Server) SetNodeNames(zone string, records map[string][]net.IP) error {
	origin, err := zoneName(zone)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setNodeNamesLocked(origin, records)
}

// setNodeNamesLocked is SetNodeNames of a checked zone name; s.mu is held.
func (s *Server) setNodeNamesLocked(origin string, records map[string][]net.IP) error {
	var err error
	var names []string
	var add []dns.RR
	for name, ips := range records {
		owner := absName(origin, name)
		if _, ok := dns.IsDomainName(owner); !ok || !dns.IsSubDomain(origin, owner) {
			return fmt.Errorf("dns: node name %q is not in zone %s", name, origin)
		}
		names = append(names, owner)
		for _, ip := range ips {
			hdr := dns.RR_Header{Name: owner, Class: dns.ClassINET, Ttl: nodeTTL}
			if ip4 := ip.To4(); ip4 != nil {
				hdr.Rrtype = dns.TypeA
				add = append(add, &dns.A{Hdr: hdr, A: ip4})
			} else if len(ip) == net.IPv6len {
				hdr.Rrtype = dns.TypeAAAA
				add = append(add, &dns.AAAA{Hdr: hdr, AAAA: ip})
			} else {
				return fmt.Errorf("dns: node name %s: bad address %v", owner, ip)
			}
		}
	}
	slices.Sort(names)
	if s.meta[origin] == nil {
		if err := s.addZoneLocked(origin, defaultZone(origin)); err != nil {
			return err
		}
	}
	err = s.changeLocked(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		managed := make(map[string]bool)
		for _, n := range conf.nodeNames {
			managed[n] = true
		}
		for _, n := range names {
			managed[n] = true
		}
		var old []dns.RR
		out := deleteRRs(rrs, func(rr dns.RR) bool {
			h := rr.Header()
			del := managed[h.Name] && (h.Rrtype == dns.TypeA || h.Rrtype == dns.TypeAAAA)
			if del {
				old = append(old, rr)
			}
			return del
		})
		if sameSet(old, add) && slices.Equal(conf.nodeNames, names) {
			return nil, nil, errUnchanged
		}
		for _, rr := range add {
			out = append(out, dns.Copy(rr))
		}
		conf.nodeNames = names
		bumpSerial(out)
		return out, conf, nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	m := s.meta[origin]
	if err != nil {
		s.zlogf(m, origin, "node names refused: %v", err)
		return err
	}
	s.zlogf(m, origin, "node names: %d names, %d addresses", len(names), len(add))
	return nil
}
