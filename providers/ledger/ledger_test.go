package ledger

import (
	"crypto/ed25519"
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

// account is a test key.
type account struct {
	priv ed25519.PrivateKey
	key  string
}

func newAccount(t testing.TB) account {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return account{priv, nodekey.Encode(pub)}
}

func (a account) sign(t testing.TB, line string) string {
	t.Helper()
	s, err := Sign(line, a.priv)
	if err != nil {
		t.Fatalf("sign %q: %v", line, err)
	}
	return s
}

type testNode struct {
	g  *raftgroup.Group
	l  *Ledger
	id *nodekey.Identity
}

func startNode(t testing.TB) *testNode {
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
	l := New(Options{Group: g, State: st, Key: id.Private, Owner: "me"})
	t.Cleanup(func() { l.Close(); g.Close() })
	return &testNode{g: g, l: l, id: id}
}

// TestLedger: a 3-node group; transfers through every node; every kind
// of bad transaction refused with its reason and the state unchanged;
// one chain, the same head everywhere, that verifies offline.
func TestLedger(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b, c := startNode(t), startNode(t), startNode(t)
	alice, bob := newAccount(t), newAccount(t)
	if err := a.l.bootstrap(ctx, []string{alice.key, "1000", bob.key, "500"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{b, c} {
		if err := a.l.add(ctx, []string{n.g.ID(), n.g.Addr()}, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	nonce := uint64(0)
	for i, n := range []*testNode{a, b, c, b, c} {
		nonce++
		ans, err := n.l.Submit(ctx, alice.sign(t, fmt.Sprintf("transfer %s %s 10 %d", alice.key, bob.key, nonce)))
		if err != nil || !strings.HasPrefix(ans, "committed ") {
			t.Fatalf("transfer %d: %q %v", i, ans, err)
		}
	}
	good := alice.sign(t, fmt.Sprintf("transfer %s %s 10 %d", alice.key, bob.key, nonce+1))
	forged := good[:len(good)-2] + "00"
	if strings.HasSuffix(good, "00") {
		forged = good[:len(good)-2] + "11"
	}
	bad := []struct{ line, want string }{
		{forged, "bad signature"},
		{alice.sign(t, fmt.Sprintf("transfer %s %s 10 %d", alice.key, bob.key, nonce)), "replayed"},
		{alice.sign(t, fmt.Sprintf("transfer %s %s 100000 %d", alice.key, bob.key, nonce+1)), "insufficient funds"},
		{strings.Replace(good, " 10 ", " -10 ", 1), "bad amount"},
		{strings.Replace(good, " 10 ", " 18446744073709551616 ", 1), "bad amount"},
		{bob.sign(t, fmt.Sprintf("transfer %s %s 1 1", bob.key, alice.key))[:40], "bad"},
	}
	for _, x := range bad {
		_, err := b.l.Submit(ctx, x.line)
		if err == nil || !strings.Contains(err.Error(), x.want) || !strings.HasPrefix(err.Error(), "ledger: ") {
			t.Errorf("%.60s…: %v, want %q", x.line, err, x.want)
		}
	}
	// A contract, cancelled by its payer at once: all back to bob.
	cl := bob.sign(t, fmt.Sprintf("contract open %s c1 %s 3 10 1", bob.key, alice.key))
	if _, err := c.l.Submit(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if _, err := c.l.Submit(ctx, alice.sign(t, fmt.Sprintf("contract settle %s c1 %d", alice.key, nonce+1))); err == nil || !strings.Contains(err.Error(), "cannot be settled by its holder") {
		t.Errorf("holder settles early: %v", err)
	}
	if _, err := c.l.Submit(ctx, bob.sign(t, fmt.Sprintf("contract settle %s c1 2", bob.key))); err != nil {
		t.Fatal(err)
	}
	if _, err := a.l.Submit(ctx, bob.sign(t, fmt.Sprintf("endpoint %s tls!127.0.0.1!5641 3", bob.key))); err != nil {
		t.Fatal(err)
	}
	if ab, _ := a.l.st.Balance(alice.key); ab != 950 {
		t.Errorf("alice's balance %d, want 950", ab)
	}
	// Everything sealed, one head everywhere, a chain that verifies.
	for _, n := range []*testNode{a, b, c} {
		testutil.WaitFor(t, "all sealed, one head", func() bool {
			_, h, p := n.l.st.Head()
			_, ah, ap := a.l.st.Head()
			return p == 0 && ap == 0 && h == ah
		})
	}
	last, head, _ := c.l.st.Head()
	var blocks []*Block
	for i := 0; i <= last; i++ {
		text, _ := c.l.st.Block(uint64(i))
		blk, err := ParseBlock(text)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, blk)
	}
	if h, err := VerifyChain(blocks); err != nil || h != head {
		t.Fatalf("verify: %s %v, want %s", h, err, head)
	}
	blocks[len(blocks)-1].Prev = zeroHash
	if _, err := VerifyChain(blocks); err == nil {
		t.Error("a broken chain verified")
	}
	if st := b.l.status(ctx); !strings.Contains(st, `refusedhere "bad signature" 2`) || !strings.Contains(st, `refused "bad nonce" 1`) ||
		!strings.Contains(st, `refused "insufficient funds" 1`) || !strings.Contains(st, "refusedhere \"bad amount\" 2") {
		t.Errorf("refusals not counted in status:\n%s", st)
	}
	synthtest.TestServer(t, a.l, "me")
	if got, err := testutil.ReadFile(ctx, mustAttach(t, a.l), "/accounts/"+bob.key+"/balance"); err != nil || got != "550\n" {
		t.Errorf("bob's balance file: %q %v", got, err)
	}
}

func mustAttach(t *testing.T, l *Ledger) styx.File {
	t.Helper()
	root, err := l.Attach(t.Context(), "me", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestStateRefusesBadSeals: a seal whose signature does not match its
// block, or for a block that is not next, is refused, counted, and
// changes nothing; a snapshot restores the same chain.
func TestStateRefusesBadSeals(t *testing.T) {
	t.Parallel()
	st := NewState()
	k, other := newAccount(t), newAccount(t)
	now := time.Unix(1700000000, 0)
	g := &Block{Prev: zeroHash, Time: now, Allocs: []Alloc{{k.key, 100}}}
	g.seal(k.priv)
	if r := st.Apply(1, now, []byte("genesis\n"+g.Text())); r.Err != "" {
		t.Fatal(r.Err)
	}
	if r := st.Apply(2, now, []byte("genesis\n"+g.Text())); r.Err == "" {
		t.Error("a second genesis block was taken")
	}
	if r := st.Apply(3, now, []byte("tx "+k.sign(t, fmt.Sprintf("transfer %s %s 5 1", k.key, other.key)))); r.Answer != "committed 3" {
		t.Fatalf("%+v", r)
	}
	b, upto := st.pendingBlock(now)
	b.seal(other.priv)
	forged := b.Sig
	b.seal(k.priv)
	for _, cmd := range []string{
		sealCmd(1, upto, now, k.key, forged),       // signed by another key
		sealCmd(1, upto, now.Add(1), k.key, b.Sig), // a different block than signed
		sealCmd(5, upto, now, k.key, b.Sig),        // not the next block
		sealCmd(1, 2, now, k.key, b.Sig),           // nothing up to index 2
	} {
		if r := st.Apply(4, now, []byte(cmd)); r.Err == "" {
			t.Errorf("%s: taken", cmd)
		}
	}
	if n, _, pending := st.Head(); n != 0 || pending != 1 {
		t.Fatalf("after refused seals: head %d, pending %d", n, pending)
	}
	if r := st.Apply(5, now, []byte(sealCmd(1, upto, now, k.key, b.Sig))); r.Err != "" {
		t.Fatal(r.Err)
	}
	if !strings.Contains(st.Refused(), `refused "bad seal" 2`) || !strings.Contains(st.Refused(), `refused "bad block" 2`) {
		t.Errorf("refusals counted:\n%s", st.Refused())
	}
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	again := NewState()
	if err := again.Restore(snap); err != nil {
		t.Fatal(err)
	}
	_, h1, _ := st.Head()
	_, h2, _ := again.Head()
	if h1 != h2 || again.Supply() != 100 {
		t.Errorf("restored head %s, supply %d; want %s, 100", h2, again.Supply(), h1)
	}
}
