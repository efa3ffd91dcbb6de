package locks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/raftgroup"
	"cheshire/styx"
	"cheshire/synth/synthtest"
)

type testNode struct {
	g *raftgroup.Group
	l *Locks
}

func startNode(t testing.TB, lease time.Duration) *testNode {
	t.Helper()
	dir := t.TempDir()
	id, err := nodekey.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := NewState()
	g, err := raftgroup.Open(raftgroup.Options{Dir: dir, ID: id, Parts: map[string]raftgroup.Part{Part: st}})
	if err != nil {
		t.Fatal(err)
	}
	l := New(Options{Group: g, State: st, ID: id.ID(), Owner: "me", Lease: lease})
	n := &testNode{g: g, l: l}
	t.Cleanup(n.close)
	return n
}

func (n *testNode) close() {
	n.l.Close()
	n.g.Close()
}

func open(t *testing.T, n *testNode, path string, mode uint8) (styx.File, error) {
	t.Helper()
	root, err := n.l.Attach(t.Context(), "me", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.WalkOpen(t.Context(), root, path, mode)
}

func read(t *testing.T, f styx.File) string {
	t.Helper()
	b := make([]byte, 1024)
	k, err := f.Read(t.Context(), b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:k])
}

// TestLocks: a lock taken by opening its file on one node; another
// node's trylock is told who holds it; a waiting open is ended by its
// context (a flush); clunk releases and the waiter gets a larger token;
// a holder that stops renewing loses the lock at the end of its lease.
func TestLocks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := startNode(t, 2*time.Second), startNode(t, 2*time.Second)
	if err := a.g.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a to lead", a.g.IsLeader)
	if err := a.g.AddVoter(ctx, b.g.ID(), b.g.Addr(), true); err != nil {
		t.Fatal(err)
	}
	root, err := a.l.Attach(ctx, "me", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := root.Walk(ctx, []string{"x"}); err == nil {
		t.Fatal("walk to a lock never made")
	}
	held, _, err := root.Create(ctx, "x", 0666, styx.ORDWR)
	if err != nil {
		t.Fatal(err)
	}
	first := read(t, held)
	lk0, _, _ := a.l.st.get("x")
	firstEnd := lk0.Expires
	if !strings.HasPrefix(first, "token 1\n") || !strings.Contains(first, "holder "+a.g.ID()) {
		t.Errorf("holder reads %q", first)
	}
	ctl, err := open(t, b, "/ctl", styx.ORDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Write(ctx, []byte("trylock x"), 0); err == nil || !strings.Contains(err.Error(), "lock held by "+a.g.ID()) {
		t.Errorf("trylock of a held lock: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := ctl.Write(wctx, []byte("lock x"), 0)
		done <- err
	}()
	cancel()
	if err := <-done; err == nil {
		t.Error("a cancelled wait took the lock")
	}
	go func() {
		_, err := ctl.Write(ctx, []byte("lock x"), 0)
		done <- err
	}()
	// The lease is renewed while held: past its first end, the lock is
	// still a's.
	testutil.WaitFor(t, "the lease to be renewed past its first end", func() bool {
		lk, _, _ := a.l.st.get("x")
		return lk.Expires.After(firstEnd)
	})
	select {
	case err := <-done:
		t.Fatalf("lock taken while held: %v", err)
	default:
	}
	held.Clunk()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var tok int
	if _, err := fmt.Sscanf(read(t, ctl), "locked x %d\n", &tok); err != nil || tok <= 1 {
		t.Errorf("waiter's token %d %v", tok, err)
	}
	if r, _ := open(t, a, "/x", styx.OREAD); !strings.Contains(read(t, r), "holder "+b.g.ID()) {
		t.Errorf("x is not b's")
	}
	synthtest.TestServer(t, a.l, "me")

	// b stops renewing (its locks part closes): the lease ends, a takes x.
	b.l.Close()
	f, err := open(t, a, "/x", styx.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, f); !strings.HasPrefix(got, fmt.Sprintf("token %d\n", tok+1)) {
		t.Errorf("after b's lease, want token %d: %q", tok+1, got)
	}
	f.Clunk()
	ctl.Clunk()
}
