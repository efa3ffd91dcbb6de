package tests

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/providers/ledger"
	"cheshire/styx"

	"github.com/anishathalye/porcupine"
)

// ledgerKey is a client's account.
type ledgerKey struct {
	priv ed25519.PrivateKey
	key  string
}

func newLedgerKey(t *testing.T) ledgerKey {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return ledgerKey{priv, nodekey.Encode(pub)}
}

func (k ledgerKey) sign(t *testing.T, line string) string {
	s, err := ledger.Sign(line, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// statusField returns a field of m's /ledger/status, through root.
func statusField(ctx context.Context, root *styx.Fid, field string) string {
	s, err := readPath(ctx, root, "/ledger/status")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == field {
			return v
		}
	}
	return ""
}

func readPath(ctx context.Context, root *styx.Fid, p string) (string, error) {
	f, err := root.WalkPath(ctx, p)
	if err != nil {
		return "", err
	}
	defer f.Clunk(context.Background())
	if err := f.Open(ctx, styx.OREAD); err != nil {
		return "", err
	}
	b, err := f.ReadAll(ctx)
	return string(b), err
}

// submit writes a signed transaction to /ledger/tx and reads the answer.
func submit(ctx context.Context, root *styx.Fid, line string) (string, error) {
	f, err := root.WalkPath(ctx, "/ledger/tx")
	if err != nil {
		return "", err
	}
	defer f.Clunk(context.Background())
	if err := f.Open(ctx, styx.ORDWR); err != nil {
		return "", err
	}
	if _, err := f.WriteAt(ctx, []byte(line+"\n"), 0); err != nil {
		return "", err
	}
	b := make([]byte, 256)
	n, err := f.ReadAt(ctx, b, 0)
	if err != nil && n == 0 {
		return "", err
	}
	return strings.TrimSpace(string(b[:n])), nil
}

// ledgerCluster starts n nodes in one raft group, bootstrapped by the
// first with allocs, and returns them with a client of each. With
// byKey, the others are joined by key alone, their raft address found
// in their DHT records.
func ledgerCluster(t *testing.T, n int, byKey bool, allocs ...string) (*cluster, []*styx.Fid) {
	t.Helper()
	cl := startCluster(t, n)
	a := cl.nodes[0]
	if err := a.ctl("/ledger/ctl", "bootstrap "+strings.Join(allocs, " ")); err != nil {
		t.Fatal(err)
	}
	roots := make([]*styx.Fid, n)
	for i, m := range cl.nodes {
		roots[i] = m.client(userName(t))
	}
	ctx := t.Context()
	for _, m := range cl.nodes[1:] {
		line := "join " + m.key + " " + m.ledgerStatus("addr")
		if byKey {
			m.published(1)
			line = "join " + m.key
		}
		if err := a.ctl("/ledger/ctl", line); err != nil {
			t.Fatalf("join %s: %v", m.key, err)
		}
	}
	for _, r := range roots {
		testutil.WaitFor(t, "every node to see the group", func() bool {
			s, _ := readPath(ctx, r, "/ledger/status")
			return strings.Count(s, "\nmember ") == n && !strings.Contains(s, "leader none")
		})
	}
	return cl, roots
}

func (m *member) ledgerStatus(field string) string {
	for _, l := range strings.Split(m.read("/ledger/status"), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == field {
			return v
		}
	}
	return ""
}

// transferIn is a client's transfer, as porcupine sees it.
type transferIn struct {
	read     bool // a read of all balances instead
	from, to int
	amount   int64
}

// Outcomes of a transfer.
const (
	outCommitted = "committed"
	outRefused   = "refused" // insufficient funds: nothing changed, and it could not have
	outNone      = "none"    // no quorum, never reached a leader: nothing changed
	outUnknown   = "unknown" // may or may not have been applied: the chain tells which
)

type balances [4]int64

// transferModel: balances of four accounts; a committed transfer moves
// money the sender had, a refused one finds too little, an unknown
// outcome may have happened or not, a read sees the balances.
var transferModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{balances{1000, 1000, 1000, 1000}} },
	Step: func(state, input, output any) []any {
		s, in := state.(balances), input.(transferIn)
		if in.read {
			if output.(balances) == s {
				return []any{s}
			}
			return nil
		}
		moved := s
		moved[in.from] -= in.amount
		moved[in.to] += in.amount
		can := s[in.from] >= in.amount
		switch output.(string) {
		case outCommitted:
			if can {
				return []any{moved}
			}
		case outRefused:
			if !can {
				return []any{s}
			}
		case outNone:
			return []any{s}
		}
		return nil
	},
}

