package dht

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
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

// advertState is what the advertising loop did last, for AdvertStatus.
// It belongs to the Memory, so a new node shows the last one's until its
// first round.
type advertState struct {
	paths  []string      // the advert's paths, each once
	port   int           // and their port
	seq    int64         // of the last advert's put that a node stored; 0 if none
	stored int           // nodes that stored it
	err    string        // the last round's failures, "" if none
	retry  time.Duration // the wait before the next retry, 0 if none
}

// An Advertiser advertises a node: Run publishes the advert its
// function gives and announces its paths, and again when told. It may
// run the nodes of one Memory one after another (a module's instances),
// one at a time. The zero value has no advert function.
type Advertiser struct {
	mu     sync.Mutex
	advert func() Advert // guarded by mu: nil until Set
	wake   chan struct{} // guarded by mu: the running loop's, nil if none
}

// Set sets where the advert comes from; a running loop publishes the new
// advert at once. f is called from the loop's goroutine, once each round:
// it must not block for long. With f nil, nothing more is advertised: the
// paths announced for the advert are no longer reannounced, and the last
// record published stays (and is republished hourly) until another
// Publish.
func (a *Advertiser) Set(f func() Advert) {
	a.mu.Lock()
	a.advert = f
	a.mu.Unlock()
	a.Wake()
}

// Wake tells the running loop (if any) that the advert changed: it
// publishes again at once. Never blocks.
func (a *Advertiser) Wake() {
	a.mu.Lock()
	wake := a.wake
	a.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default: // a round is already due
		}
	}
}

// advertFunc returns the advert func, nil if none.
func (a *Advertiser) advertFunc() func() Advert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.advert
}

// Run is the advertising loop of n, until ctx ends: it bootstraps the
// node (30 s at most), then advertises, again after each Wake and, with
// a growing wait, after a round that fewer than K nodes stored. Once K
// nodes stored the record, the node's hourly republish and reannounce
// keep it. What it did last is n's AdvertStatus.
func (a *Advertiser) Run(ctx context.Context, n *Node) {
	wake := make(chan struct{}, 1)
	a.mu.Lock()
	a.wake = wake
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.wake == wake {
			a.wake = nil
		}
		a.mu.Unlock()
	}()
	bctx, cancel := context.WithTimeout(ctx, advertBootTimeout)
	if err := n.Bootstrap(bctx); err != nil && ctx.Err() == nil {
		n.log.Info("dht: advert: bootstrap", "err", err)
	}
	cancel()
	select {
	case <-wake: // the first round takes the advert as it is now
	default:
	}
	r := &advertRun{a: a, n: n, ctx: ctx, ok: make(map[string]int)}
	full := true // a round after the start or Wake: everything again
	var backoff time.Duration
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	defer n.mem.setAdvert(func(s *advertState) { s.retry = 0 })
	for {
		retry := r.round(full)
		if ctx.Err() != nil {
			return
		}
		if retry {
			backoff = min(max(2*backoff, n.advertMin), n.advertMax)
			timer.Reset(backoff)
		} else {
			backoff = 0
			timer.Stop()
		}
		n.mem.setAdvert(func(s *advertState) { s.retry = backoff })
		select {
		case <-ctx.Done():
			return
		case <-wake:
			full = true
		case <-timer.C:
			full = false
		}
	}
}

// advertRun is one Run of an Advertiser.
type advertRun struct {
	a   *Advertiser
	n   *Node
	ctx context.Context
	// ok are the paths announced (to some node) by this run, with their
	// port
	ok map[string]int
}

// round advertises once: it publishes the value (a retry, !full,
// skips a value stored by K nodes already, and one put before with the
// same value is republished with its seq) and announces the paths (a
// retry, those announced already). It reports whether to retry: fewer
// than K nodes stored the value, or an announce reached no node.
func (i *advertRun) round(full bool) (retry bool) {
	n, mem := i.n, i.n.mem
	f := i.a.advertFunc()
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
func (i *advertRun) dropPaths(paths []string) {
	mem := i.n.mem
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
func (m *Memory) setAdvert(f func(s *advertState)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.advert)
}

// AdvertStatus is what an Advertiser's loop did last (see
// Node.AdvertStatus).
type AdvertStatus struct {
	Seq    int64         // of the advert's last put that a node stored; 0 if none
	Stored int           // nodes that stored it
	Err    string        // the last round's failures, "; " between them; "" if none
	Retry  time.Duration // the wait before the next try, 0 if none
	Paths  []string      // the advert's paths, each once
	Port   int           // their port (0: the node's UDP port)
}

// AdvertStatus returns what the advertising of the node's Memory did
// last: a new node shows its predecessor's until its first round.
func (n *Node) AdvertStatus() AdvertStatus {
	m := n.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.advert
	return AdvertStatus{Seq: s.seq, Stored: s.stored, Err: s.err, Retry: s.retry, Paths: slices.Clone(s.paths), Port: s.port}
}
