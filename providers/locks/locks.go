// Package locks serves /locks, cluster-wide locks with leases, kept in
// the node's Raft group (raftgroup) beside the ledger. Opening
// /locks/NAME for writing takes the lock NAME, waiting while another
// holds it (a flush of the open ends the wait); clunking the fid
// releases it, and so does the end of its lease when the holding node
// stops renewing it (death, partition). Each grant has a fencing token,
// larger than every earlier one. See README.md.
package locks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"
	"cheshire/raftgroup"
	"cheshire/styx"
	"cheshire/synth"
)

// Part is the name of the locks' state machine in the raft group.
const Part = "locks"

// DefaultLease is how long a grant lasts without renewal; the holding
// node renews its grants every third of it.
const DefaultLease = 3 * time.Second

// maxWaits bounds the retries of one blocking acquire (each waits for a
// change of the state or a lease's end).
const maxWaits = 1 << 20

// Locks is the /locks file server.
type Locks struct {
	*synth.Server
	g     *raftgroup.Group
	st    *State
	id    string // this node's key: the holder of its grants
	lease time.Duration
	log   *slog.Logger
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu   sync.Mutex
	held map[string]string // guarded by mu: owner → lock name, the grants this node renews
}

// Options configure Locks.
type Options struct {
	Group *raftgroup.Group
	State *State // the Part registered in Group as Part
	ID    string // the node's key
	Owner string
	Lease time.Duration // DefaultLease if 0
	Log   *slog.Logger
}

// New serves the locks of o.Group and starts renewing this node's
// grants.
//
//	/locks/ctl    lock NAME, trylock NAME, unlock NAME (held by the ctl fid); read the answers
//	/locks/NAME   open (or create) for writing: take the lock; read: name, holder, token, expires, state
//
// The directory lists the locks of the group's state and those created
// here; a lock file is made by creating it.
func New(o Options) *Locks {
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Locks{g: o.Group, st: o.State, id: o.ID, lease: o.Lease, log: o.Log, held: map[string]string{}}
	root := synth.NewDir("locks", 0777)
	root.Add(synth.NewFile("ctl", 0666, ctlHandler{l}))
	root.SetGen(synth.GenNames(func(ctx context.Context) []string { return l.st.names() }, l.lockFile))
	root.SetCreate(func(ctx context.Context, name string, perm uint32, mode uint8) (synth.Node, error) {
		if perm&styx.DMDIR != 0 || !validName(name) {
			return nil, fmt.Errorf("locks: bad lock name %q: locks are files", name)
		}
		return l.lockFile(name), nil
	})
	l.Server = synth.NewServer(root, synth.WithOwner(o.Owner))
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	l.wg.Add(1)
	go l.renewLoop(ctx)
	return l
}

// Close stops renewing (the grants then expire).
func (l *Locks) Close() {
	l.stop()
	l.wg.Wait()
}

func (l *Locks) lockFile(name string) synth.Node {
	return synth.NewFile(name, 0666, lockHandler{l, name})
}

// newOwner names a new handle: this node's key and a random suffix.
func (l *Locks) newOwner() string {
	var b [8]byte
	rand.Read(b[:])
	return l.id[:8] + "." + hex.EncodeToString(b[:])
}

// Acquire takes the lock name for owner and returns its fencing token.
// With wait it waits while another holds it, until ctx ends; without,
// it fails at once with "lock held by KEY".
func (l *Locks) Acquire(ctx context.Context, name, owner string, wait bool) (uint64, error) {
	if !validName(name) {
		return 0, fmt.Errorf("locks: bad lock name %q", name)
	}
	cmd := []byte(fmt.Sprintf("acquire %s %s %s %d", name, l.id, owner, int64(l.lease)))
	for range maxWaits {
		r, err := l.g.Apply(ctx, Part, cmd)
		if err != nil {
			if ctx.Err() != nil {
				l.abandon(name, owner)
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("locks: %w", err)
		}
		if r.Err == "" {
			tok, _, _ := strings.Cut(r.Answer, " ")
			n, _ := strconv.ParseUint(tok, 10, 64)
			l.mu.Lock()
			l.held[owner] = name
			l.mu.Unlock()
			return n, nil
		}
		if !strings.HasPrefix(r.Err, "lock held by") || !wait {
			return 0, errors.New("locks: " + r.Err)
		}
		lk, ok, changed := l.st.get(name)
		if !ok {
			continue // released since
		}
		timer := time.NewTimer(time.Until(lk.Expires) + 10*time.Millisecond)
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return 0, ctx.Err()
		}
		timer.Stop()
	}
	return 0, errors.New("locks: too many waits")
}

// abandon releases what an acquire given up on may have been granted.
func (l *Locks) abandon(name, owner string) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.Release(name, owner)
	}()
}

// Release frees the lock name if owner holds it.
func (l *Locks) Release(name, owner string) error {
	l.mu.Lock()
	delete(l.held, owner)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.g.Apply(ctx, Part, []byte("release "+name+" "+owner)); err != nil {
		return fmt.Errorf("locks: %w", err) // the lease ends it
	}
	return nil
}