// classify turns a transfer's reply into its outcome.
func classify(t *testing.T, ans string, err error) string {
	switch {
	case err == nil && strings.HasPrefix(ans, "committed "):
		return outCommitted
	case err == nil:
		t.Errorf("transfer answered %q", ans)
		return outUnknown
	case strings.Contains(err.Error(), "insufficient funds"):
		return outRefused
	case strings.Contains(err.Error(), "outcome unknown"):
		return outUnknown
	case strings.Contains(err.Error(), "no quorum"), strings.Contains(err.Error(), "no cluster"):
		return outNone
	}
	return outUnknown // the node died under the call
}

// TestLedgerCluster: five voters. (1) Four clients send 1,000 transfers
// through every node while the leader is killed with SIGKILL: every
// transfer answered "committed" is in the chain the survivors agree on,
// no nonce is applied twice, the money is all there, and the history of
// calls and outcomes is linearizable (porcupine). (2) A 2|3 partition:
// the two refuse with "no quorum", the three go on; after healing, one
// chain. (3) Double spends sent to two nodes at once: exactly one
// commits. (4) All five restarted: the same head.
func TestLedgerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 nodes")
	}
	t.Parallel()
	ctx := t.Context()
	keys := make([]ledgerKey, 4)
	var allocs []string
	for i := range keys {
		keys[i] = newLedgerKey(t)
		allocs = append(allocs, keys[i].key, "1000")
	}
	cl, roots := ledgerCluster(t, 5, false, allocs...)
	alive := []bool{true, true, true, true, true}
	var amu sync.Mutex
	leaderIdx := func() int {
		for i, r := range roots {
			if alive[i] {
				if l := statusField(ctx, r, "leader"); l != "" && l != "none" {
					for j, m := range cl.nodes {
						if m.key == l {
							return j
						}
					}
				}
			}
		}
		return -1
	}

	// (1) Transfers under a leader's death.
	const perClient = 250 // 1,000 transfers in all, as the issue asks
	var hmu sync.Mutex
	var history []porcupine.Operation
	committed := map[string]string{} // line → "committed INDEX"
	var wg sync.WaitGroup
	start := time.Now()
	killed := make(chan struct{})
	var killOnce sync.Once
	victim := leaderIdx()
	if victim < 0 {
		t.Fatal("no leader")
	}
	nonces := make([]uint64, 4)
	for c := range keys {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for i := range perClient {
				if c == 0 && i == perClient/3 {
					killOnce.Do(func() {
						amu.Lock()
						alive[victim] = false
						amu.Unlock()
						cl.nodes[victim].kill()
						close(killed)
					})
				}
				to := (c + 1 + rng.IntN(3)) % 4
				amt := int64(1 + rng.IntN(60))
				nonces[c]++
				line := keys[c].sign(t, fmt.Sprintf("transfer %s %s %d %d", keys[c].key, keys[to].key, amt, nonces[c]))
				amu.Lock()
				via := (c + i) % 5
				for !alive[via] {
					via = (via + 1) % 5
				}
				amu.Unlock()
				call := time.Since(start).Nanoseconds()
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				ans, err := submit(cctx, roots[via], line)
				cancel()
				ret := time.Since(start).Nanoseconds()
				out := classify(t, ans, err)
				if out == outUnknown {
					ret = 1 << 62 // it may take effect at any time after its call
				}
				hmu.Lock()
				history = append(history, porcupine.Operation{ClientId: c, Input: transferIn{from: c, to: to, amount: amt},
					Call: call, Output: out, Return: ret, Metadata: nonces[c]})
				if out == outCommitted {
					committed[line] = ans
				}
				hmu.Unlock()
			}
		})
	}
	wg.Wait()
	<-killed
	t.Logf("%d transfers, %d committed, leader %s killed, in %v", len(history), len(committed), cl.nodes[victim].key[:8], time.Since(start))
	survivor := roots[(victim+1)%5]
	settled := func(what string) (head string) {
		t.Helper()
		testutil.WaitFor(t, what, func() bool {
			heads := map[string]bool{}
			for i, r := range roots {
				if !alive[i] {
					continue
				}
				if statusField(ctx, r, "pending") != "0" || statusField(ctx, r, "leader") == "none" {
					return false
				}
				h, _ := readPath(ctx, r, "/ledger/head")
				heads[h] = true
				head = h
			}
			return len(heads) == 1
		})
		return head
	}
	settled("the survivors to agree on one sealed chain")
	t.Logf("survivors settled at %v", time.Since(start))
	blocks := readChain(t, survivor)
	seen := map[string]bool{}
	inChain := map[string]uint64{}
	for _, b := range blocks {
		for _, tx := range b.Txs {
			p, err := ledger.ParseTx(tx.Line)
			if err != nil {
				t.Fatal(err)
			}
			sn := p.Signer + " " + strconv.FormatUint(p.Nonce, 10)
			if seen[sn] {
				t.Errorf("nonce applied twice: %s", sn)
			}
			seen[sn] = true
			inChain[tx.Line] = tx.Index
		}
	}
	for line, ans := range committed {
		if idx, ok := inChain[line]; !ok || "committed "+strconv.FormatUint(idx, 10) != ans {
			t.Errorf("%s: answered %q, in the chain at %d (%v)", line[:40], ans, idx, ok)
		}
	}
	var final balances
	var sum int64
	for i, k := range keys {
		s, err := readPath(ctx, survivor, "/ledger/accounts/"+k.key+"/balance")
		if err != nil {
			t.Fatal(err)
		}
		final[i], _ = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		sum += final[i]
	}
	if sum != 4000 {
		t.Errorf("sum of balances %d, want 4000: %v", sum, final)
	}
	// A call whose outcome the client never learned is settled by the
	// chain: in it, it took effect at some time after its call; not in
	// it, never.
	var unknown int
	for i, op := range history {
		if op.Output != outUnknown {
			continue
		}
		unknown++
		in := op.Input.(transferIn)
		history[i].Output = outNone
		for line := range inChain {
			p, _ := ledger.ParseTx(line)
			if p.Signer == keys[in.from].key && p.To == keys[in.to].key && int64(p.Amount) == in.amount && p.Nonce == uint64(op.Metadata.(uint64)) {
				history[i].Output = outCommitted
			}
		}
	}
	end := time.Since(start).Nanoseconds()
	history = append(history, porcupine.Operation{ClientId: 4, Input: transferIn{read: true}, Call: end, Output: final, Return: end + 1})
	t1 := time.Now()
	if res := porcupine.CheckOperationsTimeout(transferModel.ToModel(), history, 60*time.Second); res != porcupine.Ok {
		t.Errorf("history of %d calls is not linearizable: %v", len(history), res)
	}
	t.Logf("porcupine: %d calls (%d of unknown outcome, settled by the chain) linearizable, checked in %v", len(history), unknown, time.Since(t1))

	// The killed node comes back and catches up.
	cl.nodes[victim].restart()
	roots[victim] = cl.nodes[victim].client(userName(t))
	amu.Lock()
	alive[victim] = true
	amu.Unlock()
	settled("the restarted node to catch up")
	t.Logf("killed node caught up at %v", time.Since(start))

	// (2) A 2|3 partition, both ways round.
	nonce := nonces[0]
	minority, majority := []int{0, 1}, []int{2, 3, 4}
	for _, i := range majority {
		cl.nodes[i].partition()
		alive[i] = false
	}
	nonce++
	t0 := time.Now()
	_, err := submit(ctx, roots[minority[0]], keys[0].sign(t, fmt.Sprintf("transfer %s %s 1 %d", keys[0].key, keys[1].key, nonce)))
	if err == nil || !strings.Contains(err.Error(), "no quorum") {
		t.Errorf("a transfer in the minority: %v, want no quorum", err)
	}
	t.Logf("the minority refused in %v: %v", time.Since(t0), err)
	for _, i := range majority {
		cl.nodes[i].heal()
		alive[i] = true
	}
	for _, i := range minority {
		cl.nodes[i].partition()
		alive[i] = false
	}
	nonce++
	testutil.WaitFor(t, "the majority to commit", func() bool {
		nonce++
		ans, err := submit(ctx, roots[majority[0]], keys[0].sign(t, fmt.Sprintf("transfer %s %s 1 %d", keys[0].key, keys[1].key, nonce)))
		return err == nil && strings.HasPrefix(ans, "committed ")
	})
	for _, i := range minority {
		cl.nodes[i].heal()
		alive[i] = true
	}
	settled("one chain after the partition heals")
	t.Logf("partitions done at %v", time.Since(start))

	// (3) Double spends: the same nonce to two recipients, and the whole
	// balance twice, sent to two nodes at once.
	bal := func(i int) int64 {
		s, _ := readPath(ctx, roots[0], "/ledger/accounts/"+keys[i].key+"/balance")
		v, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return v
	}
	settled("balances to settle")
	all := bal(2)
	nonce2 := uint64(perClient)
	for round, lines := range [][2]string{
		{keys[2].sign(t, fmt.Sprintf("transfer %s %s 1 %d", keys[2].key, keys[0].key, nonce2+1)),
			keys[2].sign(t, fmt.Sprintf("transfer %s %s 1 %d", keys[2].key, keys[1].key, nonce2+1))},
		{keys[2].sign(t, fmt.Sprintf("transfer %s %s %d %d", keys[2].key, keys[0].key, all-1, nonce2+2)),
			keys[2].sign(t, fmt.Sprintf("transfer %s %s %d %d", keys[2].key, keys[1].key, all-1, nonce2+3))},
	} {
		var oks int
		var dmu sync.Mutex
		var dwg sync.WaitGroup
		for i, line := range lines {
			dwg.Go(func() {
				ans, err := submit(ctx, roots[1+2*i], line)
				dmu.Lock()
				defer dmu.Unlock()
				if err == nil && strings.HasPrefix(ans, "committed ") {
					oks++
				} else if err == nil || !(strings.Contains(err.Error(), "replayed") || strings.Contains(err.Error(), "insufficient funds")) {
					t.Errorf("double spend %d: %q %v", round, ans, err)
				}
			})
		}
		dwg.Wait()
		if oks != 1 {
			t.Errorf("double spend %d: %d committed, want 1", round, oks)
		}
	}

	// (4) All five restarted: the same head. Two start from a snapshot
	// and the log after it, the others from the whole log.
	t.Logf("double spends done at %v", time.Since(start))
	head := settled("the chain to settle before the restart")
	for _, m := range cl.nodes[:2] {
		if err := m.ctl("/ledger/ctl", "snapshot"); err != nil {
			t.Fatal(err)
		}
	}
	var swg sync.WaitGroup
	for _, m := range cl.nodes {
		swg.Go(m.stop)
	}
	swg.Wait()
	t.Logf("all stopped at %v", time.Since(start))
	for i, m := range cl.nodes {
		m.restart()
		roots[i] = m.client(userName(t))
	}
	t.Logf("restarted at %v", time.Since(start))
	if again := settled("the restarted group to settle"); again != head {
		t.Errorf("head after restarting all: %q, before %q", again, head)
	}
	if got := readChain(t, roots[3]); len(got) != len(readChain(t, roots[0])) {
		t.Error("chains differ in length after the restart")
	}
	t.Logf("restart of all done at %v", time.Since(start))

	// The chain checks offline, as a directory of blocks and as one
	// file; a tampered copy does not.
	chain := shortTemp(t)
	var whole strings.Builder
	for i, b := range readChain(t, roots[0]) {
		os.WriteFile(filepath.Join(chain, strconv.Itoa(i)), []byte(b.Text()), 0600)
		whole.WriteString(b.Text())
	}
	os.WriteFile(filepath.Join(chain, "all"), []byte(whole.String()), 0600)
	for _, p := range []string{chain, filepath.Join(chain, "all")} {
		if out, err := cl.nodes[0].run("", "ledger", "verify", p); err != nil || strings.TrimSpace(out) != strings.TrimSpace(head) {
			t.Errorf("ledger verify %s: %q %v, want %q", p, out, err, head)
		}
	}
	os.WriteFile(filepath.Join(chain, "all"), []byte(strings.Replace(whole.String(), " 1 ", " 2 ", 1)), 0600)
	if _, err := cl.nodes[0].run("", "ledger", "verify", filepath.Join(chain, "all")); err == nil {
		t.Error("a tampered chain verified")
	}
	// Signing with the node's key, by the command and by /ledger/sign:
	// the signature holds, the node's account has no money.
	me := cl.nodes[1]
	signed, err := me.run("transfer "+me.key+" "+keys[0].key+" 1 1\n", "ledger", "sign")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := submit(ctx, roots[1], strings.TrimSpace(signed)); err == nil || !strings.Contains(err.Error(), "insufficient funds") {
		t.Errorf("a transfer signed by cheshire ledger sign: %v", err)
	}
	viaFile, err := me.run("transfer "+me.key+" "+keys[0].key+" 1 1\n", "9p", "rdwr", "/ledger/sign")
	if err != nil || !strings.Contains(viaFile, strings.TrimSpace(signed)) { // ed25519 signs deterministically
		t.Errorf("/ledger/sign: %q %v", viaFile, err)
	}
}

