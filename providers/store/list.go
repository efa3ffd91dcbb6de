package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/zeebo/blake3"
)

// A List is a file's fragment list: what the write cap signs. It names
// the k+m fragments of one version of the file, and for each the hash of
// its piece of every stripe, so that a reader (or a repairer holding
// only the verify cap) can check every piece it is given. Holders is not
// signed: it says where each fragment was last placed, a hint that
// repair rewrites without the write cap (a wrong hint costs a lookup,
// never wrong bytes).
//
// Text form, one field a line:
//
//	cheshire-store-list 2      (1: pieces hashed with SHA-256)
//	pub BASE32                 the signing key
//	seq N                      the version; a holder keeps the highest
//	size N                     bytes of content
//	code K M SHARD             data and parity fragments; bytes of a piece
//	nonce HEX                  16 bytes: the content's cipher IV
//	frag I NAME HASH...        one a fragment, a hash a stripe
//	sig BASE32                 ed25519 over "cheshire store list\0" and all above
//	at I KEY                   unsigned: holder of fragment I
type List struct {
	V       int // format: 2 hashes pieces with BLAKE3, 1 with SHA-256
	Pub     ed25519.PublicKey
	Seq     uint64
	Size    int64
	K, M    int
	Shard   int
	Nonce   [16]byte
	Frags   []Frag
	Sig     []byte
	Holders []string // by fragment index; "" when unknown
}

// A Frag is one fragment of a List: the column of stripe pieces one
// holder keeps, in one file named Name.
type Frag struct {
	Name   string     // 64 hex digits
	Hashes [][32]byte // hash of each stripe's piece (List.sum)
}

// Limits of a List.
const (
	maxShards  = 256
	maxShard   = 16 << 20
	maxStripes = 1 << 20
	maxList    = 64 << 20
	maxKey     = 64
)

// listMagic is the first line of a list of format v (listV, or 1).
func listMagic(v int) string { return "cheshire-store-list " + strconv.Itoa(v) }

// listV is the format new lists are written in. Version 2 hashes pieces
// with BLAKE3-256, twice as fast as SHA-256 here (3.2 against 1.6
// GB/s a core on 256 KiB pieces, BENCHMARKS.md "Store: BLAKE3 pieces"): a write hashes
// (k+m)/k of its bytes and a read all of them. Version 1 lists (SHA-256)
// are still read, checked and repaired.
const listV = 2

// sum is the hash of a piece under l's format.
func (l *List) sum(p []byte) [32]byte {
	if l.V == 1 {
		return sha256.Sum256(p)
	}
	return blake3.Sum256(p)
}

var errBadList = errors.New("store: bad fragment list")

// Stripes is the number of stripes of l.
func (l *List) Stripes() int { return stripesOf(l.Size, l.K, l.Shard) }

func stripesOf(size int64, k, shard int) int {
	sz := int64(k) * int64(shard)
	return int((size + sz - 1) / sz)
}

