package ledger

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/raftgroup"
)

// MintPerDay is the only way money is made after genesis: when a
// storage contract is settled after its whole term (fulfilled), its
// holder is paid the escrow and MintPerDay new units for each day of
// the term. Nothing else creates money; transfers and contracts move it.
const MintPerDay = 1

// State is the ledger's replicated state machine (a raftgroup.Part).
// Commands are text: "genesis\n" and a block's text, "tx " and a
// transaction, "seal N UPTO TIME SEALER SIG" (the leader closing the
// pending transactions up to log index UPTO into block N).
type State struct {
	mu sync.RWMutex
	s  state // guarded by mu
}

// state is what a snapshot holds.
type state struct {
	Balances  map[string]uint64
	Nonces    map[string]uint64
	Contracts map[string]*Contract
	Endpoints map[string]*Endpoint
	History   map[string][]string // by key: "INDEX LINE" of its transactions
	Pending   []BlockTx           // committed, not yet in a block
	Blocks    []string            // texts
	Head      string              // hash of the last block
	Supply    uint64              // all money: genesis plus minted
	Refused   map[string]uint64   // refused commands by reason
}

// Contract is a storage contract: the payer pays the holder Price a day
// for Days, held in escrow from its opening.
type Contract struct {
	ID, Payer, Holder string
	Price, Days       uint64
	Escrow            uint64
	Start, End        time.Time
	State             string // active, fulfilled, cancelled
}

// Endpoint is a principal's addresses, as it signed them.
type Endpoint struct {
	Addrs []string
	Index uint64
	Line  string
}

var _ raftgroup.Part = (*State)(nil)

// NewState returns an empty ledger.
func NewState() *State {
	st := &State{}
	st.s.init()
	return st
}

func (s *state) init() {
	*s = state{Balances: map[string]uint64{}, Nonces: map[string]uint64{}, Contracts: map[string]*Contract{},
		Endpoints: map[string]*Endpoint{}, History: map[string][]string{}, Refused: map[string]uint64{}, Head: zeroHash}
}

// Apply implements raftgroup.Part.
func (st *State) Apply(index uint64, now time.Time, cmd []byte) raftgroup.Result {
	st.mu.Lock()
	defer st.mu.Unlock()
	verb, rest, _ := strings.Cut(string(cmd), " ")
	var r raftgroup.Result
	var err error
	switch {
	case verb == "tx":
		r.Answer, err = st.s.applyTx(index, now, rest)
	case verb == "seal":
		r.Answer, err = st.s.applySeal(rest)
	case strings.HasPrefix(string(cmd), "genesis\n"):
		r.Answer, err = st.s.applyGenesis(strings.TrimPrefix(string(cmd), "genesis\n"))
	default:
		err = fmt.Errorf("unknown ledger command %q", verb)
	}
	if err != nil {
		st.s.countRefusal(err.Error())
		r.Err = err.Error()
	}
	return r
}

// maxReasons bounds the kinds of refusal counted; more are "other".
const maxReasons = 32

// countRefusal counts a refusal by its first two words before any ":"
// that carry no number, name or quote ("bad nonce", "insufficient
// funds"), so that the counts cannot grow with what is refused.
func (s *state) countRefusal(text string) {
	reason := reasonOf(text)
	if _, ok := s.Refused[reason]; !ok && len(s.Refused) >= maxReasons {
		reason = "other"
	}
	s.Refused[reason]++
}