// readChain reads and verifies every block through root.
func readChain(t *testing.T, root *styx.Fid) []*ledger.Block {
	t.Helper()
	ctx := t.Context()
	head, err := readPath(ctx, root, "/ledger/head")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var hash string
	fmt.Sscan(head, &n, &hash)
	var blocks []*ledger.Block
	for i := 0; i <= n; i++ {
		text, err := readPath(ctx, root, fmt.Sprintf("/ledger/blocks/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		b, err := ledger.ParseBlock(text)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		blocks = append(blocks, b)
	}
	got, err := ledger.VerifyChain(blocks)
	if err != nil || got != hash {
		t.Fatalf("chain: %v; head %s, /ledger/head %s", err, got, hash)
	}
	return blocks
}

// TestLocksCluster: three nodes, joined by key alone (their raft
// addresses from the DHT), take one lock in turns, each writing
// its fencing token at the start and end of its hold: no two holds
// overlap and tokens increase. A holder killed with SIGKILL loses the
// lock when its lease ends; until then a no-wait try is told who holds it.
func TestLocksCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 nodes")
	}
	t.Parallel()
	ctx := t.Context()
	cl, roots := ledgerCluster(t, 3, true)
	var mu sync.Mutex
	var events []string
	var wg sync.WaitGroup
	for i, r := range roots {
		wg.Go(func() {
			for range 5 {
				f, err := openLock(ctx, r, "turn")
				if err != nil {
					t.Error(err)
					return
				}
				tok := lockToken(t, f)
				mu.Lock()
				events = append(events, fmt.Sprintf("start %d %d", tok, i))
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // hold it a little
				mu.Lock()
				events = append(events, fmt.Sprintf("end %d %d", tok, i))
				mu.Unlock()
				f.Clunk(ctx)
			}
		})
	}
	wg.Wait()
	last := uint64(0)
	for i := 0; i+1 < len(events); i += 2 {
		var s, e string
		var t1, t2 uint64
		var n1, n2 int
		fmt.Sscan(events[i], &s, &t1, &n1)
		fmt.Sscan(events[i+1], &e, &t2, &n2)
		if s != "start" || e != "end" || t1 != t2 || n1 != n2 || t1 <= last {
			t.Fatalf("holds overlap or tokens go back: %q", events)
		}
		last = t1
	}
	if len(events) != 30 {
		t.Errorf("%d events, want 30", len(events))
	}

	// Garbage on a raft port is refused before raft reads it, and counted.
	_, hp, _ := strings.Cut(cl.nodes[0].ledgerStatus("addr"), "@")
	if c, err := net.Dial("tcp", hp); err == nil {
		c.Write([]byte("\x00\xff garbage, not TLS\r\n\r\n"))
		c.Close()
	}
	testutil.WaitFor(t, "the garbage refused and counted", func() bool {
		n, _ := strconv.Atoi(statusField(ctx, roots[0], "refused"))
		return n >= 1
	})

	// A holder killed: the lock is free once its lease ends.
	lead := statusField(ctx, roots[0], "leader")
	h := slices.IndexFunc(cl.nodes, func(m *member) bool { return m.key != lead })
	other := slices.IndexFunc(cl.nodes, func(m *member) bool { return m.key != lead && m != cl.nodes[h] })
	f, err := openLock(ctx, roots[h], "dead")
	if err != nil {
		t.Fatal(err)
	}
	tok := lockToken(t, f)
	ctl, err := roots[other].WalkPath(ctx, "/locks/ctl")
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Open(ctx, styx.ORDWR); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.WriteAt(ctx, []byte("trylock dead"), 0); err == nil || !strings.Contains(err.Error(), "lock held by "+cl.nodes[h].key) {
		t.Errorf("trylock of a held lock: %v", err)
	}
	// A waiting open is ended by its flush (the client cancels the call).
	fctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		f, err := openLock(fctx, roots[other], "dead")
		if err == nil {
			f.Clunk(ctx)
		}
		waited <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the open reach the node; if not, the cancel ends it before
	cancel()
	if err := <-waited; err == nil {
		t.Error("an open of a held lock returned after its flush")
	}
	cl.nodes[h].kill()
	if _, err := ctl.WriteAt(ctx, []byte("lock dead"), 0); err != nil {
		t.Fatalf("lock after the holder's death: %v", err)
	}
	b := make([]byte, 100)
	n, _ := ctl.ReadAt(ctx, b, 0)
	var tok2 uint64
	if _, err := fmt.Sscanf(string(b[:n]), "locked dead %d", &tok2); err != nil || tok2 <= tok {
		t.Errorf("after the holder's death: %q, token before %d", b[:n], tok)
	}
	ctl.Clunk(ctx)
}

// openLock takes the lock name: creating /locks/NAME opens it for
// writing, or opening it if it exists.
func openLock(ctx context.Context, root *styx.Fid, name string) (*styx.Fid, error) {
	if f, err := root.WalkPath(ctx, "/locks/"+name); err == nil {
		if err := f.Open(ctx, styx.ORDWR); err != nil {
			f.Clunk(ctx)
			return nil, err
		}
		return f, nil
	}
	d, err := root.WalkPath(ctx, "/locks")
	if err != nil {
		return nil, err
	}
	if err := d.Create(ctx, name, 0666, styx.ORDWR); err != nil {
		d.Clunk(ctx)
		if strings.Contains(err.Error(), "exists") {
			return openLock(ctx, root, name)
		}
		return nil, err
	}
	return d, nil
}

func lockToken(t *testing.T, f *styx.Fid) uint64 {
	b := make([]byte, 512)
	n, err := f.ReadAt(t.Context(), b, 0)
	if err != nil && n == 0 {
		t.Fatal(err)
	}
	var tok uint64
	if _, err := fmt.Sscanf(string(b[:n]), "token %d", &tok); err != nil {
		t.Fatalf("lock file reads %q", b[:n])
	}
	return tok
}