// body renders the signed part.
func (l *List) body() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\npub %s\nseq %d\nsize %d\ncode %d %d %d\nnonce %x\n", listMagic(l.V),
		strings.ToLower(b32.EncodeToString(l.Pub)), l.Seq, l.Size, l.K, l.M, l.Shard, l.Nonce)
	for i, f := range l.Frags {
		fmt.Fprintf(&b, "frag %d %s", i, f.Name)
		for _, h := range f.Hashes {
			b.WriteByte(' ')
			b.WriteString(hex.EncodeToString(h[:]))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func signedMessage(body []byte) []byte {
	return append([]byte("cheshire store list\x00"), body...)
}

// Sign signs l with priv, setting Pub and Sig.
func (l *List) Sign(priv ed25519.PrivateKey) {
	l.Pub = priv.Public().(ed25519.PublicKey)
	l.Sig = ed25519.Sign(priv, signedMessage(l.body()))
}

// Marshal renders l, signature and hints included.
func (l *List) Marshal() []byte {
	b := l.body()
	b = fmt.Appendf(b, "sig %s\n", strings.ToLower(b32.EncodeToString(l.Sig)))
	for i, h := range l.Holders {
		if h != "" {
			b = fmt.Appendf(b, "at %d %s\n", i, h)
		}
	}
	return b
}

// ParseList parses a list and checks its signature against the key it
// names (the caller checks that key is the one it expects).
func ParseList(data []byte) (*List, error) {
	if len(data) > maxList {
		return nil, fmt.Errorf("%w: too large", errBadList)
	}
	bad := func(line int, why string) error { return fmt.Errorf("%w: line %d: %s", errBadList, line+1, why) }
	lines := strings.Split(string(data), "\n")
	l := &List{}
	switch {
	case len(lines) < 8:
		return nil, fmt.Errorf("%w: too short", errBadList)
	case lines[0] == listMagic(2):
		l.V = 2
	case lines[0] == listMagic(1):
		l.V = 1
	default:
		return nil, fmt.Errorf("%w: want %q first", errBadList, listMagic(listV))
	}
	field := func(i int, key string) (string, error) {
		v, ok := strings.CutPrefix(lines[i], key+" ")
		if !ok {
			return "", bad(i, "want "+key)
		}
		return v, nil
	}
	v, err := field(1, "pub")
	if err != nil {
		return nil, err
	}
	if pub, err := b32.DecodeString(strings.ToUpper(v)); err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, bad(1, "bad key")
	} else {
		l.Pub = pub
	}
	if v, err = field(2, "seq"); err != nil {
		return nil, err
	}
	if l.Seq, err = strconv.ParseUint(v, 10, 64); err != nil {
		return nil, bad(2, "bad seq")
	}
	if v, err = field(3, "size"); err != nil {
		return nil, err
	}
	if l.Size, err = strconv.ParseInt(v, 10, 64); err != nil || l.Size < 0 {
		return nil, bad(3, "bad size")
	}
	if v, err = field(4, "code"); err != nil {
		return nil, err
	}
	if n, _ := fmt.Sscanf(v, "%d %d %d", &l.K, &l.M, &l.Shard); n != 3 || l.K < 1 || l.M < 0 || l.K+l.M > maxShards || l.Shard < 16 || l.Shard%16 != 0 || l.Shard > maxShard || fmt.Sprintf("%d %d %d", l.K, l.M, l.Shard) != v {
		return nil, bad(4, "bad code")
	}
	if l.Size/int64(l.K)/int64(l.Shard) >= maxStripes {
		return nil, bad(3, "too large")
	}
	if v, err = field(5, "nonce"); err != nil {
		return nil, err
	}
	if nb, err := hex.DecodeString(v); err != nil || len(nb) != len(l.Nonce) {
		return nil, bad(5, "bad nonce")
	} else {
		copy(l.Nonce[:], nb)
	}
	stripes := l.Stripes()
	i := 6
	for f := 0; f < l.K+l.M; f++ {
		if i >= len(lines) {
			return nil, bad(i, "want frag")
		}
		v, err := field(i, "frag")
		if err != nil {
			return nil, err
		}
		w := strings.Split(v, " ")
		if len(w) != 2+stripes || w[0] != strconv.Itoa(f) || !isHexName(w[1]) {
			return nil, bad(i, "bad frag")
		}
		fr := Frag{Name: w[1], Hashes: make([][32]byte, stripes)}
		for s := range stripes {
			if len(w[2+s]) != 64 {
				return nil, bad(i, "bad hash")
			}
			if _, err := hex.Decode(fr.Hashes[s][:], []byte(w[2+s])); err != nil {
				return nil, bad(i, "bad hash")
			}
		}
		l.Frags = append(l.Frags, fr)
		i++
	}
	if i >= len(lines) {
		return nil, bad(i, "want sig")
	}
	if v, err = field(i, "sig"); err != nil {
		return nil, err
	}
	if l.Sig, err = b32.DecodeString(strings.ToUpper(v)); err != nil || len(l.Sig) != ed25519.SignatureSize {
		return nil, bad(i, "bad signature")
	}
	if !ed25519.Verify(l.Pub, signedMessage(l.body()), l.Sig) {
		return nil, fmt.Errorf("%w: signature does not verify", errBadList)
	}
	l.Holders = make([]string, l.K+l.M)
	for i++; i < len(lines); i++ {
		if lines[i] == "" {
			continue
		}
		v, err := field(i, "at")
		if err != nil {
			return nil, err
		}
		idx, key, ok := strings.Cut(v, " ")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 || n >= len(l.Holders) || key == "" || len(key) > maxKey || strings.ContainsAny(key, " \t") {
			return nil, bad(i, "bad at")
		}
		l.Holders[n] = key
	}
	return l, nil
}

// isHexName tells whether s is a fragment name: 64 lower-case hex digits.
func isHexName(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
