package raftgroup

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// A follower forwards what only the leader can do (apply a command,
// change the membership) to the leader, on a connection of the raft
// listener that starts with fwdByte. Each request and answer is a
// 4-byte big-endian length and that much JSON; a connection carries one
// request at a time and goes back to a small pool after its answer.

const maxFrame = 1 << 20

// request is a forwarded operation.
type request struct {
	Op    string `json:"op"` // apply, add, remove, demote
	Part  string `json:"part,omitempty"`
	Cmd   []byte `json:"cmd,omitempty"`
	Now   int64  `json:"now,omitempty"` // the proposer's clock, for apply
	ID    string `json:"id,omitempty"`
	Addr  string `json:"addr,omitempty"`
	Voter bool   `json:"voter,omitempty"`
}

// answer is its outcome; Fail is a group error (no quorum, not leader),
// as opposed to a command refused by its part (Result.Err).
type answer struct {
	Result Result `json:"r"`
	Fail   string `json:"fail,omitempty"`
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return errors.New("forwarded request too large")
	}
	h := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	_, err = w.Write(append(h, b...))
	return err
}

func readFrame(r io.Reader, v any) error {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > maxFrame {
		return errors.New("forwarded frame too large")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// serveForward answers the requests of one forwarding connection until
// it closes or the group stops.
func (g *Group) serveForward(c net.Conn) {
	defer c.Close()
	for range maxForwardRequests {
		var req request
		if err := readFrame(c, &req); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(g.ctx, forwardTimeout)
		res, err := g.do(ctx, req)
		cancel()
		a := answer{Result: res}
		if err != nil {
			a.Fail = err.Error()
		}
		if writeFrame(c, a) != nil {
			return
		}
	}
}

// A forwarding connection serves this many requests, then is closed (a
// bound on every loop).
const maxForwardRequests = 1 << 20

// forwardTimeout bounds a forwarded request at the leader.
const forwardTimeout = 30 * time.Second

// pool holds idle forwarding connections by leader address.
type pool struct {
	mu   sync.Mutex
	idle map[string][]net.Conn // guarded by mu
}

const maxIdle = 8

func (p *pool) get(addr string) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.idle[addr]
	if len(cs) == 0 {
		return nil
	}
	c := cs[len(cs)-1]
	p.idle[addr] = cs[:len(cs)-1]
	return c
}

func (p *pool) put(addr string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = map[string][]net.Conn{}
	}
	if len(p.idle[addr]) >= maxIdle {
		c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], c)
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cs := range p.idle {
		for _, c := range cs {
			c.Close()
		}
	}
	p.idle = nil
}

// errUnreached is a forward that never reached the leader: nothing was
// done, so the caller may try again.
type errUnreached struct{ err error }

func (e errUnreached) Error() string { return "leader unreachable: " + e.err.Error() }

// forward sends req to the leader at addr and returns its answer.
func (g *Group) forward(ctx context.Context, addr string, req request) (Result, error) {
	c := g.pool.get(addr)
	fresh := false
	if c == nil {
		var err error
		if c, err = g.stream.dial(ctx, addr); err != nil {
			return Result{}, errUnreached{err}
		}
		if _, err := c.Write([]byte{fwdByte}); err != nil {
			c.Close()
			return Result{}, errUnreached{err}
		}
		fresh = true
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeFrame(c, req); err != nil {
		c.Close()
		if !fresh && ctx.Err() == nil { // a stale pooled connection: once more, afresh
			return g.forward(ctx, addr, req)
		}
		return Result{}, errUnreached{err}
	}
	var a answer
	if err := readFrame(c, &a); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%w (outcome unknown)", ErrNoQuorum)
		}
		return Result{}, fmt.Errorf("%w (outcome unknown): %v", ErrNoQuorum, err)
	}
	if !stop() {
		c.Close()
	} else {
		g.pool.put(addr, c)
	}
	if a.Fail != "" {
		return a.Result, remoteError(a.Fail)
	}
	return a.Result, nil
}
