// Package raftgroup is the node's Raft group: hashicorp/raft with its
// log and stable store in raft-boltdb and snapshots in files, under
// DIR/ledger, its transport on TLS by node key (stream.go), and one FSM
// that carries several state machines (Parts) by name, so that the
// ledger and the locks share one log, one leader and one membership.
// Membership is raft's own configuration, kept in the log: a node
// restarted on its data directory takes part again by itself. A node
// that is not the leader forwards what it is asked to do to the leader
// (forward.go). It is a leaf below the providers: it imports nodekey and
// atomicfile only.
package raftgroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"cheshire/atomicfile"
	"cheshire/nodekey"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Errors of the group. Texts are Plan 9 style; plan9.Errno knows them.
var (
	ErrNoQuorum  = errors.New("no quorum")
	ErrNoCluster = errors.New("no cluster: bootstrap one or be joined")
	errNotLeader = errors.New("not the leader")
)

// Timing are raft's timeouts. The zero value is for loopback and LANs:
// a leader is missed after Heartbeat and a new one is elected within
// about twice Election.
type Timing struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
}

func (t Timing) withDefaults() Timing {
	if t.Heartbeat == 0 {
		t.Heartbeat = 500 * time.Millisecond
	}
	if t.Election == 0 {
		t.Election = 500 * time.Millisecond
	}
	if t.LeaderLease == 0 {
		t.LeaderLease = 250 * time.Millisecond
	}
	if t.Commit == 0 {
		t.Commit = 5 * time.Millisecond
	}
	return t
}

// Options configure a Group.
type Options struct {
	Dir    string            // where raft keeps its log, snapshots and listening address
	ID     *nodekey.Identity // the node's key: its server ID and TLS identity
	Listen string            // HOST:PORT of the raft listener; port 0: the last one bound, else any
	Parts  map[string]Part   // the state machines, by name
	Log    *slog.Logger
	Timing Timing
}

// Group is a running raft node.
type Group struct {
	id     string // our key, z-base-32: raft's ServerID
	addr   string // KEY@HOST:PORT: raft's ServerAddress for us
	ident  *nodekey.Identity
	raft   *raft.Raft
	fsm    *fsm
	stream *streamLayer
	trans  *raft.NetworkTransport
	store  *raftboltdb.BoltStore
	stable *stable
	timing Timing
	log    *slog.Logger
	pool   pool
	ctx    context.Context
	cancel context.CancelFunc
	obs    *raft.Observer
	obsCh  chan raft.Observation
	wg     sync.WaitGroup

	mu      sync.Mutex
	contact map[string]string // guarded by mu: a member's heartbeat state, as the leader sees it
	config  []raft.Server     // guarded by mu: the latest configuration, for admission
}

// listenFile keeps the last address bound, so that a restarted node is
// where its peers' configuration says.
const listenFile = "listen"