// renewLoop renews this node's grants every third of the lease.
func (l *Locks) renewLoop(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTicker(l.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		owners := make([]string, 0, len(l.held))
		for o := range l.held {
			owners = append(owners, o)
		}
		l.mu.Unlock()
		if len(owners) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, l.lease/3)
		_, err := l.g.Apply(rctx, Part, []byte("renew "+l.id+" "+strings.Join(owners, " ")))
		cancel()
		if err != nil {
			l.log.Debug("lock leases not renewed", "err", err)
		}
	}
}

// describe is the state of the lock name as text.
func (l *Locks) describe(name string) string {
	lk, ok, _ := l.st.get(name)
	if !ok {
		return "name " + name + "\nstate free\n"
	}
	state := "held"
	if !time.Now().Before(lk.Expires) {
		state = "expired"
	}
	return fmt.Sprintf("name %s\nholder %s\ntoken %d\nexpires %s\nstate %s\n", name, lk.Holder, lk.Token,
		lk.Expires.UTC().Format(time.RFC3339Nano), state)
}

func validName(name string) bool {
	return name != "" && name != "ctl" && name != "." && name != ".." && len(name) <= 128 &&
		!strings.ContainsAny(name, "/ \t\n\x00")
}

// lockHandler is /locks/NAME.
type lockHandler struct {
	l    *Locks
	name string
}

func (h lockHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	if mode&3 == styx.OREAD || mode&3 == styx.OEXEC {
		return &readHandle{text: []byte(h.l.describe(h.name))}, nil
	}
	owner := h.l.newOwner()
	tok, err := h.l.Acquire(ctx, h.name, owner, true)
	if err != nil {
		return nil, err
	}
	return &holdHandle{l: h.l, name: h.name, owner: owner, token: tok}, nil
}

// readHandle reads a lock's state, taken at open.
type readHandle struct{ text []byte }

func (r *readHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return readAt(r.text, p, off), nil
}
func (r *readHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrBadUse
}
func (r *readHandle) Close(ctx context.Context) error { return nil }

// holdHandle is an open that holds the lock until clunked.
type holdHandle struct {
	l     *Locks
	name  string
	owner string
	token uint64
}

// Read gives the grant: its token first, as "token N".
func (h *holdHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	text := fmt.Sprintf("token %d\n%s", h.token, h.l.describe(h.name))
	return readAt([]byte(text), p, off), nil
}

// Write is accepted and ignored, so that `echo > /locks/NAME` takes and
// releases the lock.
func (h *holdHandle) Write(ctx context.Context, p []byte, off int64) (int, error) { return len(p), nil }

func (h *holdHandle) Close(ctx context.Context) error {
	h.l.Release(h.name, h.owner)
	return nil
}

func readAt(data, p []byte, off int64) int {
	if off >= int64(len(data)) || off < 0 {
		return 0
	}
	return copy(p, data[off:])
}

// ctlHandler is /locks/ctl: each fid holds the locks it took until it
// is clunked or unlocks them.
type ctlHandler struct{ l *Locks }

func (h ctlHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	return &ctlHandle{l: h.l, held: map[string]string{}}, nil
}

type ctlHandle struct {
	l *Locks

	mu   sync.Mutex
	held map[string]string // guarded by mu: lock name → owner
	ans  []byte            // guarded by mu
}

const ctlHelp = "lock NAME | trylock NAME | unlock NAME\n"

func (c *ctlHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ans == nil {
		return readAt([]byte(ctlHelp), p, off), nil
	}
	return readAt(c.ans, p, off), nil
}

// Write carries out one command a write.
func (c *ctlHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	w := strings.Fields(string(p))
	if len(w) == 0 {
		return 0, plan9.ErrEmptyCtl
	}
	if len(w) != 2 {
		return 0, fmt.Errorf("locks: %w: want %s", plan9.ErrBadArgs, strings.TrimSpace(ctlHelp))
	}
	name := w[1]
	switch w[0] {
	case "lock", "trylock":
		c.mu.Lock()
		_, already := c.held[name]
		c.mu.Unlock()
		if already {
			return 0, fmt.Errorf("locks: %s already held by this fid", name)
		}
		owner := c.l.newOwner()
		tok, err := c.l.Acquire(ctx, name, owner, w[0] == "lock")
		if err != nil {
			return 0, err
		}
		c.mu.Lock()
		c.held[name] = owner
		c.ans = fmt.Appendf(nil, "locked %s %d\n", name, tok)
		c.mu.Unlock()
	case "unlock":
		c.mu.Lock()
		owner, ok := c.held[name]
		delete(c.held, name)
		c.mu.Unlock()
		if !ok {
			return 0, fmt.Errorf("locks: no lock %s held by this fid", name)
		}
		if err := c.l.Release(name, owner); err != nil {
			return 0, err
		}
		c.mu.Lock()
		c.ans = fmt.Appendf(nil, "unlocked %s\n", name)
		c.mu.Unlock()
	default:
		return 0, fmt.Errorf("locks: %w: %q", plan9.ErrBadCtl, w[0])
	}
	return len(p), nil
}

func (c *ctlHandle) Close(ctx context.Context) error {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	for name, owner := range held {
		c.l.Release(name, owner)
	}
	return nil
}