// reasonOf is the kind of a refusal's text.
func reasonOf(text string) string {
	head, _, _ := strings.Cut(text, ":")
	var words []string
	for _, w := range strings.Fields(head) {
		if len(words) == 2 || strings.ContainsAny(w, "0123456789\"'") || len(w) > 16 {
			break
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		return "other"
	}
	return strings.Join(words, " ")
}

func (s *state) applyGenesis(text string) (string, error) {
	if len(s.Blocks) > 0 {
		return "", fmt.Errorf("already a genesis block")
	}
	b, err := ParseBlock(text)
	if err != nil {
		return "", err
	}
	if b.N != 0 || b.Prev != zeroHash || len(b.Txs) > 0 {
		return "", fmt.Errorf("bad genesis block")
	}
	if err := b.checkSeal(); err != nil {
		return "", err
	}
	for _, a := range b.Allocs {
		if err := checkKey(a.Key); err != nil {
			return "", err
		}
		if s.Supply+a.Amount >= maxAmount {
			return "", fmt.Errorf("bad genesis block: allocation too large")
		}
		s.Supply += a.Amount
		s.Balances[a.Key] += a.Amount
	}
	s.Blocks = append(s.Blocks, b.Text())
	s.Head = b.Hash
	return "block 0 " + b.Hash, nil
}

func (s *state) applyTx(index uint64, now time.Time, line string) (string, error) {
	if len(s.Blocks) == 0 {
		return "", fmt.Errorf("no genesis block yet")
	}
	t, err := ParseTx(line)
	if err != nil {
		return "", err
	}
	if err := t.Verify(); err != nil {
		return "", err
	}
	if last := s.Nonces[t.Signer]; t.Nonce <= last {
		return "", fmt.Errorf("bad nonce %d: replayed (the last of %s is %d)", t.Nonce, t.Signer, last)
	}
	keys := []string{t.Signer}
	switch t.Verb {
	case "transfer":
		if err := s.move(t.Signer, t.To, t.Amount); err != nil {
			return "", err
		}
		keys = append(keys, t.To)
	case "contract":
		ks, err := s.contract(t, now)
		if err != nil {
			return "", err
		}
		keys = append(keys, ks...)
	case "endpoint":
		s.Endpoints[t.Signer] = &Endpoint{Addrs: t.Addrs, Index: index, Line: t.Line()}
	}
	s.Nonces[t.Signer] = t.Nonce
	entry := strconv.FormatUint(index, 10) + " " + t.Line()
	for i, k := range keys {
		if i > 0 && k == keys[0] {
			continue
		}
		s.History[k] = append(s.History[k], entry)
	}
	s.Pending = append(s.Pending, BlockTx{Index: index, Line: t.Line()})
	return fmt.Sprintf("committed %d", index), nil
}

// move takes amount from one account to another.
func (s *state) move(from, to string, amount uint64) error {
	if s.Balances[from] < amount {
		return fmt.Errorf("insufficient funds: %s has %d, not %d", from, s.Balances[from], amount)
	}
	s.Balances[from] -= amount
	if s.Balances[from] == 0 {
		delete(s.Balances, from)
	}
	s.Balances[to] += amount // below maxAmount: all money is
	return nil
}

// contract opens or settles a contract and returns the other keys it
// concerns.
func (s *state) contract(t *Tx, now time.Time) ([]string, error) {
	switch t.Op {
	case "open":
		if _, ok := s.Contracts[t.ID]; ok {
			return nil, fmt.Errorf("contract %s already exists", t.ID)
		}
		hi, escrow := bits.Mul64(t.Amount, t.Days)
		if hi != 0 || escrow >= maxAmount {
			return nil, fmt.Errorf("bad contract: price times days too large")
		}
		if s.Balances[t.Signer] < escrow {
			return nil, fmt.Errorf("insufficient funds: %s has %d, the contract needs %d", t.Signer, s.Balances[t.Signer], escrow)
		}
		s.Balances[t.Signer] -= escrow
		s.Contracts[t.ID] = &Contract{ID: t.ID, Payer: t.Signer, Holder: t.Holder, Price: t.Amount, Days: t.Days,
			Escrow: escrow, Start: now, End: now.Add(time.Duration(t.Days) * 24 * time.Hour), State: "active"}
		return []string{t.Holder}, nil
	case "settle":
		c, ok := s.Contracts[t.ID]
		switch {
		case !ok:
			return nil, fmt.Errorf("no contract %s", t.ID)
		case c.State != "active":
			return nil, fmt.Errorf("contract %s already %s", t.ID, c.State)
		case t.Signer != c.Payer && t.Signer != c.Holder:
			return nil, fmt.Errorf("permission denied: %s is not a party of contract %s", t.Signer, t.ID)
		}
		if !now.Before(c.End) {
			mint := c.Days * MintPerDay
			if s.Supply+mint >= maxAmount {
				mint = 0
			}
			s.Balances[c.Holder] += c.Escrow + mint
			s.Supply += mint
			c.State, c.Escrow = "fulfilled", 0
			return []string{c.Payer, c.Holder}, nil
		}
		if t.Signer != c.Payer {
			return nil, fmt.Errorf("contract %s cannot be settled by its holder before %s", t.ID, c.End.UTC().Format(time.RFC3339))
		}
		days := uint64(now.Sub(c.Start) / (24 * time.Hour))
		paid := min(days*c.Price, c.Escrow)
		s.Balances[c.Holder] += paid
		s.Balances[c.Payer] += c.Escrow - paid
		c.State, c.Escrow = "cancelled", 0
		return []string{c.Payer, c.Holder}, nil
	}
	return nil, fmt.Errorf("bad contract operation %q", t.Op)
}

// sealCmd is the command that closes the pending transactions up to
// upto into block n, sealed at t by the sealer's key.
func sealCmd(n, upto uint64, t time.Time, sealer string, sig []byte) string {
	return fmt.Sprintf("seal %d %d %d %s %s", n, upto, t.UnixNano(), sealer, hex.EncodeToString(sig))
}

// nextBlock makes block n from the pending transactions up to upto, or
// nil if there are none.
func (s *state) nextBlock(upto uint64, t time.Time) *Block {
	b := &Block{N: uint64(len(s.Blocks)), Prev: s.Head, Time: t}
	for _, p := range s.Pending {
		if p.Index > upto {
			break
		}
		b.Txs = append(b.Txs, p)
	}
	if len(b.Txs) == 0 {
		return nil
	}
	return b
}

func (s *state) applySeal(args string) (string, error) {
	w := strings.Fields(args)
	if len(w) != 5 {
		return "", fmt.Errorf("bad seal")
	}
	n, err1 := strconv.ParseUint(w[0], 10, 64)
	upto, err2 := strconv.ParseUint(w[1], 10, 64)
	ns, err3 := strconv.ParseInt(w[2], 10, 64)
	sig, err4 := hex.DecodeString(w[4])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return "", fmt.Errorf("bad seal")
	}
	if n != uint64(len(s.Blocks)) {
		return "", fmt.Errorf("bad seal: block %d where %d is next", n, len(s.Blocks)) // another leader's, or a repeat
	}
	b := s.nextBlock(upto, time.Unix(0, ns))
	if b == nil {
		return "", fmt.Errorf("bad seal: nothing to seal")
	}
	b.Sealer, b.Sig = w[3], sig
	if err := b.checkSeal(); err != nil {
		return "", err
	}
	s.Blocks = append(s.Blocks, b.Text())
	s.Head = b.Hash
	s.Pending = s.Pending[len(b.Txs):]
	return fmt.Sprintf("block %d %s", b.N, b.Hash), nil
}

