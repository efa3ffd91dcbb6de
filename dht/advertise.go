package dht

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"cheshire/plan9"
)

// Advert is what a node advertises: Value is published under its key
// (at most MaxValue bytes), each of Paths is announced on Port.
//
// A nil Value publishes nothing (the record published before, if any,
// stays until it expires); an empty, non-nil one is published as such.
// Port 0 announces the node's UDP port (implied_port).
type Advert struct {
	Value []byte
	Paths []string
	Port  int
}

// Periods of the advertising loop.
const (
	// advertMinBackoff is the wait before the first retry of an advert
	// that fewer than K nodes stored (or whose announce reached none);
	// each retry waits twice as long, up to advertMaxBackoff.
	advertMinBackoff = time.Second
	advertMaxBackoff = 5 * time.Minute
	// advertBootTimeout bounds the bootstrap before the first advert.
	advertBootTimeout = 30 * time.Second
)

// advertState is what the advertising loop did last, for status. It
// belongs to the module's memory, so a new instance shows the last one's
// until its first round.
type advertState struct {
	paths  []string      // the advert's paths, each once
	port   int           // and their port
	seq    int64         // of the last advert's put that a node stored; 0 if none
	stored int           // nodes that stored it
	err    string        // the last round's failures, "" if none
	retry  time.Duration // the wait before the next retry, 0 if none
}

// Advertise sets where the module gets its advert; each running instance
// publishes it after it starts and again after Readvertise. Call before
// or after Start: a running instance publishes the new advert at once.
// f is called from the instance's goroutine, once each round: it must not
// block for long. With f nil, the module advertises nothing more: the
// paths it announced are no longer reannounced, and the last record
// published stays (and is republished hourly) until another Publish.
func (m *Module) Advertise(f func() Advert) {
	m.mu.Lock()
	m.advert = f
	m.mu.Unlock()
	m.Readvertise()
}

// Readvertise tells the running instance (if any) that the advert changed:
// it publishes again at once. Never blocks.
func (m *Module) Readvertise() {
	m.mu.Lock()
	i := m.cur
	m.mu.Unlock()
	if i != nil {
		select {
		case i.wake <- struct{}{}:
		default: // a round is already due
		}
	}
}

// advertFunc returns the module's advert func, nil if none.
func (m *Module) advertFunc() func() Advert {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.advert
}

// advertise is the advertising loop of an instance: it bootstraps the
// node, then advertises after the start, after each Readvertise and, with
// a growing wait, after a round that fewer than K nodes stored, until
// Stop. Once K nodes stored the record, the node's hourly republish and
// reannounce keep it.
func (i *instance) advertise() {
	defer close(i.done)
	n := i.n
	bctx, cancel := context.WithTimeout(i.ctx, advertBootTimeout)
	if err := n.Bootstrap(bctx); err != nil && i.ctx.Err() == nil {
		n.log.Info("dht: advert: bootstrap", "err", err)
	}
	cancel()
	select {
	case <-i.wake: // the first round takes the advert as it is now
	default:
	}
	full := true // a round after the start or Readvertise: everything again
	var backoff time.Duration
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	defer i.m.mem.setAdvert(func(s *advertState) { s.retry = 0 })
	for {
		retry := i.advertRound(full)
		if i.ctx.Err() != nil {
			return
		}
		if retry {
			backoff = min(max(2*backoff, i.minBackoff), i.maxBackoff)
			timer.Reset(backoff)
		} else {
			backoff = 0
			timer.Stop()
		}
		i.m.mem.setAdvert(func(s *advertState) { s.retry = backoff })
		select {
		case <-i.ctx.Done():
			return
		case <-i.wake:
			full = true
		case <-timer.C:
			full = false
		}
	}
}

