package dns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"cheshire/synth"

	"github.com/miekg/dns"
)

// rootCmds are the messages of /dns/ctl, applied by rootBatch.
func (s *Server) rootCmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "zone add", Min: 1, Max: 1, Usage: "zone add NAME", Run: s.rootCmd(true)},
		{Name: "zone rm", Min: 1, Max: 1, Usage: "zone rm NAME", Run: s.rootCmd(false)},
		{Name: "app", Min: 2, Max: 2, Usage: "app NAME FQDN", Run: s.appCmd(true)},
		{Name: "unapp", Min: 1, Max: 1, Usage: "unapp FQDN", Run: s.appCmd(false)},
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
	b.WriteString(s.appLines())
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
		func(ctx context.Context, data []byte) error { return s.setZone(ctx, origin, data, true) }))
	d.Add(synth.CtlBatch("ctl", 0664, s.zoneCmds(), func(ctx context.Context) string { return s.zoneStatus(origin) }, s.zoneBatch(origin)))
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

// zoneCmds are the messages of a zone's ctl file, applied by zoneBatch
// to the zone's working copy.
func (s *Server) zoneCmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "add", Min: 4, Max: -1, Usage: "add NAME TTL TYPE RDATA...", Run: txnCmd(func(t *zoneTxn, args []string) error {
			return t.add(strings.Join(args, " "))
		})},
		{Name: "del", Min: 1, Max: -1, Usage: "del NAME [TYPE [RDATA...]]", Run: txnCmd(func(t *zoneTxn, args []string) error {
			return t.del(args[0], args[1:])
		})},
		{Name: "dnssec", Min: 1, Max: 1, Usage: "dnssec on|off", Run: txnCmd(func(t *zoneTxn, args []string) error {
			switch args[0] {
			case "on":
				return t.setDNSSEC(true, s.now())
			case "off":
				return t.setDNSSEC(false, s.now())
			}
			return errors.New("usage: dnssec on|off")
		})},
		{Name: "rollkey", Max: 1, Usage: "rollkey [done]", Run: txnCmd(func(t *zoneTxn, args []string) error {
			switch {
			case len(args) == 0:
				return t.rollKey(s.now())
			case args[0] == "done":
				return t.finishRoll()
			}
			return errors.New("usage: rollkey [done]")
		})},
		// The line carries the key's secret.
		{Name: "tsig add", Min: 3, Max: 3, Secret: true, Usage: "tsig add KEYNAME ALGORITHM SECRET", Run: txnCmd(func(t *zoneTxn, args []string) error {
			return t.addTSIG(args[0], args[1], args[2])
		})},
		{Name: "tsig rm", Min: 1, Max: 1, Usage: "tsig rm KEYNAME", Run: txnCmd(func(t *zoneTxn, args []string) error {
			return t.removeTSIG(args[0])
		})},
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

// edit is editZone for the Go methods below: one change, not gated by
// the module.
func (s *Server) edit(name string, f func(t *zoneTxn) error) error {
	return s.editZone(context.Background(), name, false, func(_ context.Context, t *zoneTxn) error { return f(t) })
}

// AddRecord adds one record, given in master-file format (names relative
// to the zone unless they end in a dot), to zone name.
func (s *Server) AddRecord(name, text string) error {
	return s.edit(name, func(t *zoneTxn) error { return t.add(text) })
}

// DeleteRecords deletes the records of zone zname at name: all of them
// (but the SOA), those of a type, or the one record that matches rdata.
func (s *Server) DeleteRecords(zname, name string, typeAndData []string) error {
	return s.edit(zname, func(t *zoneTxn) error { return t.del(name, typeAndData) })
}

// SetDNSSEC turns signing of zone name on or off. Turning it on the
// first time makes the zone's key; the key is kept when it is turned
// off, so the trust anchor stays the same.
func (s *Server) SetDNSSEC(name string, on bool) error {
	return s.edit(name, func(t *zoneTxn) error { return t.setDNSSEC(on, s.now()) })
}

// RollKey makes a new signing key for zone name. The old keys are
// retired: they stay published and sign the DNSKEY RRset until
// FinishRoll, so that trust anchors and DS records naming them keep
// working while they are replaced.
func (s *Server) RollKey(name string) error {
	return s.edit(name, func(t *zoneTxn) error { return t.rollKey(s.now()) })
}

// FinishRoll removes the retired keys of zone name.
func (s *Server) FinishRoll(name string) error {
	return s.edit(name, func(t *zoneTxn) error { return t.finishRoll() })
}

// AddTSIG allows the TSIG key keyname (algorithm such as hmac-sha256,
// secret in base64) to update zone name.
func (s *Server) AddTSIG(name, keyname, algorithm, secret string) error {
	return s.edit(name, func(t *zoneTxn) error { return t.addTSIG(keyname, algorithm, secret) })
}

// RemoveTSIG withdraws the TSIG key keyname from zone name.
func (s *Server) RemoveTSIG(name, keyname string) error {
	return s.edit(name, func(t *zoneTxn) error { return t.removeTSIG(keyname) })
}
