// Package dns serves DNS zones as files and over the network: each zone
// is a master file that can be read, rewritten whole, or changed a record
// at a time through a ctl file, and every change is answered by the next
// query. Zones can be signed online (DNSSEC, ECDSA P-256, NSEC), updated
// by RFC 2136 UPDATE messages signed with TSIG, and queried over UDP, TCP
// and DNS over HTTPS (RFC 8484). See README.md for the file tree.
package dns

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/atomicfile"
	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"

	"github.com/miekg/dns"
)

// DefaultUDPSize is the largest UDP reply sent by default (the EDNS
// buffer size of DNS flag day 2020).
const DefaultUDPSize = 1232

// Options configure a Server.
type Options struct {
	Owner   string           // owner of the files (default "none")
	Log     *slog.Logger     // where changes and errors are logged besides the log files (default: discarded)
	Now     func() time.Time // the clock of signatures and TSIG (default time.Now)
	UDPSize int              // largest UDP reply (default DefaultUDPSize; at least 512)

	TCPConns     int // TCP connections served at once (default DefaultTCPConns)
	TCPPerClient int // TCP connections at once from one client (default DefaultTCPPerClient)

	RRL RRL // UDP response rate limiting (default off)
}

// A Server holds the zones, serves them as files (it is a styx.Attacher)
// and answers queries for them.
type Server struct {
	dir  string
	opts Options
	log  *slog.Logger
	now  func() time.Time

	zones atomic.Pointer[served] // the zones served and their reply cache, swapped whole at each change

	mu   sync.Mutex           // serializes changes
	meta map[string]*zoneMeta // guarded by mu: by origin

	nocache bool         // do not use the reply cache (benchmark)
	saves   atomic.Int64 // zone saves made (tests)

	gmu      sync.Mutex         // guards the gate of changes through the files:
	halted   bool               // the module is stopped: the files change nothing
	live     context.Context    // done when the module stops
	stopLive context.CancelFunc // ends live

	files    *synth.Server
	zonesDir *synth.Dir
	events   *synth.Log // the server's log: zones added and removed, network errors
	stats    stats
	tcp      *tcpConns // the TCP connections served, of all listeners

	apps appNames // names of apps (apps.go)

	rrlp         atomic.Pointer[rrl] // response rate limiting, nil when off
	cookieSecret [32]byte            // keys server cookies; made at New

	// changed tells watchers of the files of a change made by an
	// UPDATE (module.Env's Changed), nil when no one is to be told.
	changed atomic.Pointer[func(op, path, newPath string)]
}

// tellZoneChanged tells those watching the files that zone origin's
// records were changed other than through the files.
func (s *Server) tellZoneChanged(origin string) {
	if f := s.changed.Load(); f != nil {
		(*f)("write", "/zones/"+zoneFileName(origin)+"/zone", "")
	}
}

// zoneMeta is what a Server keeps of a zone besides its versions.
type zoneMeta struct {
	log *synth.Log
}

var _ styx.Attacher = (*Server)(nil)

// zoneLogKeep is the history each zone's log file keeps.
const zoneLogKeep = 64 << 10

