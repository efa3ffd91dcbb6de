package dns

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"cheshire/synth"
)

// rootCmds are the messages of /dns/ctl.
func (s *Server) rootCmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "zone add", Args: 3, Usage: "zone add NAME", Run: func(ctx context.Context, args []string) error {
			return s.AddZone(args[0])
		}},
		{Name: "zone rm", Args: 3, Usage: "zone rm NAME", Run: func(ctx context.Context, args []string) error {
			return s.RemoveZone(args[0])
		}},
	}
}

// rootStatus is the text of /dns/ctl: a line per zone.
func (s *Server) rootStatus(ctx context.Context) string {
	var b strings.Builder
	zs := s.zones.Load().zones
	for _, name := range s.Zones() {
		z := zs[name]
		dnssec := "off"
		if z.sig != nil {
			dnssec = "on"
		}
		fmt.Fprintf(&b, "zone %s serial %d records %d dnssec %s\n", zoneFileName(name), z.soa.Serial, len(z.rrs), dnssec)
	}
	return b.String()
}

// addFiles adds the directory of zone origin to /dns/zones.
func (s *Server) addFiles(origin string) (*zoneMeta, error) {
	d := synth.NewDir(zoneFileName(origin), 0555)
	m := &zoneMeta{log: synth.NewLog(zoneLogKeep)}
	conf := func() *zoneConf {
		if z := s.zone(origin); z != nil {
			return z.conf
		}
		return &zoneConf{}
	}
	d.Add(synth.ReadWrite("zone", 0664,
		func(ctx context.Context) ([]byte, error) { return s.ZoneText(origin) },
		func(ctx context.Context, data []byte) error { return s.SetZone(origin, data) }))
	d.Add(synth.Ctl("ctl", 0664, s.zoneCmds(origin), func(ctx context.Context) string { return s.zoneStatus(origin) }))
	d.Add(synth.String("dnskey", 0444, func(ctx context.Context) string { return conf().dnskeyText() }))
	d.Add(synth.String("ds", 0444, func(ctx context.Context) string { return conf().dsText() }))
	d.Add(synth.String("anchor", 0444, func(ctx context.Context) string {
		c := conf()
		if len(c.keys) == 0 {
			return ""
		}
		return c.anchorText(origin)
	}))
	d.Add(m.log.File("log", 0444))
	if err := s.zonesDir.Add(d); err != nil {
		return nil, fmt.Errorf("zone files: %w", err)
	}
	return m, nil
}

// zoneStatus is the text of a zone's ctl file.
func (s *Server) zoneStatus(origin string) string {
	z := s.zone(origin)
	if z == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "serial %d\nrecords %d\n", z.soa.Serial, len(z.rrs))
	if z.conf.dnssec {
		b.WriteString("dnssec on\n")
	} else {
		b.WriteString("dnssec off\n")
	}
	for _, k := range z.conf.keys {
		state := "active"
		if k.retired {
			state = "retired"
		}
		fmt.Fprintf(&b, "key %d %s %s\n", k.pub.KeyTag(), state, k.created.UTC().Format("2006-01-02T15:04:05Z"))
	}
	names := make([]string, 0, len(z.conf.tsig))
	for n := range z.conf.tsig {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "tsig %s %s\n", n, strings.TrimSuffix(z.conf.tsig[n].algorithm, "."))
	}
	return b.String()
}

// zoneCmds are the messages of a zone's ctl file.
func (s *Server) zoneCmds(origin string) []synth.Cmd {
	return []synth.Cmd{
		{Name: "add", Usage: "add NAME TTL TYPE RDATA...", Run: func(ctx context.Context, args []string) error {
			if len(args) < 4 {
				return errors.New("usage: add NAME TTL TYPE RDATA...")
			}
			return s.AddRecord(origin, strings.Join(args, " "))
		}},
		{Name: "del", Usage: "del NAME [TYPE [RDATA...]]", Run: func(ctx context.Context, args []string) error {
			if len(args) < 1 {
				return errors.New("usage: del NAME [TYPE [RDATA...]]")
			}
			return s.DeleteRecords(origin, args[0], args[1:])
		}},
		{Name: "dnssec", Args: 2, Usage: "dnssec on|off", Run: func(ctx context.Context, args []string) error {
			switch args[0] {
			case "on":
				return s.SetDNSSEC(origin, true)
			case "off":
				return s.SetDNSSEC(origin, false)
			}
			return errors.New("usage: dnssec on|off")
		}},
		{Name: "rollkey", Usage: "rollkey [done]", Run: func(ctx context.Context, args []string) error {
			switch {
			case len(args) == 0:
				return s.RollKey(origin)
			case len(args) == 1 && args[0] == "done":
				return s.FinishRoll(origin)
			}
			return errors.New("usage: rollkey [done]")
		}},
		{Name: "tsig add", Args: 5, Usage: "tsig add KEYNAME ALGORITHM SECRET", Run: func(ctx context.Context, args []string) error {
			return s.AddTSIG(origin, args[0], args[1], args[2])
		}},
		{Name: "tsig rm", Args: 3, Usage: "tsig rm KEYNAME", Run: func(ctx context.Context, args []string) error {
			return s.RemoveTSIG(origin, args[0])
		}},
	}
}

// absName makes name, given in a ctl message, absolute: "@" is the apex
// and a name without a final dot is relative to it.
func absName(origin, name string) string {
	switch {
	case name == "@":
		return origin
	case dns.IsFqdn(name):
		return canon(name)
	}
	return canon(name + "." + origin)
}

