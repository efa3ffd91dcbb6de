package store

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Caps, as in Tahoe-LAFS, are strings that carry the right they grant:
//
//	w1.SEED.CHECK          write: the ed25519 seed that signs the fragment list
//	r1.PUB+READKEY.CHECK   read: the list's public key and the content key
//	v1.PUB.CHECK           verify: the public key alone
//
// Each middle part is unpadded lower-case base32; CHECK is the first 8
// hex digits of the SHA-256 of what precedes it, so a cap with one
// character changed is refused as such rather than naming another file.
// From the seed follow the key pair, the read key (a hash of the seed),
// and the file id (a hash of the public key), which places the fragments
// and names the list.

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Cap kinds.
const (
	capWrite  = 'w'
	capRead   = 'r'
	capVerify = 'v'
)

// A Cap is a parsed cap of any kind: Seed is set only for a write cap,
// ReadKey for a write or read cap; Pub always.
type Cap struct {
	Kind    byte
	Seed    []byte            // 32 bytes; write caps only
	Pub     ed25519.PublicKey // the key that signs the fragment list
	ReadKey []byte            // 32 bytes; write and read caps
}

var errBadCap = errors.New("store: bad cap")

// NewWriteCap returns the write cap of seed (32 bytes).
func NewWriteCap(seed []byte) Cap {
	priv := ed25519.NewKeyFromSeed(seed)
	return Cap{Kind: capWrite, Seed: seed, Pub: priv.Public().(ed25519.PublicKey), ReadKey: readKeyOf(seed)}
}

func readKeyOf(seed []byte) []byte {
	h := sha256.New()
	h.Write([]byte("cheshire store read key\x00"))
	h.Write(seed)
	return h.Sum(nil)
}

// ID is the file id: a hash of the public key.
func (c Cap) ID() [32]byte {
	h := sha256.New()
	h.Write([]byte("cheshire store id\x00"))
	h.Write(c.Pub)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// IDHex is the file id in hex, the name of its list at holders.
func (c Cap) IDHex() string { id := c.ID(); return hex.EncodeToString(id[:]) }

// Private is the signing key of a write cap.
func (c Cap) Private() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(c.Seed) }

// Read returns the read cap a write or read cap implies.
func (c Cap) Read() Cap { return Cap{Kind: capRead, Pub: c.Pub, ReadKey: c.ReadKey} }

// Verify returns the verify cap any cap implies.
func (c Cap) Verify() Cap { return Cap{Kind: capVerify, Pub: c.Pub} }

// CanRead tells whether the cap carries the content key.
func (c Cap) CanRead() bool { return c.Kind == capWrite || c.Kind == capRead }

// CanWrite tells whether the cap can sign a new version.
func (c Cap) CanWrite() bool { return c.Kind == capWrite }

func capCheck(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// String renders the cap.
func (c Cap) String() string {
	var body []byte
	switch c.Kind {
	case capWrite:
		body = c.Seed
	case capRead:
		body = append(append([]byte{}, c.Pub...), c.ReadKey...)
	default:
		body = c.Pub
	}
	s := string(c.Kind) + "1." + strings.ToLower(b32.EncodeToString(body))
	return s + "." + capCheck(s)
}

// maxCap bounds the length of a cap string.
const maxCap = 200

// ParseCap parses a cap of any kind.
func ParseCap(s string) (Cap, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxCap {
		return Cap{}, fmt.Errorf("%w: too long", errBadCap)
	}
	i := strings.LastIndexByte(s, '.')
	if i < 0 || len(s) < 4 || s[1:3] != "1." {
		return Cap{}, fmt.Errorf("%w: want w1., r1. or v1. and a check", errBadCap)
	}
	if capCheck(s[:i]) != s[i+1:] {
		return Cap{}, fmt.Errorf("%w: check digits do not match", errBadCap)
	}
	body, err := b32.DecodeString(strings.ToUpper(s[3:i]))
	if err != nil {
		return Cap{}, fmt.Errorf("%w: not base32", errBadCap)
	}
	switch s[0] {
	case capWrite:
		if len(body) != ed25519.SeedSize {
			return Cap{}, fmt.Errorf("%w: write cap of %d bytes", errBadCap, len(body))
		}
		return NewWriteCap(body), nil
	case capRead:
		if len(body) != ed25519.PublicKeySize+32 {
			return Cap{}, fmt.Errorf("%w: read cap of %d bytes", errBadCap, len(body))
		}
		return Cap{Kind: capRead, Pub: ed25519.PublicKey(body[:32]), ReadKey: body[32:]}, nil
	case capVerify:
		if len(body) != ed25519.PublicKeySize {
			return Cap{}, fmt.Errorf("%w: verify cap of %d bytes", errBadCap, len(body))
		}
		return Cap{Kind: capVerify, Pub: ed25519.PublicKey(body)}, nil
	}
	return Cap{}, fmt.Errorf("%w: unknown kind %q", errBadCap, s[0])
}
