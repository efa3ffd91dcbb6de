package dns

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"cheshire/atomicfile"

	"github.com/miekg/dns"
)

// Names of apps (/apps, issue 16's ingress by name). `app NAME FQDN` in
// /dns/ctl maps FQDN, a name in a zone the node serves, to the app NAME:
// the zone answers for it with the node's HTTPS addresses (those of
// PublishListeners), and AppOf tells the node's HTTPS listener which app
// a request for that host is for. Every app has a name of its own as
// well, NAME.app.ZONE in the node's zone, answered by a wildcard
// (*.app.ZONE) with the same addresses. The mapping is kept in DIR/apps.

// appsFile is the file of the mapping, in the server's directory: lines
// of "FQDN NAME".
const appsFile = "apps"

// appLabel is what an app's name may be (the apps provider's rule).
var appLabel = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// appNames is the server's mapping and what it needs to publish it.
type appNames struct {
	mu    sync.Mutex
	names map[string]string   // guarded by mu: canonical FQDN → app
	zone  string              // guarded by mu: the node's zone ("" until PublishListeners)
	node  map[string][]net.IP // guarded by mu: the node zone's records of PublishListeners
	https []net.IP            // guarded by mu: the HTTPS listeners' addresses
}

// loadApps reads DIR/apps.
func (s *Server) loadApps() error {
	s.apps.names = map[string]string{}
	data, err := os.ReadFile(filepath.Join(s.dir, appsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dns: apps: %w", err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 || !appLabel.MatchString(f[1]) {
			return fmt.Errorf("dns: %s line %d: bad line %q: want FQDN NAME", appsFile, i+1, l)
		}
		s.apps.names[canon(f[0])] = f[1]
	}
	return nil
}

// saveAppsLocked writes DIR/apps; a.mu is held.
func (s *Server) saveAppsLocked() error {
	var b strings.Builder
	for _, fqdn := range slices.Sorted(maps.Keys(s.apps.names)) {
		fmt.Fprintf(&b, "%s %s\n", fqdn, s.apps.names[fqdn])
	}
	return atomicfile.Write(filepath.Join(s.dir, appsFile), []byte(b.String()), 0600)
}

// AppOf returns the app a request for host (a name, any case, with or
// without the final dot, no port) is for: one mapped by `app`, or NAME
// of NAME.app.ZONE in the node's zone.
func (s *Server) AppOf(host string) (string, bool) {
	if host == "" || net.ParseIP(host) != nil {
		return "", false
	}
	h := canon(host)
	s.apps.mu.Lock()
	defer s.apps.mu.Unlock()
	if name, ok := s.apps.names[h]; ok {
		return name, true
	}
	if s.apps.zone != "" {
		if label, ok := strings.CutSuffix(h, ".app."+s.apps.zone); ok && appLabel.MatchString(label) {
			return label, true
		}
	}
	return "", false
}

// Mapped reports whether host was mapped to its app by `app` (rather
// than by the node zone's wildcard).
func (s *Server) Mapped(host string) bool {
	s.apps.mu.Lock()
	defer s.apps.mu.Unlock()
	_, ok := s.apps.names[canon(host)]
	return ok
}

// appLines is the /dns/ctl status of the mapping.
func (s *Server) appLines() string {
	s.apps.mu.Lock()
	defer s.apps.mu.Unlock()
	var b strings.Builder
	for _, fqdn := range slices.Sorted(maps.Keys(s.apps.names)) {
		fmt.Fprintf(&b, "app %s %s\n", s.apps.names[fqdn], fqdn)
	}
	return b.String()
}