// Snapshot implements raftgroup.Part.
func (st *State) Snapshot() ([]byte, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return json.Marshal(&st.s)
}

// Restore implements raftgroup.Part.
func (st *State) Restore(data []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.init()
	if data == nil {
		return nil
	}
	if err := json.Unmarshal(data, &st.s); err != nil {
		return err
	}
	if st.s.Refused == nil {
		st.s.Refused = map[string]uint64{}
	}
	return nil
}

// Balance returns a key's balance and last nonce.
func (st *State) Balance(key string) (balance, nonce uint64) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.s.Balances[key], st.s.Nonces[key]
}

// Accounts lists the keys with a balance or history.
func (st *State) Accounts() []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	seen := map[string]bool{}
	for k := range st.s.Balances {
		seen[k] = true
	}
	for k := range st.s.History {
		seen[k] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// History is a key's transactions, one "INDEX LINE" a line.
func (st *State) History(key string) string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	var b strings.Builder
	for _, l := range st.s.History[key] {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// Block returns block n's text.
func (st *State) Block(n uint64) (string, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if n >= uint64(len(st.s.Blocks)) {
		return "", false
	}
	return st.s.Blocks[n], true
}

// Head is "N HASH" of the last block, and the count of pending
// transactions.
func (st *State) Head() (n int, hash string, pending int) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.s.Blocks) - 1, st.s.Head, len(st.s.Pending)
}

// Supply is the sum of all balances and escrows.
func (st *State) Supply() uint64 {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.s.Supply
}

// pendingBlock is the block the leader would seal now.
func (st *State) pendingBlock(t time.Time) (*Block, uint64) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if len(st.s.Pending) == 0 || len(st.s.Blocks) == 0 {
		return nil, 0
	}
	upto := st.s.Pending[len(st.s.Pending)-1].Index
	return st.s.nextBlock(upto, t), upto
}

// Contract returns a contract's text.
func (st *State) Contract(id string) (string, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	c, ok := st.s.Contracts[id]
	if !ok {
		return "", false
	}
	return fmt.Sprintf("id %s\npayer %s\nholder %s\nprice %d\ndays %d\nescrow %d\nstart %s\nend %s\nstate %s\n",
		c.ID, c.Payer, c.Holder, c.Price, c.Days, c.Escrow, c.Start.UTC().Format(time.RFC3339), c.End.UTC().Format(time.RFC3339), c.State), true
}

// Contracts lists contract ids.
func (st *State) Contracts() []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return slices.Sorted(maps.Keys(st.s.Contracts))
}

// ActiveContracts returns the active contracts' holders by id, for
// placement (the store).
func (st *State) ActiveContracts() map[string]string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	out := map[string]string{}
	for id, c := range st.s.Contracts {
		if c.State == "active" {
			out[id] = c.Holder
		}
	}
	return out
}

// Holders returns, for the contracts payer pays for, the holders with an
// active contract and those whose every contract has ended (fulfilled
// or cancelled): the store places fragments with the first, and no
// longer with the second.
func (st *State) Holders(payer string) (active, ended map[string]bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	active, ended = map[string]bool{}, map[string]bool{}
	for _, c := range st.s.Contracts {
		if c.Payer != payer {
			continue
		}
		if c.State == "active" {
			active[c.Holder] = true
		} else {
			ended[c.Holder] = true
		}
	}
	for h := range active {
		delete(ended, h)
	}
	return active, ended
}

// Endpoint returns a key's registered addresses and the signed line.
func (st *State) Endpoint(key string) ([]string, string, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	e, ok := st.s.Endpoints[key]
	if !ok {
		return nil, "", false
	}
	return append([]string(nil), e.Addrs...), e.Line, true
}

// Endpoints lists the keys with endpoints.
func (st *State) Endpoints() []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return slices.Sorted(maps.Keys(st.s.Endpoints))
}

// Refused is the count of refused commands by reason, one a line.
func (st *State) Refused() string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(st.s.Refused)) {
		fmt.Fprintf(&b, "refused %q %d\n", k, st.s.Refused[k])
	}
	return b.String()
}