// AddRecord adds one record, given in master-file format (names relative
// to the zone unless they end in a dot), to zone origin.
func (s *Server) AddRecord(name, text string) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	rr, err := parseRecord(origin, text)
	if err != nil {
		return err
	}
	if rr.Header().Rrtype == dns.TypeSOA {
		return errors.New("use the zone file to change the SOA")
	}
	err = s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		bumpSerial(rrs)
		return append(rrs, rr), conf, nil
	})
	s.logChange(origin, err, "add %s", rr)
	return err
}

// logChange logs a change, or its refusal, in zone origin's log.
func (s *Server) logChange(origin string, err error, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	if err != nil {
		s.zlogf(s.metaOf(origin), origin, "refused: %s: %v", what, err)
		return
	}
	s.zlogf(s.metaOf(origin), origin, "%s", what)
}

// DeleteRecords deletes the records of zone origin at name: all of them
// (but the SOA), those of a type, or the one record that matches rdata.
func (s *Server) DeleteRecords(zname, name string, typeAndData []string) error {
	origin, err := zoneName(zname)
	if err != nil {
		return err
	}
	owner := absName(origin, name)
	var rtype uint16
	var match dns.RR
	if len(typeAndData) > 0 {
		t, ok := dns.StringToType[strings.ToUpper(typeAndData[0])]
		if !ok {
			return fmt.Errorf("unknown type %q", typeAndData[0])
		}
		if t == dns.TypeSOA {
			return errors.New("the SOA cannot be deleted")
		}
		rtype = t
	}
	if len(typeAndData) > 1 {
		match, err = parseRecord(origin, owner+" 0 "+strings.Join(typeAndData, " "))
		if err != nil {
			return err
		}
	}
	n := 0
	err = s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		out := rrs[:0]
		for _, rr := range rrs {
			h := rr.Header()
			del := h.Name == owner && h.Rrtype != dns.TypeSOA &&
				(rtype == 0 || h.Rrtype == rtype) &&
				(match == nil || dns.IsDuplicate(rr, match))
			if del {
				n++
				continue
			}
			out = append(out, rr)
		}
		if n == 0 {
			return nil, nil, errors.New("no such record")
		}
		bumpSerial(out)
		return out, conf, nil
	})
	s.logChange(origin, err, "del %s %s: %d records", owner, strings.Join(typeAndData, " "), n)
	return err
}

// SetDNSSEC turns signing of zone name on or off. Turning it on the
// first time makes the zone's key; the key is kept when it is turned
// off, so the trust anchor stays the same.
func (s *Server) SetDNSSEC(name string, on bool) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	err = s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		conf.dnssec = on
		if on && len(conf.keys) == 0 {
			k, err := newKey(origin, s.now())
			if err != nil {
				return nil, nil, err
			}
			conf.keys = append(conf.keys, k)
		}
		bumpSerial(rrs)
		return rrs, conf, nil
	})
	state := "off"
	if on {
		state = "on"
	}
	s.logChange(origin, err, "dnssec %s", state)
	return err
}

// RollKey makes a new signing key for zone name. The old keys are
// retired: they stay published and sign the DNSKEY RRset until
// FinishRoll, so that trust anchors and DS records naming them keep
// working while they are replaced.
func (s *Server) RollKey(name string) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	var tag uint16
	err = s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		k, err := newKey(origin, s.now())
		if err != nil {
			return nil, nil, err
		}
		keys := make([]*zoneKey, 0, len(conf.keys)+1)
		for _, old := range conf.keys {
			r := *old
			r.retired = true
			keys = append(keys, &r)
		}
		conf.keys = append(keys, k)
		tag = k.pub.KeyTag()
		bumpSerial(rrs)
		return rrs, conf, nil
	})
	s.logChange(origin, err, "rollkey: new key %d", tag)
	return err
}

// FinishRoll removes the retired keys of zone name.
func (s *Server) FinishRoll(name string) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	n := 0
	err = s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		keys := conf.keys[:0:0]
		for _, k := range conf.keys {
			if k.retired {
				n++
				continue
			}
			keys = append(keys, k)
		}
		if n == 0 {
			return nil, nil, errors.New("no retired key")
		}
		conf.keys = keys
		bumpSerial(rrs)
		return rrs, conf, nil
	})
	s.logChange(origin, err, "rollkey done: %d keys removed", n)
	return err
}

// AddTSIG allows the TSIG key keyname (algorithm such as hmac-sha256,
// secret in base64) to update zone name.
func (s *Server) AddTSIG(name, keyname, algorithm, secret string) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	alg, ok := tsigAlgorithms[strings.TrimSuffix(strings.ToLower(algorithm), ".")]
	if !ok {
		return fmt.Errorf("unknown algorithm %q (want hmac-sha256, hmac-sha512, ...)", algorithm)
	}
	if raw, err := base64.StdEncoding.DecodeString(secret); err != nil || len(raw) == 0 {
		return errors.New("secret is not base64")
	}
	kn := canon(keyname)
	if _, ok := dns.IsDomainName(kn); !ok {
		return fmt.Errorf("bad key name %q", keyname)
	}
	err = s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		conf.tsig[kn] = tsigKey{name: kn, algorithm: alg, secret: secret}
		return rrs, conf, nil
	})
	s.logChange(origin, err, "tsig add %s %s", kn, strings.TrimSuffix(alg, "."))
	return err
}

// RemoveTSIG withdraws the TSIG key keyname from zone name.
func (s *Server) RemoveTSIG(name, keyname string) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	kn := canon(keyname)
	err = s.change(origin, func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error) {
		if _, ok := conf.tsig[kn]; !ok {
			return nil, nil, errors.New("no such key")
		}
		delete(conf.tsig, kn)
		return rrs, conf, nil
	})
	s.logChange(origin, err, "tsig rm %s", kn)
	return err
}
