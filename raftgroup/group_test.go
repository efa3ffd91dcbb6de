package raftgroup

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
)

// counter is a Part that adds numbers.
type counter struct {
	mu  sync.Mutex
	sum int
}

func (c *counter) Apply(index uint64, now time.Time, cmd []byte) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	if string(cmd) == "bad" {
		return Result{Err: "bad number"}
	}
	c.sum++
	return Result{Answer: "ok"}
}

func (c *counter) Snapshot() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Marshal(c.sum)
}

func (c *counter) Restore(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum = 0
	if b == nil {
		return nil
	}
	return json.Unmarshal(b, &c.sum)
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sum
}

type member struct {
	g   *Group
	c   *counter
	dir string
	id  *nodekey.Identity
}

func openMember(t *testing.T, dir string, id *nodekey.Identity) *member {
	t.Helper()
	c := &counter{}
	g, err := Open(Options{Dir: dir, ID: id, Parts: map[string]Part{"count": c}})
	if err != nil {
		t.Fatal(err)
	}
	return &member{g: g, c: c, dir: dir, id: id}
}

func newMember(t *testing.T) *member {
	t.Helper()
	dir := t.TempDir()
	id, err := nodekey.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := openMember(t, dir, id)
	t.Cleanup(func() { m.g.Close() })
	return m
}

// group makes a group of ms: the first bootstraps it and leads, and
// adds the others as voters.
func group(t *testing.T, ms ...*member) {
	t.Helper()
	ctx := t.Context()
	a := ms[0]
	if err := a.g.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a to lead", a.g.IsLeader)
	for _, m := range ms[1:] {
		if err := a.g.AddVoter(ctx, m.g.ID(), m.g.Addr(), true); err != nil {
			t.Fatal(err)
		}
	}
}

// group3 is a group of three new members, the first leading.
func group3(t *testing.T) (a, b, c *member) {
	t.Helper()
	a, b, c = newMember(t), newMember(t), newMember(t)
	group(t, a, b, c)
	return a, b, c
}

// TestGroup: bootstrap, two joins, applies from leader and followers,
// a refused command, garbage and an unknown key on the raft port, a
// restart that rejoins by itself.
func TestGroup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b, c := newMember(t), newMember(t), newMember(t)
	if _, err := b.g.Apply(ctx, "count", []byte("1")); err != ErrNoCluster {
		t.Fatalf("apply before any cluster: %v", err)
	}
	group(t, a, b, c)
	for i, m := range []*member{a, b, c, b, c} {
		r, err := m.g.Apply(ctx, "count", []byte("1"))
		if err != nil || r.Answer != "ok" || r.Index == 0 {
			t.Fatalf("apply %d: %+v %v", i, r, err)
		}
	}
	if r, err := c.g.Apply(ctx, "count", []byte("bad")); err != nil || r.Err != "bad number" {
		t.Fatalf("refused command: %+v %v", r, err)
	}
	for _, m := range []*member{a, b, c} {
		testutil.WaitFor(t, "5 applied everywhere", func() bool { return m.c.get() == 5 })
	}
	if st := a.g.Status(); strings.Count(st, "member ") != 3 || !strings.Contains(st, "state leader") {
		t.Errorf("status:\n%s", st)
	}

	// Garbage and a stranger's key on the raft port are refused.
	before := a.g.stream.refused.Load()
	nc, err := net.Dial("tcp", strings.SplitN(a.g.Addr(), "@", 2)[1])
	if err != nil {
		t.Fatal(err)
	}
	nc.Write([]byte("GET / HTTP/1.0\r\n\r\ngarbage"))
	nc.Close()
	stranger, _ := nodekey.Load(t.TempDir())
	cfg, _ := stranger.ClientTLS(a.id.Public)
	if tc, err := tls.Dial("tcp", strings.SplitN(a.g.Addr(), "@", 2)[1], cfg); err == nil {
		tc.Write([]byte{fwdByte})
		tc.Read(make([]byte, 1))
		tc.Close()
	}
	testutil.WaitFor(t, "two refusals", func() bool { return a.g.stream.refused.Load() >= before+2 })

	// c restarted on its directory takes part again.
	c.g.Close()
	c2 := openMember(t, c.dir, c.id)
	defer c2.g.Close()
	if _, err := a.g.Apply(ctx, "count", []byte("1")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "c to catch up after restart", func() bool { return c2.c.get() == 6 })
	if r, err := c2.g.Apply(context.Background(), "count", []byte("1")); err != nil || r.Answer != "ok" {
		t.Fatalf("apply on restarted c: %+v %v", r, err)
	}
	if err := a.g.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := b.g.Demote(ctx, c2.g.ID()); err != nil { // forwarded to the leader
		t.Fatal(err)
	}
	if st := a.g.Status(); !strings.Contains(st, "member "+c2.g.ID()+" nonvoter") {
		t.Errorf("after demote:\n%s", st)
	}
	if err := b.g.AddVoter(ctx, c2.g.ID(), "", true); err != nil { // promote: its address from the configuration
		t.Fatal(err)
	}
	if st := a.g.Status(); !strings.Contains(st, "member "+c2.g.ID()+" voter") {
		t.Errorf("after promote:\n%s", st)
	}
	if err := a.g.Remove(ctx, c2.g.ID()); err != nil {
		t.Fatal(err)
	}
}

