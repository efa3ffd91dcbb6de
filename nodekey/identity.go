// Package nodekey holds a node's identity: its ed25519 key pair, loaded
// from and saved to the data directory, the z-base-32 text form of public
// keys, the self-signed certificate bound to the key, and the TLS configs
// with which nodes know each other by key (Peer). It imports nothing of
// the project but atomicfile: dht, importers, modules and cmd all use it.
package nodekey

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cheshire/atomicfile"
)

// Identity is a node's ed25519 key pair.
type Identity struct {
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
}

// IdentityFile is the name of the private key in the data directory.
const IdentityFile = "identity.pem"

// Load reads DIR/identity.pem, making a new key (mode 0600) on
// first use.
func Load(dir string) (*Identity, error) {
	p := filepath.Join(dir, IdentityFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return newIdentity(p)
	}
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0077 != 0 {
		return nil, fmt.Errorf("node identity: %s is readable by others (mode %v); chmod 600 it", p, fi.Mode().Perm())
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("node identity: %s: no PRIVATE KEY block", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("node identity: %s: %w", p, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("node identity: %s: not an ed25519 key", p)
	}
	return &Identity{Private: priv, Public: priv.Public().(ed25519.PublicKey)}, nil
}

func newIdentity(p string) (*Identity, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	// Whole or absent: a node killed while making its key must not be
	// left with a file it cannot parse.
	if err := atomicfile.Create(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0600); err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	return &Identity{Private: priv, Public: pub}, nil
}

// zbase32 is the human-oriented base-32 alphabet Pkarr uses for keys.
const zbase32 = "ybndrfg8ejkmcpqxot1uwisza345h769"

// ID is the node's name: its public key in z-base-32 (52 characters), as
// Pkarr writes keys.
func (id *Identity) ID() string { return Encode(id.Public) }

// Encode writes an ed25519 public key in z-base-32.
func Encode(pub ed25519.PublicKey) string {
	var b strings.Builder
	var acc, bits uint
	for _, c := range pub {
		acc = acc<<8 | uint(c)
		bits += 8
		for bits >= 5 {
			b.WriteByte(zbase32[(acc>>(bits-5))&31])
			bits -= 5
		}
	}
	if bits > 0 {
		b.WriteByte(zbase32[(acc<<(5-bits))&31])
	}
	return b.String()
}

// Decode parses a z-base-32 public key.
func Decode(s string) (ed25519.PublicKey, error) {
	var out []byte
	var acc, bits uint
	for i := 0; i < len(s); i++ {
		v := strings.IndexByte(zbase32, s[i])
		if v < 0 {
			return nil, fmt.Errorf("key %q: bad character %q", s, s[i])
		}
		acc = acc<<5 | uint(v)
		bits += 5
		if bits >= 8 {
			out = append(out, byte(acc>>(bits-8)))
			bits -= 8
		}
	}
	if len(out) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q: %d bytes, want %d", s, len(out), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(out), nil
}
