// Package ledger serves /ledger, a replicated, signed ledger on the
// node's Raft group (raftgroup): accounts keyed by ed25519 keys, signed
// text transactions (transfers, storage contracts, endpoint
// registrations) with a nonce per account, and hash-chained blocks, each
// signed by the leader that sealed it. See README.md for the file tree.
package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/nodekey"
	"cheshire/raftgroup"
	"cheshire/synth"
)

// Part is the name of the ledger's state machine in the raft group.
const Part = "ledger"

// DefaultGenesis is the allocation of a bootstrap that names none: this
// much to the bootstrapping node's key.
const DefaultGenesis = 1_000_000

// applyWait bounds how long a committed transaction waits to be applied
// here before it is answered.
const applyWait = 2 * time.Second

// sealEvery is how often the leader closes pending transactions into a
// block.
const sealEvery = 50 * time.Millisecond

// Ledger is the /ledger file server.
type Ledger struct {
	*synth.Server
	g    *raftgroup.Group
	st   *State
	key  ed25519.PrivateKey
	id   string
	log  *slog.Logger
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu   sync.Mutex
	here map[string]uint64 // guarded by mu: transactions refused here before raft, by reason
}

// Options configure a Ledger.
type Options struct {
	Group *raftgroup.Group
	State *State // the Part registered in Group as Part
	Key   ed25519.PrivateKey
	Owner string
	Log   *slog.Logger
	// Resolve, if set, finds a node's raft address (KEY@HOST:PORT) by
	// its key, for a join that gives none (cmd: its DHT record).
	Resolve func(ctx context.Context, key string) (string, error)
}

// New serves the ledger of o.Group and starts sealing blocks while this
// node leads.
//
//	/ledger/ctl            bootstrap, join, leave, promote, demote, snapshot
//	/ledger/status         the raft group: state, leader, term, indexes, members
//	/ledger/tx             write a signed transaction, read "committed INDEX"
//	/ledger/sign           write an unsigned one of the node's key, read it signed (owner only)
//	/ledger/head           "N HASH" of the last block
//	/ledger/blocks/N       block N's text
//	/ledger/accounts/KEY/balance, nonce, history
//	/ledger/contracts/ID   a storage contract
//	/ledger/endpoints/KEY  a principal's signed addresses
func New(o Options) *Ledger {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Ledger{g: o.Group, st: o.State, key: o.Key, id: nodekey.Encode(o.Key.Public().(ed25519.PublicKey)), log: o.Log,
		here: map[string]uint64{}}
	root := synth.NewDir("ledger", 0555)
	root.Add(synth.Ctl("ctl", 0600, l.cmds(o.Resolve), nil))
	root.Add(synth.String("status", 0444, l.status))
	root.Add(synth.Query("tx", 0666, l.answerTx))
	root.Add(synth.Query("sign", 0600, l.answerSign))
	root.Add(synth.String("head", 0444, func(ctx context.Context) string {
		n, h, _ := l.st.Head()
		if n < 0 {
			return ""
		}
		return fmt.Sprintf("%d %s\n", n, h)
	}))
	blocks := synth.NewDir("blocks", 0555)
	blocks.SetGen(synth.GenNames(func(ctx context.Context) []string {
		n, _, _ := l.st.Head()
		out := make([]string, 0, n+1)
		for i := 0; i <= n; i++ {
			out = append(out, strconv.Itoa(i))
		}
		return out
	}, func(name string) synth.Node {
		n, _ := strconv.ParseUint(name, 10, 64)
		text, _ := l.st.Block(n)
		return synth.Static(name, 0444, []byte(text))
	}))
	root.Add(blocks)
	accounts := synth.NewDir("accounts", 0555)
	mkAccount := func(key string) synth.Node {
		d := synth.NewDir(key, 0555)
		d.Add(synth.String("balance", 0444, func(ctx context.Context) string {
			b, _ := l.st.Balance(key)
			return fmt.Sprintf("%d\n", b)
		}))
		d.Add(synth.String("nonce", 0444, func(ctx context.Context) string {
			_, n := l.st.Balance(key)
			return fmt.Sprintf("%d\n", n)
		}))
		d.Add(synth.String("history", 0444, func(ctx context.Context) string { return l.st.History(key) }))
		return d
	}
	accounts.SetGen(synth.GenNames(func(ctx context.Context) []string { return l.st.Accounts() }, mkAccount))
	accounts.SetLookup(func(ctx context.Context, name string) (synth.Node, error) {
		if checkKey(name) != nil {
			return nil, nil
		}
		return mkAccount(name), nil // any key: balance 0, no history
	})
	root.Add(accounts)
	contracts := synth.NewDir("contracts", 0555)
	contracts.SetGen(synth.GenNames(func(ctx context.Context) []string { return l.st.Contracts() }, func(id string) synth.Node {
		return synth.String(id, 0444, func(ctx context.Context) string { s, _ := l.st.Contract(id); return s })
	}))
	root.Add(contracts)
	endpoints := synth.NewDir("endpoints", 0555)
	endpoints.SetGen(synth.GenNames(func(ctx context.Context) []string { return l.st.Endpoints() }, func(key string) synth.Node {
		return synth.String(key, 0444, func(ctx context.Context) string {
			_, line, _ := l.st.Endpoint(key)
			return line + "\n"
		})
	}))
	root.Add(endpoints)
	l.Server = synth.NewServer(root, synth.WithOwner(o.Owner))
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	l.wg.Add(1)
	go l.sealLoop(ctx)
	return l
}

