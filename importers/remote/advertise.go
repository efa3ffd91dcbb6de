package remote

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"cheshire/dht"
	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/styx"
)

// DHTResolver finds a key's 9P addresses in its DHT record, through the
// DHT node that node returns (nil while the DHT is stopped). It is the
// Resolve of Options for a node that runs a DHT.
func DHTResolver(node func() *dht.Node) func(ctx context.Context, key ed25519.PublicKey) ([]string, error) {
	return func(ctx context.Context, key ed25519.PublicKey) ([]string, error) {
		n := node()
		if n == nil {
			return nil, fmt.Errorf("dht: %w", plan9.ErrModuleStopped)
		}
		r, err := n.Lookup(ctx, key)
		if err != nil {
			return nil, err
		}
		rec, err := ParseRecord(r.Value)
		if err != nil {
			return nil, fmt.Errorf("dht record of %s: %w", nodekey.Encode(key), err)
		}
		if len(rec.Addrs) == 0 {
			return nil, fmt.Errorf("dht record of %s: no addresses", nodekey.Encode(key))
		}
		return rec.Addrs, nil
	}
}

// An Advertiser builds the node's DHT record: its 9P-over-TLS addresses
// (Advertise if set, else the TLS listeners' of Bound, a wildcard host
// standing for the interfaces' addresses) and the paths exported to
// every key, which are also announced.
type Advertiser struct {
	Advertise []string                 // dial strings to publish instead of the listeners'
	Bound     func() []string          // the listeners' bound dial strings
	Exports   func() ([]string, error) // the paths exported to every key
	Raft      func() string            // the raft group's listener, tls!HOST!PORT, or "" (nil: none)
	Log       *slog.Logger
}

// maxAdvertised bounds the addresses a record carries.
const maxAdvertised = 8

// Advert returns the record to publish and the port to announce its
// exports on; a zero Advert when the node has no 9P-over-TLS address.
func (a *Advertiser) Advert() dht.Advert {
	var ad dht.Advert
	addrs := a.Advertise
	if len(addrs) == 0 {
		for _, b := range a.Bound() {
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
	if len(addrs) > maxAdvertised {
		addrs = addrs[:maxAdvertised]
	}
	for _, s := range addrs {
		if d, err := plan9.ParseDial(s); err == nil && ad.Port == 0 {
			ad.Port, _ = strconv.Atoi(d.Port)
		}
	}
	if len(addrs) == 0 {
		return ad // no 9P over TLS: nothing another node could use
	}
	rec := Record{Addrs: addrs}
	if a.Raft != nil {
		if d, err := plan9.ParseDial(a.Raft()); err == nil {
			if ips := publicIPs(d.Host); len(ips) > 0 {
				rec.Raft = "tls!" + ips[0].String() + "!" + d.Port
			}
		}
	}
	paths, err := a.Exports()
	if err != nil {
		a.Log.Warn("exports not advertised", "err", err)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			rec.Exports = append(rec.Exports, p)
		}
	}
	v, dropped, err := rec.Encode(dht.MaxValue)
	if err != nil {
		a.Log.Warn("dht record not made", "err", err)
		return dht.Advert{}
	}
	if dropped > 0 {
		a.Log.Warn("dht record too small for every export; some are not advertised", "dropped", dropped)
		rec.Exports = rec.Exports[:len(rec.Exports)-dropped]
	}
	ad.Value = v
	if ad.Port != 0 {
		ad.Paths = withParents(rec.Exports)
	}
	return ad
}

// withParents returns paths and, after them, each of their parent
// directories (but /) with a final slash, each once: "/projects/x"
// announces "/projects/" too, so that a walk of #find (importers/find)
// that reaches /projects name by name knows something lies below it.
// The slash keeps a parent apart from an export of the same path.
func withParents(paths []string) []string {
	out := slices.Clone(paths)
	seen := map[string]bool{}
	for _, p := range paths {
		for d := path.Dir(p); d != "/" && d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			out = append(out, d+"/")
		}
	}
	return out
}

// publicIPs is what a listener's host stands for in the record: itself,
// or for a wildcard the interfaces' addresses other than loopback (or
// loopback when there is nothing else).
func publicIPs(host string) []net.IP {
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return plan9.HostIPs(host) // the host itself, or nothing for a name
	}
	var out, loop []net.IP
	for _, ip := range plan9.HostIPs(host) {
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

// ByText returns im with keys as z-base-32 text, as a namespace's
// importer (ns.Importer) takes them.
func (im *Importer) ByText() TextImporter { return TextImporter{im} }

// A TextImporter is an Importer whose keys are z-base-32 text.
type TextImporter struct{ im *Importer }

// Import imports rpath of the node whose key is key (see Importer.Import).
func (t TextImporter) Import(ctx context.Context, key, rpath string, wait bool) (styx.File, error) {
	pk, err := nodekey.Decode(key)
	if err != nil {
		return nil, err // it names the key
	}
	return t.im.Import(ctx, pk, rpath, wait)
}

// State describes the connection to key in one line: "state none", or
// "state STATE since TIME [addr ADDR] [err ERR]".
func (t TextImporter) State(key string) string {
	pk, err := nodekey.Decode(key)
	if err != nil {
		return "state bad-key"
	}
	st, ok := t.im.StatusOf(pk)
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
