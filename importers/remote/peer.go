package remote

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"cheshire/styx"
)

// Connection states.
const (
	stateConnecting = "connecting"
	stateUp         = "up"
	stateDown       = "down"
)

// peer is the connection to one remote node, remade by run whenever it
// is lost, until its last import is clunked.
type peer struct {
	im     *Importer
	key    ed25519.PublicKey
	name   string
	ctx    context.Context // cancelled when the last import goes
	cancel context.CancelFunc

	mu    sync.Mutex
	refs  int                  // guarded by mu: imports holding the peer
	c     *styx.Client         // guarded by mu: nil unless up
	roots map[string]*styx.Fid // guarded by mu: attached trees of c by aname
	state string               // guarded by mu
	since time.Time            // guarded by mu: when state began
	addr  string               // guarded by mu: of c, or of the last connection
	err   error                // guarded by mu: why the last attempt failed or c was lost
	first chan struct{}        // closed when the first attempt to connect ends
}

// release drops a reference; the last one closes the connection.
func (p *peer) release() {
	p.mu.Lock()
	p.refs--
	last := p.refs == 0
	p.mu.Unlock()
	if last {
		p.im.drop(p)
		p.cancel()
	}
}

func (p *peer) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Key: p.name, State: p.state, Addr: p.addr, Since: p.since, Imports: p.refs}
	if p.err != nil && p.state != stateUp {
		s.Err = p.err.Error()
	}
	return s
}

// run connects, watches the connection until it is lost, and connects
// again, waiting longer after each failed attempt.
func (p *peer) run() {
	defer p.im.wg.Done()
	o := &p.im.opts
	backoff := o.MinBackoff
	for p.ctx.Err() == nil {
		c, addr, err := p.connect()
		if err != nil {
			p.setDown(err, true)
			select {
			case <-p.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, o.MaxBackoff)
			continue
		}
		backoff = o.MinBackoff
		p.setUp(c, addr)
		err = p.watch(c)
		p.setDown(err, false)
	}
	p.mu.Lock()
	p.closeLocked()
	p.mu.Unlock()
}

// connect tries the last address that worked, then those the key
// resolves to now.
func (p *peer) connect() (*styx.Client, string, error) {
	o := &p.im.opts
	ctx, cancel := context.WithTimeout(p.ctx, o.AttemptTimeout)
	defer cancel()
	p.mu.Lock()
	last := p.addr
	p.mu.Unlock()
	var errs []string
	tried := map[string]bool{}
	try := func(addr string) (*styx.Client, error) {
		tried[addr] = true
		nc, err := o.Dial(ctx, addr, p.key)
		if err != nil {
			return nil, err
		}
		c, err := styx.NewClient(ctx, nc)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
		return c, nil
	}
	if last != "" {
		c, err := try(last)
		if err == nil {
			return c, last, nil
		}
		errs = append(errs, err.Error())
	}
	addrs, err := o.Resolve(ctx, p.key)
	if err != nil {
		errs = append(errs, err.Error())
	}
	for _, a := range addrs {
		if tried[a] {
			continue
		}
		c, err := try(a)
		if err == nil {
			return c, a, nil
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		errs = append(errs, "no addresses")
	}
	return nil, "", errors.New(strings.Join(errs, "; "))
}

// watch checks c every Heartbeat until it fails or stops answering, and
// returns why.
func (p *peer) watch(c *styx.Client) error {
	o := &p.im.opts
	t := time.NewTicker(o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			c.Close()
			return p.ctx.Err()
		case <-c.Done():
			return fmt.Errorf("connection lost: %w", c.Err())
		case <-t.C:
			if err := p.ping(c); err != nil {
				c.Close()
				return err
			}
		}
	}
}