// Close stops sealing.
func (l *Ledger) Close() {
	l.stop()
	l.wg.Wait()
}

// State is the ledger's state machine.
func (l *Ledger) State() *State { return l.st }

func (l *Ledger) status(ctx context.Context) string {
	n, h, pending := l.st.Head()
	var b strings.Builder
	b.WriteString(l.g.Status())
	fmt.Fprintf(&b, "head %d %s\npending %d\nsupply %d\n", n, h, pending, l.st.Supply())
	b.WriteString(l.st.Refused())
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range slices.Sorted(maps.Keys(l.here)) {
		fmt.Fprintf(&b, "refusedhere %q %d\n", k, l.here[k])
	}
	return b.String()
}

// refuseHere counts a transaction refused before it reached raft.
func (l *Ledger) refuseHere(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := reasonOf(err.Error())
	if _, ok := l.here[r]; !ok && len(l.here) >= maxReasons {
		r = "other"
	}
	l.here[r]++
	return groupErr(err)
}

// cmds is /ledger/ctl's table.
func (l *Ledger) cmds(resolve func(context.Context, string) (string, error)) []synth.Cmd {
	return []synth.Cmd{
		{Name: "bootstrap", Min: 0, Max: -1, Usage: "bootstrap [KEY AMOUNT]...", Run: l.bootstrap},
		{Name: "join", Min: 1, Max: 2, Usage: "join KEY [KEY@HOST:PORT]", Run: func(ctx context.Context, a []string) error {
			return l.add(ctx, a, resolve, true)
		}},
		{Name: "promote", Min: 1, Max: 1, Usage: "promote KEY", Run: func(ctx context.Context, a []string) error {
			return l.add(ctx, a, resolve, true)
		}},
		{Name: "nonvoter", Min: 1, Max: 2, Usage: "nonvoter KEY [KEY@HOST:PORT]", Run: func(ctx context.Context, a []string) error {
			return l.add(ctx, a, resolve, false)
		}},
		{Name: "demote", Min: 1, Max: 1, Usage: "demote KEY", Run: func(ctx context.Context, a []string) error {
			return groupErr(l.g.Demote(ctx, a[0]))
		}},
		{Name: "leave", Min: 1, Max: 1, Usage: "leave KEY", Run: func(ctx context.Context, a []string) error {
			return groupErr(l.g.Remove(ctx, a[0]))
		}},
		{Name: "snapshot", Run: func(ctx context.Context, a []string) error { return groupErr(l.g.Snapshot()) }},
	}
}

// add adds a[0] as a voter or not, at a[1] or where resolve finds it.
func (l *Ledger) add(ctx context.Context, a []string, resolve func(context.Context, string) (string, error), voter bool) error {
	if err := checkKey(a[0]); err != nil {
		return groupErr(err)
	}
	addr := ""
	if len(a) > 1 {
		addr = a[1]
		if !strings.HasPrefix(addr, a[0]+"@") {
			addr = a[0] + "@" + addr
		}
	} else if resolve != nil {
		var err error
		if addr, err = resolve(ctx, a[0]); err != nil {
			return groupErr(err)
		}
	}
	return groupErr(l.g.AddVoter(ctx, a[0], addr, voter))
}

