package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	dhtlib "cheshire/dht"
	"cheshire/importers/remote"
	"cheshire/nodekey"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/providers/dht"
	"cheshire/styx"
)

// importer makes a remote.Importer the namespaces' ns.Importer: keys
// are z-base-32 text.
type importer struct{ im *remote.Importer }

var _ ns.Importer = importer{}

func (i importer) Import(ctx context.Context, key, rpath string, wait bool) (styx.File, error) {
	pk, err := nodekey.Decode(key)
	if err != nil {
		return nil, err // it names the key
	}
	return i.im.Import(ctx, pk, rpath, wait)
}

func (i importer) State(key string) string {
	pk, err := nodekey.Decode(key)
	if err != nil {
		return "state bad-key"
	}
	st, ok := i.im.StatusOf(pk)
	if !ok {
		return "state none"
	}
	s := "state " + st.State + " since " + st.Since.UTC().Format(time.RFC3339)
	if st.Addr != "" {
		s += " addr " + st.Addr
	}
	if st.Err != "" {
		s += " err " + plan9.Quote(st.Err)
	}
	return s
}

// resolver finds a key's 9P addresses in its DHT record, through the
// running dht module.
func resolver(mod *dht.Module) func(ctx context.Context, key ed25519.PublicKey) ([]string, error) {
	return func(ctx context.Context, key ed25519.PublicKey) ([]string, error) {
		n := mod.Node()
		if n == nil {
			return nil, errors.New("dht: module stopped")
		}
		r, err := n.Lookup(ctx, key)
		if err != nil {
			return nil, err
		}
		rec, err := remote.ParseRecord(r.Value)
		if err != nil {
			return nil, fmt.Errorf("dht record of %s: %w", nodekey.Encode(key), err)
		}
		if len(rec.Addrs) == 0 {
			return nil, fmt.Errorf("dht record of %s: no addresses", nodekey.Encode(key))
		}
		return rec.Addrs, nil
	}
}

// advertiser builds the node's DHT record: its 9P-over-TLS addresses
// (those given with --advertise, else the TLS listeners', a wildcard host
// standing for the interfaces' addresses) and the paths exported to
// every key, which are also announced.
type advertiser struct {
	advertise []string        // --advertise dial strings
	bound     func() []string // the listeners' bound dial strings
	m         *ns.Manager
	log       *slog.Logger
}

func (a *advertiser) advert() dht.Advert {
	var ad dht.Advert
	addrs := a.advertise
	if len(addrs) == 0 {
		for _, b := range a.bound() {
			if !strings.HasPrefix(b, "tls!") {
				continue
			}
			d, err := plan9.ParseDial(b)
			if err != nil {
				continue
			}
			for _, ip := range publicIPs(d.Host) {
				addrs = append(addrs, "tls!"+ip.String()+"!"+d.Port)
			}
		}
	}
	if len(addrs) > 8 {
		addrs = addrs[:8]
	}
	for _, s := range addrs {
		if d, err := plan9.ParseDial(s); err == nil && ad.Port == 0 {
			ad.Port, _ = strconv.Atoi(d.Port)
		}
	}
	if len(addrs) == 0 {
		return ad // no 9P over TLS: nothing another node could use
	}
	var rec remote.Record
	rec.Addrs = addrs
	es, err := a.m.Exports()
	if err != nil {
		a.log.Warn("exports not advertised", "err", err)
	}
	seen := map[string]bool{}
	for _, e := range es {
		if e.To == "*" && !seen[e.Path] {
			seen[e.Path] = true
			rec.Exports = append(rec.Exports, e.Path)
		}
	}
	v, dropped, err := rec.Encode(dhtlib.MaxValue)
	if err != nil {
		a.log.Warn("dht record not made", "err", err)
		return dht.Advert{}
	}
	if dropped > 0 {
		a.log.Warn("dht record too small for every export; some are not advertised", "dropped", dropped)
		rec.Exports = rec.Exports[:len(rec.Exports)-dropped]
	}
	ad.Value = v
	if ad.Port != 0 {
		ad.Paths = rec.Exports
	}
	return ad
}

// publicIPs is what a listener's host stands for in the record: itself,
// or for a wildcard the interfaces' addresses other than loopback (or
// loopback when there is nothing else).
func publicIPs(host string) []net.IP {
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return hostIPs(host) // the host itself, or nothing for a name
	}
	var out, loop []net.IP
	for _, ip := range hostIPs(host) {
		switch {
		case ip.IsLoopback():
			loop = append(loop, ip)
		case ip.IsLinkLocalUnicast():
		default:
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		return loop
	}
	return out
}
