package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cheshire/nodekey"
)

// A block is text:
//
//	block N
//	prev HASH                  (64 zeros for block 0)
//	time RFC3339NANO           (the sealing leader's clock)
//	alloc KEY AMOUNT           (block 0 only: the genesis allocation)
//	tx INDEX TRANSACTION       (each committed transaction, by raft log index)
//	sealer KEY
//	sig SIGNATURE
//
// Its hash is the SHA-256 of every line before "sig", and the signature
// is the sealer's ed25519 signature of sealContext, a space and that
// hash in hex. The next block's prev is this hash, so a chain read from
// files can be checked without the cluster (VerifyChain).

const (
	sealContext = "cheshire-ledger-block-v1"
	zeroHash    = "0000000000000000000000000000000000000000000000000000000000000000"
	maxBlock    = 4 << 20
)

// Block is a parsed block.
type Block struct {
	N      uint64
	Prev   string
	Time   time.Time
	Allocs []Alloc
	Txs    []BlockTx
	Sealer string
	Sig    []byte
	Hash   string // of the text before the sig line
}

// Alloc is a genesis allocation.
type Alloc struct {
	Key    string
	Amount uint64
}

// BlockTx is a transaction of a block with its log index.
type BlockTx struct {
	Index uint64
	Line  string
}

// body renders the block without its sig line.
func (b *Block) body() string {
	var s strings.Builder
	fmt.Fprintf(&s, "block %d\nprev %s\ntime %s\n", b.N, b.Prev, b.Time.UTC().Format(time.RFC3339Nano))
	for _, a := range b.Allocs {
		fmt.Fprintf(&s, "alloc %s %d\n", a.Key, a.Amount)
	}
	for _, t := range b.Txs {
		fmt.Fprintf(&s, "tx %d %s\n", t.Index, t.Line)
	}
	fmt.Fprintf(&s, "sealer %s\n", b.Sealer)
	return s.String()
}

// hash computes the block's hash from its body.
func (b *Block) hash() string {
	h := sha256.Sum256([]byte(b.body()))
	return hex.EncodeToString(h[:])
}

// seal computes the hash and signs it with key.
func (b *Block) seal(key ed25519.PrivateKey) {
	b.Sealer = nodekey.Encode(key.Public().(ed25519.PublicKey))
	b.Hash = b.hash()
	b.Sig = ed25519.Sign(key, []byte(sealContext+" "+b.Hash))
}

// Text is the whole block.
func (b *Block) Text() string { return b.body() + "sig " + hex.EncodeToString(b.Sig) + "\n" }

// checkSeal recomputes the hash and checks the sealer's signature.
func (b *Block) checkSeal() error {
	k, err := nodekey.Decode(b.Sealer)
	if err != nil {
		return fmt.Errorf("bad sealer: %v", err)
	}
	b.Hash = b.hash()
	if !ed25519.Verify(k, []byte(sealContext+" "+b.Hash), b.Sig) {
		return fmt.Errorf("bad block %d: signature does not match its sealer", b.N)
	}
	return nil
}

// ParseBlock parses a block's text (it checks the form, not the seal).
func ParseBlock(text string) (*Block, error) {
	if len(text) > maxBlock {
		return nil, errors.New("block too large")
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 5 {
		return nil, errors.New("bad block: too short")
	}
	b := &Block{}
	var err error
	field := func(i int, name string) (string, error) {
		k, v, ok := strings.Cut(lines[i], " ")
		if !ok || k != name {
			return "", fmt.Errorf("bad block: line %d: want %s", i+1, name)
		}
		return v, nil
	}
	v, err := field(0, "block")
	if err != nil {
		return nil, err
	}
	if b.N, err = strconv.ParseUint(v, 10, 64); err != nil {
		return nil, fmt.Errorf("bad block number %q", v)
	}
	if b.Prev, err = field(1, "prev"); err != nil {
		return nil, err
	}
	if v, err = field(2, "time"); err != nil {
		return nil, err
	}
	if b.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return nil, fmt.Errorf("bad block time %q", v)
	}
	i := 3
	for ; i < len(lines)-2; i++ {
		k, rest, _ := strings.Cut(lines[i], " ")
		switch k {
		case "alloc":
			w := strings.Fields(rest)
			if len(w) != 2 {
				return nil, fmt.Errorf("bad block: line %d: want alloc KEY AMOUNT", i+1)
			}
			amt, err := amount(w[1], "allocation")
			if err != nil {
				return nil, err
			}
			b.Allocs = append(b.Allocs, Alloc{Key: w[0], Amount: amt})
		case "tx":
			idx, line, _ := strings.Cut(rest, " ")
			n, err := strconv.ParseUint(idx, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("bad block: line %d: bad index %q", i+1, idx)
			}
			b.Txs = append(b.Txs, BlockTx{Index: n, Line: line})
		default:
			return nil, fmt.Errorf("bad block: line %d: unknown line %q", i+1, k)
		}
	}
	if b.Sealer, err = field(i, "sealer"); err != nil {
		return nil, err
	}
	if v, err = field(i+1, "sig"); err != nil {
		return nil, err
	}
	if b.Sig, err = hex.DecodeString(v); err != nil || len(b.Sig) != ed25519.SignatureSize {
		return nil, errors.New("bad block signature")
	}
	return b, nil
}

// VerifyChain checks blocks 0..n-1 given in order: numbers, prev hashes,
// every seal and every transaction's signature. It returns the head's
// hash.
func VerifyChain(blocks []*Block) (string, error) {
	prev := zeroHash
	for i, b := range blocks {
		if b.N != uint64(i) {
			return "", fmt.Errorf("bad chain: block %d where %d was due", b.N, i)
		}
		if b.Prev != prev {
			return "", fmt.Errorf("bad chain: block %d: prev %s, want %s", b.N, b.Prev, prev)
		}
		if i > 0 && len(b.Allocs) > 0 {
			return "", fmt.Errorf("bad chain: block %d allocates money", b.N)
		}
		if err := b.checkSeal(); err != nil {
			return "", err
		}
		for _, t := range b.Txs {
			tx, err := ParseTx(t.Line)
			if err != nil {
				return "", fmt.Errorf("block %d: tx %d: %w", b.N, t.Index, err)
			}
			if err := tx.Verify(); err != nil {
				return "", fmt.Errorf("block %d: tx %d: %w", b.N, t.Index, err)
			}
		}
		prev = b.Hash
	}
	return prev, nil
}