// New returns a Server keeping its zones in dir (made if need be), with
// the zones found there loaded.
func New(dir string, opts Options) (*Server, error) {
	if opts.Owner == "" {
		opts.Owner = "none"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.UDPSize == 0 {
		opts.UDPSize = DefaultUDPSize
	}
	opts.UDPSize = min(max(opts.UDPSize, dns.MinMsgSize), dns.MaxMsgSize)
	if opts.TCPConns <= 0 {
		opts.TCPConns = DefaultTCPConns
	}
	if opts.TCPPerClient <= 0 {
		opts.TCPPerClient = DefaultTCPPerClient
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{dir: dir, opts: opts, log: log, now: opts.Now, meta: make(map[string]*zoneMeta), events: synth.NewLog(0)}
	s.live, s.stopLive = context.WithCancel(context.Background())
	s.tcp = newTCPConns(opts.TCPConns, opts.TCPPerClient, func() { s.stats.tcpShed.Add(1) })
	s.SetRRL(opts.RRL)
	rand.Read(s.cookieSecret[:])
	s.zones.Store(&served{zones: zoneSet{}, cache: newRespCache()})
	if err := os.MkdirAll(filepath.Join(dir, "zones"), 0700); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	root := synth.NewDir("dns", 0555)
	s.zonesDir = synth.NewDir("zones", 0555)
	root.Add(synth.CtlBatch("ctl", 0664, s.rootCmds(), s.rootStatus, s.rootBatch))
	root.Add(s.zonesDir)
	root.Add(s.events.File("log", 0444))
	root.Add(synth.String("stats", 0444, s.statsText))
	s.files = synth.NewServer(root, synth.WithOwner(opts.Owner), synth.WithClock(opts.Now))
	if err := s.load(); err != nil {
		return nil, err
	}
	if err := s.loadApps(); err != nil {
		return nil, err
	}
	return s, nil
}

// SetRRL sets the response rate limiting of UDP replies (the zero RRL
// turns it off), starting the accounts afresh.
func (s *Server) SetRRL(cfg RRL) { s.rrlp.Store(newRRL(cfg)) }

// Attach serves the file tree.
func (s *Server) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return s.files.Attach(ctx, uname, aname, auth)
}

// logf writes a line to the server's log file and the slog logger.
func (s *Server) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(s.events, "%s %s\n", s.now().UTC().Format(time.RFC3339), msg)
	s.log.Info(msg, "module", "dns")
}

// zlogf writes a line to zone origin's log (and the slog logger).
func (s *Server) zlogf(m *zoneMeta, origin, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if m != nil {
		fmt.Fprintf(m.log, "%s %s\n", s.now().UTC().Format(time.RFC3339), msg)
	}
	s.log.Info(msg, "module", "dns", "zone", origin)
}

// metaOf returns the zoneMeta of origin, or nil.
func (s *Server) metaOf(origin string) *zoneMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta[origin]
}

// zone returns the current version of zone origin, or nil.
func (s *Server) zone(origin string) *zone { return s.zones.Load().zones[origin] }

// publish makes z (or, if z is nil, no zone) the version of origin that
// queries see. s.mu is held.
func (s *Server) publish(origin string, z *zone) {
	old := s.zones.Load().zones
	zs := make(zoneSet, len(old)+1)
	for k, v := range old {
		zs[k] = v
	}
	if z == nil {
		delete(zs, origin)
	} else {
		zs[origin] = z
	}
	// A new reply cache goes with the new zones: a query that began
	// with the old ones stores its reply in the old cache.
	s.zones.Store(&served{zones: zs, cache: newRespCache()})
}

// Zones returns the names of the zones served, sorted.
func (s *Server) Zones() []string {
	zs := s.zones.Load().zones
	names := make([]string, 0, len(zs))
	for n := range zs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// zoneName checks and canonicalizes the name of a zone given by a user.
func zoneName(name string) (string, error) {
	origin := canon(name)
	if !validZoneName(origin) {
		return "", fmt.Errorf("dns: bad zone name %q: want letters, digits, - and _ in dot-separated labels", name)
	}
	return origin, nil
}

// errNoZone is the error of a change to a zone that is not served.
var errNoZone = plan9.Error("dns: no such zone")

// AddZone starts serving a new zone named name with a default SOA and
// NS record.
func (s *Server) AddZone(name string) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addZoneLocked(origin, defaultZone(origin))
}

// addZoneLocked adds zone origin with records rrs. s.mu is held.
func (s *Server) addZoneLocked(origin string, rrs []dns.RR) error {
	if s.meta[origin] != nil {
		return plan9.ErrExist
	}
	z, err := newZone(origin, rrs, &zoneConf{})
	if err != nil {
		return err
	}
	if err := s.saveZone(z, true); err != nil {
		return err
	}
	m, err := s.addFiles(origin)
	if err != nil {
		return err
	}
	s.meta[origin] = m
	s.publish(origin, z)
	s.logf("zone add %s", origin)
	s.zlogf(m, origin, "zone added")
	return nil
}

// RemoveZone stops serving zone name and deletes its files.
func (s *Server) RemoveZone(name string) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeZoneLocked(origin)
}

