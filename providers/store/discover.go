package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HoldersPath is what a node that offers space announces in the DHT
// (on its 9P-over-TLS port), and what discovery looks up: a name no
// export can have, as exports are absolute paths.
const HoldersPath = "#store/holders"

const (
	// discoverTimeout bounds one round of discovery.
	discoverTimeout = 30 * time.Second
	// maxFound bounds the holders discovered that are kept.
	maxFound = 64
	// probes bounds the addresses dialled at once.
	probes = 8
	// forgetAfter is how many rounds a holder no longer found is kept.
	forgetAfter = 3
)

// Offering tells whether the node offers space to other nodes: its DHT
// advert then announces HoldersPath.
func (s *Store) Offering() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offer.Total > 0
}

// parseSize reads a number of bytes: digits, then optionally k, m, g
// or t (powers of 1024, either case) and then optionally "b" or "ib",
// or just "b".
func parseSize(v string) (int64, error) {
	bad := fmt.Errorf("store: bad size %q: want bytes, or a number and K, M, G or T", cut(v, 40))
	t := strings.TrimSuffix(strings.ToLower(v), "b")
	t, ib := strings.CutSuffix(t, "i")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'k':
			shift = 10
		case 'm':
			shift = 20
		case 'g':
			shift = 30
		case 't':
			shift = 40
		}
		if shift > 0 {
			t = t[:len(t)-1]
		} else if ib {
			return 0, bad // "12ib"
		}
	}
	if t == "" || strings.TrimLeft(t, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n > (1<<62)>>shift {
		return 0, fmt.Errorf("store: size %q out of range", cut(v, 40))
	}
	return n << shift, nil
}

// parseOffer reads the arguments of offer: "off", or SIZE [per-key
// SIZE]; the per-key quota is at most the total, and the total by
// default.
func parseOffer(args []string) (quota, error) {
	if len(args) == 1 && args[0] == "off" {
		return quota{}, nil
	}
	if len(args) != 1 && (len(args) != 3 || args[1] != "per-key") {
		return quota{}, fmt.Errorf("store: bad offer: want offer SIZE [per-key SIZE] or offer off")
	}
	total, err := parseSize(args[0])
	if err != nil {
		return quota{}, err
	}
	if total == 0 {
		return quota{}, fmt.Errorf("store: bad offer: the size must be positive (or offer off)")
	}
	q := quota{Total: total, PerKey: total}
	if len(args) == 3 {
		if q.PerKey, err = parseSize(args[2]); err != nil {
			return quota{}, err
		}
		if q.PerKey > total {
			return quota{}, fmt.Errorf("store: bad offer: per-key %d is more than the total %d", q.PerKey, total)
		}
	}
	return q, nil
}

// setOffer offers space to other nodes (q.Total 0: none), saves it and
// has the node's advert follow.
func (s *Store) setOffer(args []string) error {
	q, err := parseOffer(args)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.offer = q
	s.mu.Unlock()
	if err := s.save(); err != nil {
		return err
	}
	if s.opts.Advertise != nil {
		s.opts.Advertise()
	}
	return nil
}

// setDiscover turns discovery on or off; on starts a round at once.
func (s *Store) setDiscover(v string) error {
	if v != "on" && v != "off" {
		return fmt.Errorf("store: bad discover %q: want on or off", cut(v, 20))
	}
	if v == "on" && s.opts.Find == nil {
		return fmt.Errorf("store: discovery needs the dht, which this node does not run")
	}
	s.mu.Lock()
	s.discover, s.discoSet = v == "on", true
	s.mu.Unlock()
	if err := s.save(); err != nil {
		return err
	}
	if v == "on" {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// discoverer looks holders up in the DHT every DiscoverEvery, and when
// discovery is turned on, while it is on.
func (s *Store) discoverer() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.DiscoverEvery)
	defer t.Stop()
	for {
		s.mu.Lock()
		on := s.discover
		s.mu.Unlock()
		if on {
			if err := s.discoverOnce(s.ctx); err != nil && s.ctx.Err() == nil {
				s.log.Info("store: discovery", "err", err)
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// discoverOnce asks the DHT for the nodes that offer space and learns
// the key of each by dialing it (the key is what places fragments and
// what the connection to the holder proves).
func (s *Store) discoverOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	addrs, err := s.opts.Find(ctx)
	if err != nil {
		return fmt.Errorf("store: discover: %w", err)
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if len(addrs) > 4*maxFound {
		addrs = addrs[:4*maxFound]
	}
	res := make([]probe, len(addrs))
	sem := make(chan struct{}, probes)
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			k, err := s.opts.Probe(ctx, a)
			res[i] = probe{key: k, at: time.Now()}
			if err != nil {
				res[i] = probe{err: err.Error(), at: time.Now()}
			}
		}()
	}
	wg.Wait()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range addrs {
		s.probed[a] = res[i]
		k := res[i].key
		if k == "" || k == s.opts.Self {
			continue
		}
		if f := s.found[k]; f != nil {
			f.addr, f.seen = a, now
		} else if len(s.found) < maxFound {
			s.found[k] = &found{addr: a, seen: now}
		}
	}
	for k, f := range s.found {
		if now.Sub(f.seen) > forgetAfter*s.opts.DiscoverEvery {
			delete(s.found, k)
		}
	}
	for a, p := range s.probed {
		if now.Sub(p.at) > forgetAfter*s.opts.DiscoverEvery {
			delete(s.probed, a)
		}
	}
	return nil
}

// discoveredText is the status lines of discovery: whether it is on,
// and each holder found, its address and state (down: the last use of
// it, or the last dial of its address, failed).
func (s *Store) discoveredText(b *strings.Builder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Find == nil {
		fmt.Fprintf(b, "discover off (no dht)\n")
	} else {
		fmt.Fprintf(b, "discover %s\n", onOff(s.discover))
	}
	for _, k := range slices.Sorted(maps.Keys(s.found)) {
		f := s.found[k]
		state, why := "up", s.lastFail[k]
		if p := s.probed[f.addr]; p.err != "" {
			why = p.err
		}
		if why != "" {
			state = "down"
		}
		fmt.Fprintf(b, "discovered %s %s %s", k, f.addr, state)
		if why != "" {
			fmt.Fprintf(b, " err %q", cut(why, 100))
		}
		b.WriteByte('\n')
	}
}

// offerText is the status lines of the offer: its quotas, and the
// bytes each key holds here.
func (s *Store) offerText(b *strings.Builder) {
	s.mu.Lock()
	o := s.offer
	s.mu.Unlock()
	used := s.disk.usedBy()
	var others int64
	for k, n := range used {
		if k != s.opts.Self {
			others += n
		}
	}
	if o.Total > 0 {
		fmt.Fprintf(b, "offer %d per-key %d others %d\n", o.Total, o.PerKey, others)
	} else {
		fmt.Fprintf(b, "offer off others %d\n", others)
	}
	for _, k := range slices.Sorted(maps.Keys(used)) {
		if k == s.opts.Self {
			continue
		}
		kind := "guest"
		if s.trusted(k) {
			kind = "trusted"
		}
		fmt.Fprintf(b, "key %s %s held %d\n", k, kind, used[k])
	}
}