// Open starts the group's raft node on o.Dir. A node with state there
// takes up its group again; one without waits to be bootstrapped or
// added to a group.
func Open(o Options) (*Group, error) {
	if err := os.MkdirAll(o.Dir, 0700); err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l, err := listen(o.Dir, o.Listen)
	if err != nil {
		return nil, err
	}
	g := &Group{id: o.ID.ID(), ident: o.ID, timing: o.Timing.withDefaults(), log: o.Log, fsm: newFSM(o.Parts),
		contact: map[string]string{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if g.stream, err = newStreamLayer(l, o.ID, g.admit); err != nil {
		l.Close()
		return nil, err
	}
	g.addr = g.stream.Addr().String()
	g.stream.forward = g.serveForward
	if err := g.start(o.Dir); err != nil {
		g.stream.Close()
		g.stream.wait()
		if g.store != nil {
			g.store.Close()
		}
		return nil, err
	}
	g.refreshConfig()
	g.wg.Add(2)
	go g.watch()
	go g.readdress()
	return g, nil
}

// readdress, when the configuration has this node at another address
// than the one it listens on (its old port was taken at restart), asks
// the leader to record the new one, until it is recorded or the group
// stops. It watches until the configuration names this node at its
// address.
func (g *Group) readdress() {
	defer g.wg.Done()
	for range 1 << 20 {
		var member, stale, voter bool
		var others []string
		g.refreshConfig()
		g.mu.Lock()
		for _, s := range g.config {
			if string(s.ID) == g.id {
				member, stale, voter = true, string(s.Address) != g.addr, s.Suffrage == raft.Voter
			} else {
				others = append(others, string(s.Address))
			}
		}
		g.mu.Unlock()
		if member && !stale {
			return
		}
		// Not in the configuration we hold (none yet, the entry adding
		// us has not reached us, or we were removed): wait, and never
		// ask to be added back.
		if !member {
			others = nil
		}
		// The leader cannot reach us at the old address, so we may know
		// no leader: any member takes the request to its leader.
		for _, a := range others {
			ctx, cancel := context.WithTimeout(g.ctx, 4*g.timing.Election)
			_, err := g.forward(ctx, a, request{Op: "add", ID: g.id, Addr: g.addr, Voter: voter})
			cancel()
			if err == nil {
				g.log.Info("raft address recorded", "addr", g.addr)
				break
			}
		}
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(g.timing.Election):
		}
	}
}

// listen binds the raft listener: addr, or with port 0 the port bound
// last time if it is free, recorded for the next start.
func listen(dir, addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	p := filepath.Join(dir, listenFile)
	var l net.Listener
	var err error
	if strings.HasSuffix(addr, ":0") {
		if last, rerr := os.ReadFile(p); rerr == nil {
			l, err = net.Listen("tcp", strings.TrimSpace(string(last)))
		}
	}
	if l == nil {
		if l, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("raft listener: %w", err)
		}
	}
	if err := atomicfile.Write(p, []byte(l.Addr().String()+"\n"), 0600); err != nil {
		l.Close()
		return nil, fmt.Errorf("raft listener: %w", err)
	}
	return l, nil
}

func (g *Group) start(dir string) error {
	var err error
	g.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		return fmt.Errorf("raft snapshots: %w", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Off, Output: io.Discard})
	g.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: g.stream, MaxPool: 4, Timeout: 2 * time.Second, Logger: logger})
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(g.id)
	c.HeartbeatTimeout = g.timing.Heartbeat
	c.ElectionTimeout = g.timing.Election
	c.LeaderLeaseTimeout = g.timing.LeaderLease
	c.CommitTimeout = g.timing.Commit
	c.BatchApplyCh = true
	c.SnapshotThreshold = 8192
	c.SnapshotInterval = 30 * time.Second
	c.Logger = logger
	g.stable = &stable{s: g.store}
	g.raft, err = raft.NewRaft(c, g.fsm, g.store, g.stable, snaps, g.trans)
	if err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	g.obsCh = make(chan raft.Observation, 64)
	g.obs = raft.NewObserver(g.obsCh, false, nil)
	g.raft.RegisterObserver(g.obs)
	return nil
}

// Close stops the node (its state stays on disk).
func (g *Group) Close() error {
	g.cancel()
	g.raft.DeregisterObserver(g.obs)
	err := g.raft.Shutdown().Error()
	g.trans.Close()
	g.stream.Close()
	g.stream.wait()
	g.wg.Wait()
	g.pool.close()
	g.stable.close()
	g.store.Close()
	return err
}

// ID is the node's server ID, its key.
func (g *Group) ID() string { return g.id }

// Addr is the node's raft address, KEY@HOST:PORT.
func (g *Group) Addr() string { return g.addr }

// admit says whether key may connect: a member of the latest
// configuration, or anyone while we belong to no group.
func (g *Group) admit(key string) bool {
	if g.known(key) {
		return true
	}
	g.refreshConfig() // it may have just been added
	return g.known(key)
}

func (g *Group) known(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.config) == 0 {
		return true
	}
	for _, s := range g.config {
		if string(s.ID) == key {
			return true
		}
	}
	return false
}