// zoneOf returns the served zone name lies in (the longest), per has.
func zoneOf(name string, zones []string) string {
	best := ""
	for _, z := range zones {
		if dns.IsSubDomain(z, name) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

// appCmd is `app NAME FQDN` (add) or `unapp FQDN` of /dns/ctl.
func (s *Server) appCmd(add bool) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		t, _ := ctx.Value(rootTxnKey{}).(*rootTxn)
		if t == nil {
			return errors.New("dns: command outside a batch")
		}
		if !add {
			fqdn := canon(args[0])
			s.apps.mu.Lock()
			_, ok := s.apps.names[fqdn]
			s.apps.mu.Unlock()
			if !ok && !t.appAdded(fqdn) {
				return fmt.Errorf("dns: no app is named %s", fqdn)
			}
			t.ops = append(t.ops, rootOp{app: true, fqdn: fqdn})
			return nil
		}
		name, fqdn := args[0], canon(args[1])
		if !appLabel.MatchString(name) {
			return fmt.Errorf("dns: bad app name %q: want a-z, 0-9 and -, at most 63", name)
		}
		if _, ok := dns.IsDomainName(fqdn); !ok || strings.Contains(fqdn, "*") {
			return fmt.Errorf("dns: bad name %q", args[1])
		}
		var zones []string
		for _, z := range s.Zones() {
			if t.has(s, z) {
				zones = append(zones, z)
			}
		}
		for z, e := range t.exists {
			if e && !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
		}
		if zoneOf(fqdn, zones) == "" {
			return fmt.Errorf("dns: %s is in no zone served here: %w", fqdn, errNoZone)
		}
		t.ops = append(t.ops, rootOp{app: true, add: true, fqdn: fqdn, appName: name})
		return nil
	}
}

// appAdded reports whether the batch maps fqdn so far.
func (t *rootTxn) appAdded(fqdn string) bool {
	added := false
	for _, op := range t.ops {
		if op.app && op.fqdn == fqdn {
			added = op.add
		}
	}
	return added
}

// applyAppLocked carries out an app op of a batch; s.mu is held.
func (s *Server) applyAppLocked(op rootOp) error {
	s.apps.mu.Lock()
	if op.add {
		s.apps.names[op.fqdn] = op.appName
	} else {
		delete(s.apps.names, op.fqdn)
	}
	err := s.saveAppsLocked()
	s.apps.mu.Unlock()
	if err != nil {
		return err
	}
	z := zoneOf(op.fqdn, s.Zones())
	if z == "" {
		return nil // its zone went: nothing to answer
	}
	return s.publishAppsLocked(z)
}

// appRecordsLocked are the managed A/AAAA names of zone z: the node's
// own (if z is the node's zone) and the apps mapped into z, all at the
// node's HTTPS addresses. s.apps.mu is held.
func (s *Server) appRecordsLocked(z string) map[string][]net.IP {
	recs := map[string][]net.IP{}
	if z == s.apps.zone {
		for k, v := range s.apps.node {
			recs[k] = v
		}
	}
	if len(s.apps.https) == 0 {
		return recs
	}
	for fqdn := range s.apps.names {
		if zoneOf(fqdn, []string{z}) == z {
			recs[fqdn] = s.apps.https
		}
	}
	return recs
}

// publishAppsLocked sets zone z's managed names; s.mu is held.
func (s *Server) publishAppsLocked(z string) error {
	s.apps.mu.Lock()
	recs := s.appRecordsLocked(z)
	s.apps.mu.Unlock()
	// With no HTTPS address known yet, the zone's app names are gone
	// until PublishListeners gives one.
	return s.setNodeNamesLocked(z, recs)
}

// publishAllAppsLocked republishes every zone an app is mapped into.
func (s *Server) publishAllAppsLocked() error {
	s.apps.mu.Lock()
	zones := s.Zones()
	touched := map[string]bool{}
	for fqdn := range s.apps.names {
		if z := zoneOf(fqdn, zones); z != "" && z != s.apps.zone {
			touched[z] = true
		}
	}
	s.apps.mu.Unlock()
	var errs []error
	for z := range touched {
		if err := s.publishAppsLocked(z); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