// ping asks c for something and waits HeartbeatTimeout for an answer;
// any answer, an error included, shows the node is there.
func (p *peer) ping(c *styx.Client) error {
	o := &p.im.opts
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	p.mu.Lock()
	var f *styx.Fid
	for _, r := range p.roots {
		f = r
		break
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if f != nil {
			f.Stat(ctx)
			return
		}
		if r, err := c.Attach(ctx, nil, o.Uname, ""); err == nil {
			r.Clunk(ctx)
		}
	}()
	select {
	case <-done:
		return nil
	case <-c.Done():
		return fmt.Errorf("connection lost: %w", c.Err())
	case <-time.After(o.HeartbeatTimeout):
		return fmt.Errorf("no answer in %v", o.HeartbeatTimeout)
	}
}

func (p *peer) setUp(c *styx.Client, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		c.Close()
		return
	}
	p.c, p.addr, p.err = c, addr, nil
	p.roots = make(map[string]*styx.Fid)
	p.state, p.since = stateUp, p.im.opts.Now()
	p.endFirstLocked()
	p.im.log.Info("remote node connected", "key", p.name, "addr", addr)
}

// setDown records why the node cannot be reached; attempt says whether
// an attempt to connect failed (else a connection was lost).
func (p *peer) setDown(err error, attempt bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return
	}
	first := p.state != stateDown || p.err == nil || p.err.Error() != err.Error()
	p.closeLocked()
	p.err = err
	p.state, p.since = stateDown, p.im.opts.Now()
	p.endFirstLocked()
	switch {
	case !attempt:
		p.im.log.Warn("remote node lost; reconnecting", "key", p.name, "addr", p.addr, "err", err)
	case first:
		p.im.log.Warn("remote node unreachable", "key", p.name, "err", err)
	}
}

// endFirstLocked ends the wait for the first attempt, if it is on.
func (p *peer) endFirstLocked() {
	select {
	case <-p.first:
	default:
		close(p.first)
	}
}

// closeLocked closes the connection, if any; its files fail from now on.
func (p *peer) closeLocked() {
	if p.c != nil {
		p.c.Close()
		p.c = nil
	}
	p.roots = make(map[string]*styx.Fid)
}

// client returns the connection. While the first attempt to reach the
// node is under way (the peer is connecting: once an attempt has ended
// it is up or down) it waits for it; otherwise a node that is not up is
// an error at once.
func (p *peer) client(ctx context.Context) (*styx.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.c == nil {
		if err := p.ctx.Err(); err != nil {
			return nil, unreachable(p.name, errors.New("import closed"))
		}
		if p.state != stateConnecting {
			return nil, unreachable(p.name, p.err)
		}
		p.mu.Unlock()
		select {
		case <-p.first:
		case <-p.ctx.Done():
		case <-ctx.Done():
			p.mu.Lock()
			return nil, ctx.Err()
		}
		p.mu.Lock()
	}
	return p.c, nil
}

// attached returns the fid of tree aname on the current connection,
// attaching it on first use.
func (p *peer) attached(ctx context.Context, aname string) (*styx.Fid, error) {
	c, err := p.client(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	f := p.roots[aname]
	p.mu.Unlock()
	if f != nil {
		return f, nil
	}
	f, err = c.Attach(ctx, nil, p.im.opts.Uname, aname)
	if err != nil {
		return nil, p.wrap(c, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != c {
		// The connection was lost meanwhile.
		return nil, unreachable(p.name, errors.New("connection lost"))
	}
	if other := p.roots[aname]; other != nil {
		go f.Clunk(context.Background())
		return other, nil
	}
	p.roots[aname] = f
	return f, nil
}

// wrap turns the error of an operation on c into "remote node
// unreachable" when c has failed, and leaves the node's own errors be.
func (p *peer) wrap(c *styx.Client, err error) error {
	if err == nil {
		return nil
	}
	if cerr := c.Err(); cerr != nil {
		return unreachable(p.name, fmt.Errorf("connection lost (%v)", cerr))
	}
	return err
}

// qidPath is the qid.path of an import's root before it is reached.
func qidPath(key ed25519.PublicKey, aname string) uint64 {
	h := fnv.New64a()
	h.Write(key)
	h.Write([]byte(aname))
	return h.Sum64()
}