// bootstrap makes a one-node group and commits the genesis block: the
// allocations given, else DefaultGenesis to this node's key.
func (l *Ledger) bootstrap(ctx context.Context, a []string) error {
	if len(a)%2 != 0 {
		return errors.New("ledger: want KEY AMOUNT pairs")
	}
	b := &Block{N: 0, Prev: zeroHash, Time: time.Now()}
	var total uint64
	for i := 0; i < len(a); i += 2 {
		if err := checkKey(a[i]); err != nil {
			return groupErr(err)
		}
		amt, err := amount(a[i+1], "allocation")
		if err != nil {
			return groupErr(err)
		}
		if total += amt; total >= maxAmount {
			return errors.New("ledger: bad allocation: too large in all")
		}
		b.Allocs = append(b.Allocs, Alloc{Key: a[i], Amount: amt})
	}
	if len(b.Allocs) == 0 {
		b.Allocs = []Alloc{{Key: l.id, Amount: DefaultGenesis}}
	}
	b.seal(l.key)
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := l.g.Bootstrap(bctx); err != nil {
		return groupErr(err)
	}
	r, err := l.g.Apply(ctx, Part, []byte("genesis\n"+b.Text()))
	if err != nil {
		return groupErr(err)
	}
	if r.Err != "" {
		return refused(r.Err)
	}
	return nil
}

// answerTx commits the signed transactions written, one a line, and
// answers "committed INDEX" for each.
func (l *Ledger) answerTx(ctx context.Context, req []byte) ([]byte, error) {
	if req == nil {
		return []byte("write a signed transaction; read back committed INDEX\n"), nil
	}
	var out []byte
	lines := strings.Split(strings.TrimRight(string(req), "\n"), "\n")
	if len(lines) > 1024 {
		return nil, errors.New("ledger: too many transactions in one write: at most 1024")
	}
	for _, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		ans, err := l.Submit(ctx, line)
		if err != nil {
			if out == nil {
				return nil, err
			}
			return out, err
		}
		out = append(out, ans...)
		out = append(out, '\n')
	}
	return out, nil
}

// Submit checks and commits one signed transaction line and returns
// "committed INDEX", or why it was refused.
func (l *Ledger) Submit(ctx context.Context, line string) (string, error) {
	t, err := ParseTx(line)
	if err != nil {
		return "", l.refuseHere(err)
	}
	if err := t.Verify(); err != nil {
		return "", l.refuseHere(err)
	}
	r, err := l.g.Apply(ctx, Part, []byte("tx "+t.Line()))
	if err != nil {
		return "", groupErr(err)
	}
	if r.Err != "" {
		return "", refused(r.Err)
	}
	// Read your writes: this node's files show the transaction once it
	// answers (a follower applies it a little after the leader).
	wctx, cancel := context.WithTimeout(ctx, applyWait)
	l.g.Applied(wctx, r.Index)
	cancel()
	return r.Answer, nil
}

// answerSign signs with the node's key.
func (l *Ledger) answerSign(ctx context.Context, req []byte) ([]byte, error) {
	if req == nil {
		return []byte("write a transaction of this node's key (" + l.id + ") without signature; read it signed\n"), nil
	}
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimRight(string(req), "\n"), "\n") {
		s, err := Sign(line, l.key)
		if err != nil {
			return nil, groupErr(err)
		}
		out.WriteString(s + "\n")
	}
	return []byte(out.String()), nil
}

// groupErr is an error of the raft group as the ledger's.
func groupErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("ledger: %w", err)
}

// refused is a refusal of the state machine as an error.
func refused(reason string) error { return errors.New("ledger: " + reason) }

// sealLoop seals the pending transactions into a block every sealEvery
// while this node leads.
func (l *Ledger) sealLoop(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTicker(sealEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !l.g.IsLeader() {
			continue
		}
		b, upto := l.st.pendingBlock(time.Now())
		if b == nil {
			continue
		}
		b.seal(l.key)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := l.g.Apply(cctx, Part, []byte(sealCmd(b.N, upto, b.Time, b.Sealer, b.Sig)))
		cancel()
		if err != nil || r.Err != "" {
			l.log.Debug("seal not applied", "block", b.N, "err", err, "refused", r.Err)
		}
	}
}