// TestReaddress: a member restarted on another port (its old one taken)
// has the group record its new address by itself, and takes part again.
func TestReaddress(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, _, c := group3(t)
	old := c.g.Addr()
	// c must hold the configuration naming it before it goes, or it
	// comes back knowing no group (it used to, under load, and wait
	// for ever).
	testutil.WaitFor(t, "c to hold the configuration", func() bool { return c.g.memberAddr(c.g.ID()) == old })
	c.g.Close()
	// Someone else takes c's port.
	squat, err := net.Listen("tcp", strings.SplitN(old, "@", 2)[1])
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	c2 := openMember(t, c.dir, c.id)
	defer c2.g.Close()
	if c2.g.Addr() == old {
		t.Fatal("c bound its old port")
	}
	testutil.WaitFor(t, "the new address in the configuration", func() bool { return a.g.memberAddr(c2.g.ID()) == c2.g.Addr() })
	if _, err := a.g.Apply(ctx, "count", []byte("1")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "c to apply at its new address", func() bool { return c2.c.get() == 1 })
}

// TestCloseWithIdleForwards: a leader closes while a follower still
// holds an idle forwarding connection to it (it used to wait for the
// follower to hang up).
func TestCloseWithIdleForwards(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := newMember(t)
	dir := t.TempDir()
	id, err := nodekey.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := openMember(t, dir, id)
	if err := a.g.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.g.AddVoter(ctx, b.g.ID(), b.g.Addr(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Apply(ctx, "count", []byte("1")); err != nil {
		t.Fatal(err)
	}
	a.g.Close() // b's pooled connection to a is still open
}

// TestFlood: 400 idle connections from ten other hosts hit a member's
// raft port (more than the listener holds, more than one host may
// hold); the oldest are evicted and the hosts capped, and the group goes
// on: a follower's write forwarded to the leader, a member restarted,
// which must dial in anew, catching up.
func TestFlood(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b, c := group3(t)
	testutil.WaitFor(t, "c to hold the configuration", func() bool { return c.g.memberAddr(c.g.ID()) == c.g.Addr() })
	target := strings.SplitN(a.g.Addr(), "@", 2)[1]
	var flood []net.Conn
	defer func() {
		for _, fc := range flood {
			fc.Close()
		}
	}()
	for i := range 400 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(2+i%10))}}
		fc, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			continue // the kernel's backlog is full: as good as refused
		}
		flood = append(flood, fc)
	}
	testutil.WaitFor(t, "the listener to shed the flood", func() bool {
		st := a.g.stream.lim.Stats()
		return st.Evicted+st.Refused > 0 && st.Held <= maxConns
	})
	if r, err := b.g.Apply(ctx, "count", []byte("1")); err != nil || r.Answer != "ok" {
		t.Fatalf("apply through a follower during the flood: %+v %v", r, err)
	}
	c.g.Close()
	c2 := openMember(t, c.dir, c.id)
	defer c2.g.Close()
	if _, err := a.g.Apply(ctx, "count", []byte("1")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "c to catch up after its restart", func() bool { return c2.c.get() == 2 })
}