// watch follows raft's observations: configuration changes (for
// admission) and heartbeats that fail or resume (for status).
func (g *Group) watch() {
	defer g.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case o := <-g.obsCh:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				g.setContact(string(d.PeerID), "lost since "+d.LastContact.UTC().Format(time.RFC3339Nano))
			case raft.ResumedHeartbeatObservation:
				g.setContact(string(d.PeerID), "ok")
			case raft.LeaderObservation, raft.PeerObservation:
				g.refreshConfig()
			}
		case <-tick.C:
			g.refreshConfig()
		}
	}
}

func (g *Group) setContact(id, s string) {
	g.mu.Lock()
	g.contact[id] = s
	g.mu.Unlock()
}

func (g *Group) refreshConfig() {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	g.mu.Lock()
	g.config = f.Configuration().Servers
	g.mu.Unlock()
}

// Bootstrap makes a group of this node alone and waits (until ctx
// ends) for it to lead.
func (g *Group) Bootstrap(ctx context.Context) error {
	err := g.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: raft.ServerID(g.id), Address: raft.ServerAddress(g.addr), Suffrage: raft.Voter}}}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return errors.New("already in a cluster")
	}
	if err != nil {
		return err
	}
	g.refreshConfig()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for g.raft.State() != raft.Leader {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// IsLeader says whether this node leads the group now.
func (g *Group) IsLeader() bool { return g.raft.State() == raft.Leader }

// Leader is the leader's key, "" if none is known.
func (g *Group) Leader() string {
	_, id := g.raft.LeaderWithID()
	return string(id)
}

// Applied waits until the local state has applied index, or ctx ends.
func (g *Group) Applied(ctx context.Context, index uint64) error {
	for range 1 << 30 {
		ch, at := g.fsm.wait()
		if at >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Apply commits cmd for part through the leader (forwarded if need be)
// and returns the part's Result once applied. The error is the group's:
// ErrNoQuorum when no leader is reached within the election timeout, or
// when leadership was lost with the command in flight (its outcome is
// then unknown).
func (g *Group) Apply(ctx context.Context, part string, cmd []byte) (Result, error) {
	return g.do(ctx, request{Op: "apply", Part: part, Cmd: cmd, Now: time.Now().UnixNano()})
}

// AddVoter adds (or promotes) the node key at raft address addr
// (KEY@HOST:PORT) as a voter; voter false adds it as a non-voter.
func (g *Group) AddVoter(ctx context.Context, key, addr string, voter bool) error {
	if addr == "" {
		addr = g.memberAddr(key)
	}
	if addr == "" {
		return fmt.Errorf("no address for %s", key)
	}
	if _, _, err := splitAddress(addr); err != nil {
		return err
	}
	_, err := g.do(ctx, request{Op: "add", ID: key, Addr: addr, Voter: voter})
	return err
}

// Remove takes key out of the group.
func (g *Group) Remove(ctx context.Context, key string) error {
	_, err := g.do(ctx, request{Op: "remove", ID: key})
	return err
}

// Demote makes key a non-voter.
func (g *Group) Demote(ctx context.Context, key string) error {
	_, err := g.do(ctx, request{Op: "demote", ID: key})
	return err
}

// Snapshot takes a snapshot of the local state now.
func (g *Group) Snapshot() error {
	err := g.raft.Snapshot().Error()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return err
}

func (g *Group) memberAddr(key string) string {
	g.refreshConfig()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.config {
		if string(s.ID) == key {
			return string(s.Address)
		}
	}
	return ""
}

// do carries out req here if we lead, else at the leader, waiting up
// to twice the election timeout for one to be known (ten times for a
// membership change).
func (g *Group) do(ctx context.Context, req request) (Result, error) {
	deadline := time.Now().Add(2 * g.timing.Election)
	if req.Op != "apply" {
		// A membership change is idempotent, and one that comes while
		// the leadership changes (a loaded machine: a missed lease)
		// just waits for the next leader: give it a few elections.
		deadline = time.Now().Add(10 * g.timing.Election)
	}
	for attempt := 0; ; attempt++ {
		g.refreshConfig()
		g.mu.Lock()
		none := len(g.config) == 0
		g.mu.Unlock()
		if none && time.Now().After(deadline) {
			return Result{}, ErrNoCluster
		}
		if none {
			// not yet told of the group we were just added to, or in none
		} else if g.raft.State() == raft.Leader {
			r, err := g.local(req)
			switch {
			case errors.Is(err, errNotLeader):
			case err != nil && req.Op != "apply" && errors.Is(err, ErrNoQuorum) && time.Now().Before(deadline):
				// a membership change is idempotent: try it again
			default:
				return r, err
			}
		} else if addr, id := g.raft.LeaderWithID(); id != "" && string(id) != g.id && attempt < 100 {
			fctx, cancel := context.WithDeadline(ctx, time.Now().Add(2*g.timing.Election))
			r, err := g.forward(fctx, string(addr), req)
			cancel()
			var un errUnreached
			if err == nil || !(errors.As(err, &un) || errors.Is(err, errNotLeader)) {
				return r, err
			}
		}
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		if time.Now().After(deadline) {
			return Result{}, ErrNoQuorum
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(g.timing.Heartbeat / 10):
		}
	}
}

// local carries out req on this node, the leader.
func (g *Group) local(req request) (Result, error) {
	timeout := 10 * g.timing.Election
	switch req.Op {
	case "apply":
		f := g.raft.Apply(encodeEntry(req.Part, time.Unix(0, req.Now), req.Cmd), timeout)
		if err := raftError(f.Error()); err != nil {
			return Result{}, err
		}
		r, _ := f.Response().(Result)
		return r, nil
	case "add":
		var f raft.IndexFuture
		if req.Voter {
			f = g.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, timeout)
		} else {
			f = g.raft.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, timeout)
		}
		return Result{}, raftError(f.Error())
	case "remove":
		return Result{}, raftError(g.raft.RemoveServer(raft.ServerID(req.ID), 0, timeout).Error())
	case "demote":
		return Result{}, raftError(g.raft.DemoteVoter(raft.ServerID(req.ID), 0, timeout).Error())
	}
	return Result{}, fmt.Errorf("unknown forwarded operation %q", req.Op)
}

// raftError turns raft's errors into the group's.
func raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return errNotLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w (outcome unknown)", ErrNoQuorum)
	}
	return err
}