// removeZoneLocked removes zone origin. s.mu is held.
func (s *Server) removeZoneLocked(origin string) error {
	m := s.meta[origin]
	if m == nil {
		return errNoZone
	}
	base := filepath.Join(s.dir, "zones", zoneFileName(origin))
	for _, p := range []string{base + ".zone", base + ".conf"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove zone: %w", err)
		}
	}
	s.publish(origin, nil)
	delete(s.meta, origin)
	s.zonesDir.Remove(zoneFileName(origin))
	s.zlogf(m, origin, "zone removed")
	m.log.Close()
	s.logf("zone rm %s", origin)
	return nil
}

// change makes a new version of zone origin from f's records and
// settings, saves it and publishes it, all or nothing. f gets a copy of
// the records and settings that it may change. what describes the
// change in the zone's log.
func (s *Server) change(origin string, f func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changeLocked(origin, f)
}

func (s *Server) changeLocked(origin string, f func(rrs []dns.RR, conf *zoneConf) ([]dns.RR, *zoneConf, error)) error {
	old := s.zone(origin)
	if old == nil || s.meta[origin] == nil {
		return errNoZone
	}
	rrs, conf, err := f(old.records(), old.conf.clone())
	if err != nil {
		return err
	}
	return s.commitLocked(old, rrs, conf, false)
}

// sameConf reports whether two settings are the same.
func sameConf(a, b *zoneConf) bool {
	if a.dnssec != b.dnssec || len(a.keys) != len(b.keys) || len(a.tsig) != len(b.tsig) ||
		!slices.Equal(a.nodeNames, b.nodeNames) {
		return false
	}
	for i := range a.keys {
		if a.keys[i] != b.keys[i] {
			return false
		}
	}
	for k, v := range a.tsig {
		if b.tsig[k] != v {
			return false
		}
	}
	return true
}

// SetZone replaces the records of zone name with those of text, a zone
// in master-file format. A zone that does not parse or check is refused
// and the old one stays.
func (s *Server) SetZone(name string, text []byte) error {
	return s.setZone(context.Background(), name, text, false)
}

// setZone is SetZone; files tells a write of the zone file, refused
// while the module is stopped.
func (s *Server) setZone(ctx context.Context, name string, text []byte, files bool) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	rrs, err := parseZone(origin, string(text))
	if err != nil {
		if m := s.metaOf(origin); m != nil {
			s.zlogf(m, origin, "zone write refused: %v", err)
		}
		return err
	}
	var n int
	var serial uint32
	err = s.editZone(ctx, origin, files, func(_ context.Context, t *zoneTxn) error {
		t.rrs = rrs
		n = len(rrs)
		for _, rr := range rrs {
			if soa, ok := rr.(*dns.SOA); ok {
				serial = soa.Serial
			}
		}
		t.done = append(t.done, fmt.Sprintf("zone written: %d records, serial %d", n, serial))
		return nil
	})
	return err
}

// ZoneText returns zone name in master-file format. The slice is shared:
// callers must not change it.
func (s *Server) ZoneText(name string) ([]byte, error) {
	origin, err := zoneName(name)
	if err != nil {
		return nil, err
	}
	z := s.zone(origin)
	if z == nil {
		return nil, errNoZone
	}
	return z.text(), nil
}

// The files of the data directory: DIR/zones/NAME.zone holds a zone's
// records in master-file format, DIR/zones/NAME.conf (mode 0600) its
// settings and keys as JSON.

// confFile is the JSON form of a zoneConf.
type confFile struct {
	DNSSEC bool          `json:"dnssec"`
	Keys   []keyFile     `json:"keys,omitempty"`
	TSIG   []tsigKeyFile `json:"tsig,omitempty"`
	// NodeNames are the names whose addresses SetNodeNames set last.
	NodeNames []string `json:"node_names,omitempty"`
}

type keyFile struct {
	DNSKEY  string    `json:"dnskey"`  // the DNSKEY record
	Private string    `json:"private"` // BIND private-key format
	Created time.Time `json:"created"`
	Retired bool      `json:"retired,omitempty"`
}

type tsigKeyFile struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	Secret    string `json:"secret"`
}