// advertRound advertises once: it publishes the value (a retry, !full,
// skips a value stored by K nodes already, and one put before with the
// same value is republished with its seq) and announces the paths (a
// retry, those announced already). It reports whether to retry: fewer
// than K nodes stored the value, or an announce reached no node.
func (i *instance) advertRound(full bool) (retry bool) {
	n, mem := i.n, i.m.mem
	f := i.m.advertFunc()
	var a Advert
	if f != nil {
		a = f()
	}
	paths := uniq(a.Paths)
	i.dropPaths(paths)
	if f == nil {
		mem.setAdvert(func(s *advertState) { *s = advertState{seq: s.seq, stored: s.stored} })
		return false
	}
	var errs []string
	fail := func(err error) {
		if i.ctx.Err() != nil {
			return // stopping
		}
		errs = append(errs, err.Error())
		if errors.Is(err, ErrTooBig) {
			n.log.Error("dht: advert: value refused", "err", err)
			return
		}
		n.log.Warn("dht: advert", "err", err)
	}

	// The value.
	own := n.own()
	same := own != nil && bytes.Equal(own.value, a.Value)
	if a.Value != nil && (full || !same || own.stored < K) {
		ctx, cancel := context.WithTimeout(i.ctx, opTimeout)
		var stored int
		var err error
		if same && own.stored > 0 {
			stored, err = n.Republish(ctx)
		} else {
			stored, err = n.Publish(ctx, a.Value)
		}
		cancel()
		if stored > 0 {
			if o := n.own(); o != nil {
				mem.setAdvert(func(s *advertState) { s.seq, s.stored = o.seq, stored })
				n.log.Info("dht: advert published", "seq", o.seq, "stored", stored)
			}
		}
		switch {
		case err != nil:
			fail(err)
			retry = retry || !errors.Is(err, ErrTooBig)
		case stored < K:
			retry = true
		}
	}

	// The paths.
	announce := paths
	if a.Port < 0 || a.Port > 65535 {
		if len(paths) > 0 {
			fail(fmt.Errorf("dht: advert: bad port %d", a.Port))
		}
		announce = nil
	}
	for _, p := range announce {
		if port, ok := i.ok[p]; !full && ok && port == a.Port {
			continue
		}
		if err := checkPath(p); err != nil {
			fail(fmt.Errorf("dht: advert %q: %w", p, err))
			continue
		}
		ctx, cancel := context.WithTimeout(i.ctx, opTimeout)
		_, err := n.Announce(ctx, p, a.Port)
		cancel()
		if err != nil {
			delete(i.ok, p)
			fail(err)
			retry = true
			continue
		}
		i.ok[p] = a.Port
	}

	msg := strings.ReplaceAll(strings.Join(errs, "; "), "\n", " ")
	mem.setAdvert(func(s *advertState) { s.paths, s.port, s.err = paths, a.Port, msg })
	return retry
}

// dropPaths stops reannouncing the paths of the last advert that are not
// in paths.
func (i *instance) dropPaths(paths []string) {
	mem := i.m.mem
	mem.mu.Lock()
	defer mem.mu.Unlock()
	for _, p := range mem.advert.paths {
		if !slices.Contains(paths, p) {
			delete(mem.announced, p)
			delete(i.ok, p)
		}
	}
	mem.advert.paths = paths
}

// uniq returns paths without repeats, in their first order.
func uniq(paths []string) []string {
	seen := make(map[string]bool, len(paths))
	var out []string
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// setAdvert changes the advert state under the lock.
func (m *memory) setAdvert(f func(s *advertState)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.advert)
}

// advertText is the advert's lines of status: "advert published seq N
// stored S", "advert error ...", "advert retry 4s", "advert paths P..."
// and "advert port N".
func (m *memory) advertText() string {
	m.mu.Lock()
	s := m.advert
	m.mu.Unlock()
	var b strings.Builder
	if s.seq != 0 {
		fmt.Fprintf(&b, "advert published seq %d stored %d\n", s.seq, s.stored)
	}
	if s.err != "" {
		fmt.Fprintf(&b, "advert error %s\n", s.err)
	}
	if s.retry > 0 {
		fmt.Fprintf(&b, "advert retry %v\n", s.retry)
	}
	if len(s.paths) > 0 {
		fmt.Fprintf(&b, "advert paths %s\n", strings.ReplaceAll(plan9.Join(s.paths), "\n", " "))
		fmt.Fprintf(&b, "advert port %d\n", s.port)
	}
	return b.String()
}