// remoteError is a failure the leader sent back, as ours again.
func remoteError(s string) error {
	switch {
	case s == errNotLeader.Error():
		return errNotLeader
	case s == ErrNoQuorum.Error():
		return ErrNoQuorum
	case strings.HasPrefix(s, ErrNoQuorum.Error()):
		return fmt.Errorf("%w%s", ErrNoQuorum, strings.TrimPrefix(s, ErrNoQuorum.Error()))
	}
	return errors.New(s)
}

// Status is the group's state as text, one "key value" a line, then a
// line per member: "member KEY voter|nonvoter ADDR CONTACT".
func (g *Group) Status() string {
	var b strings.Builder
	st := g.raft.Stats()
	fmt.Fprintf(&b, "state %s\n", strings.ToLower(g.raft.State().String()))
	fmt.Fprintf(&b, "id %s\naddr %s\n", g.id, g.addr)
	leader := g.Leader()
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(&b, "leader %s\nterm %s\ncommit %d\napplied %d\n", leader, st["term"], g.raft.CommitIndex(), g.raft.AppliedIndex())
	lc := "never"
	if t := g.raft.LastContact(); !t.IsZero() {
		lc = t.UTC().Format(time.RFC3339Nano)
	}
	ls := g.stream.lim.Stats()
	fmt.Fprintf(&b, "lastcontact %s\nrefused %d\nconns %d\nevicted %d\n", lc, g.stream.refused.Load(), ls.Held, ls.Evicted)
	g.refreshConfig()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.config {
		kind := "voter"
		if s.Suffrage != raft.Voter {
			kind = "nonvoter"
		}
		c := g.contact[string(s.ID)]
		switch {
		case string(s.ID) == g.id:
			c = "self"
		case c == "":
			c = "ok"
		}
		fmt.Fprintf(&b, "member %s %s %s %s\n", s.ID, kind, s.Address, c)
	}
	return b.String()
}
