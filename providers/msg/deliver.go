// Delivery: sending to peers over their #msg service, and taking in
// what they send, within each peer's limits.

package msg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// Send sends text on topic name: to the peer to, or with to "*" to every
// peer subscribed to it. A message to one peer returns the delivery's
// error; one to all is delivered to those that can be reached, the
// failures counted in stats.
func (m *Msg) Send(ctx context.Context, name, to, text string) error {
	if !validTopic(name) {
		return fmt.Errorf("%w %q", ErrBadTopic, name)
	}
	if err := m.checkText(text); err != nil {
		return err
	}
	m.mu.Lock()
	var targets []*peer
	if to == "*" {
		for _, p := range m.peers {
			if p.subs[name] {
				targets = append(targets, p)
			}
		}
	} else if p := m.peers[to]; p != nil {
		targets = append(targets, p)
	}
	m.mu.Unlock()
	if to != "*" && len(targets) == 0 {
		return fmt.Errorf("%w %s", ErrNoSuchKey, short(to))
	}
	errs := m.fanOut(ctx, targets, func(ctx context.Context, p *peer) error {
		return m.writePeer(ctx, p, "deliver", name+" "+text)
	})
	if to != "*" {
		return errs[0]
	}
	return nil
}

// fanOut runs do for each peer at once and returns their errors, in the
// order of peers; each delivery counts as sent or failed.
func (m *Msg) fanOut(ctx context.Context, peers []*peer, do func(ctx context.Context, p *peer) error) []error {
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
			defer cancel()
			errs[i] = do(dctx, p)
			m.mu.Lock()
			if errs[i] != nil {
				p.st.Failed++
				if errors.Is(errs[i], plan9.ErrUnreachable) {
					p.synced = false // a peer that was away is told the topics again
				}
			} else {
				p.st.Sent++
			}
			m.mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}

// writePeer writes text to the file name (deliver, sub, unsub) of p's
// #msg service. The deliver file is kept open between messages; a file
// on a connection that was lost is opened again once.
func (m *Msg) writePeer(ctx context.Context, p *peer, name, text string) error {
	if m.o.Dial == nil {
		return fmt.Errorf("msg: %w: no transport", plan9.ErrUnreachable)
	}
	p.dmu.Lock()
	defer p.dmu.Unlock()
	for attempt := 0; ; attempt++ {
		cached := p.out != nil && name == "deliver"
		f, err := p.open(ctx, m.o.Dial, name)
		if err != nil {
			return fmt.Errorf("msg: to %s: %w", short(p.key), err)
		}
		_, err = f.Write(ctx, []byte(text), 0)
		if name != "deliver" {
			f.Clunk()
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, plan9.ErrUnreachable) {
			return err // the peer's own refusal; the file stays open
		}
		p.drop()
		if !cached || attempt > 0 {
			return fmt.Errorf("msg: to %s: %w", short(p.key), err)
		}
	}
}

// open returns p's file name open for writing: the kept deliver file,
// or a new one. dmu is held.
func (p *peer) open(ctx context.Context, dial func(ctx context.Context, key string) (styx.File, error), name string) (styx.File, error) {
	if name == "deliver" && p.out != nil {
		return p.out, nil
	}
	if p.root == nil {
		r, err := dial(ctx, p.key)
		if err != nil {
			return nil, err
		}
		p.root = r
	}
	f, err := styx.WalkFile(ctx, p.root, []string{name})
	if err != nil {
		if errors.Is(err, plan9.ErrUnreachable) {
			p.dropRoot()
		}
		return nil, err
	}
	if _, err := f.Open(ctx, styx.OWRITE); err != nil {
		f.Clunk()
		return nil, err
	}
	if name == "deliver" {
		p.out = f
	}
	return f, nil
}

// drop closes p's files. dmu is held.
func (p *peer) drop() {
	if p.out != nil {
		p.out.Clunk()
		p.out = nil
	}
	p.dropRoot()
}

func (p *peer) dropRoot() {
	if p.root != nil {
		p.root.Clunk()
		p.root = nil
	}
}

// resyncLoop tells peers not yet told this node's topics, every Resync.
func (m *Msg) resyncLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.o.Resync)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.resync(m.ctx)
	}
}

// resync tells each peer not synced the topics this node subscribes to.
func (m *Msg) resync(ctx context.Context) {
	m.mu.Lock()
	var todo []*peer
	for _, p := range m.peers {
		if !p.synced && !p.telling && ctx.Err() == nil {
			p.telling = true
			todo = append(todo, p)
		}
	}
	m.wg.Add(len(todo))
	topics := make([]string, 0, len(m.topics))
	for n := range m.topics {
		topics = append(topics, n)
	}
	m.mu.Unlock()
	slices.Sort(topics)
	for _, p := range todo {
		go func() {
			defer m.wg.Done()
			var err error
			if len(topics) > 0 {
				dctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
				err = m.writePeer(dctx, p, "sub", strings.Join(topics, " "))
				cancel()
			}
			m.mu.Lock()
			p.synced, p.telling = err == nil, false
			m.mu.Unlock()
		}()
	}
}