// saveZone writes z's records to its file and, if conf, its settings
// to theirs, both through atomicfile and renamed into place together.
func (s *Server) saveZone(z *zone, conf bool) error {
	base := filepath.Join(s.dir, "zones", zoneFileName(z.origin))
	var files []*atomicfile.Staged
	abort := func(err error) error {
		for _, f := range files {
			f.Abort()
		}
		return fmt.Errorf("save zone: %w", err)
	}
	if conf {
		data, err := confText(z.conf)
		if err != nil {
			return abort(err)
		}
		f, err := atomicfile.Stage(base+".conf", data, 0600)
		if err != nil {
			return abort(err)
		}
		files = append(files, f)
	}
	f, err := atomicfile.Stage(base+".zone", z.text(), 0644)
	if err != nil {
		return abort(err)
	}
	files = append(files, f)
	if err := atomicfile.CommitAll(files); err != nil {
		return fmt.Errorf("save zone: %w", err)
	}
	s.saves.Add(1)
	return nil
}

// confText is the JSON text of the settings c.
func confText(c *zoneConf) ([]byte, error) {
	f := confFile{DNSSEC: c.dnssec, NodeNames: c.nodeNames}
	for _, k := range c.keys {
		f.Keys = append(f.Keys, keyFile{DNSKEY: k.pub.String(), Private: k.pub.PrivateKeyString(k.priv), Created: k.created, Retired: k.retired})
	}
	for _, k := range c.tsig {
		f.TSIG = append(f.TSIG, tsigKeyFile{Name: k.name, Algorithm: k.algorithm, Secret: k.secret})
	}
	slices.SortFunc(f.TSIG, func(a, b tsigKeyFile) int { return strings.Compare(a.Name, b.Name) })
	data, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// loadConf reads the settings of zone origin; a missing file means none.
func (s *Server) loadConf(origin string) (*zoneConf, error) {
	c := &zoneConf{tsig: make(map[string]tsigKey)}
	data, err := os.ReadFile(filepath.Join(s.dir, "zones", zoneFileName(origin)+".conf"))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	var f confFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	c.dnssec = f.DNSSEC
	c.nodeNames = f.NodeNames
	for _, kf := range f.Keys {
		rr, err := dns.NewRR(kf.DNSKEY)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		pub, ok := rr.(*dns.DNSKEY)
		if !ok || pub.Algorithm != dns.ECDSAP256SHA256 {
			return nil, fmt.Errorf("dns: key %q: not an algorithm 13 DNSKEY", kf.DNSKEY)
		}
		priv, err := pub.NewPrivateKey(kf.Private)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", pub.KeyTag(), err)
		}
		ec, ok := priv.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("dns: key %d: not an ECDSA key", pub.KeyTag())
		}
		c.keys = append(c.keys, &zoneKey{pub: pub, priv: ec, created: kf.Created, retired: kf.Retired})
	}
	for _, t := range f.TSIG {
		c.tsig[canon(t.Name)] = tsigKey{name: canon(t.Name), algorithm: t.Algorithm, secret: t.Secret}
	}
	if c.dnssec && len(c.keys) == 0 {
		return nil, errors.New("dns: dnssec on without a key")
	}
	return c, nil
}

// load serves the zones kept in the data directory.
func (s *Server) load() error {
	matches, err := filepath.Glob(filepath.Join(s.dir, "zones", "*.zone"))
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range matches {
		origin := canon(strings.TrimSuffix(filepath.Base(p), ".zone"))
		if !validZoneName(origin) {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("dns: load zone: %w", err)
		}
		rrs, err := parseZone(origin, string(data))
		if err != nil {
			return fmt.Errorf("dns: load zone %s: %w", p, err)
		}
		conf, err := s.loadConf(origin)
		if err != nil {
			return fmt.Errorf("dns: load zone %s settings: %w", origin, err)
		}
		z, err := newZone(origin, rrs, conf)
		if err != nil {
			return fmt.Errorf("dns: load zone %s: %w", p, err)
		}
		m, err := s.addFiles(origin)
		if err != nil {
			return fmt.Errorf("dns: load zone %s: %w", origin, err)
		}
		s.meta[origin] = m
		s.publish(origin, z)
	}
	return nil
}
