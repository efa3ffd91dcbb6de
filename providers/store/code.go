package store

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"github.com/klauspost/reedsolomon"
)

// A coder turns stripes of content into k+m pieces and back: the content
// is encrypted with AES-256-CTR under the read key and the version's
// nonce (at its offset, so stripes are independent), then Reed-Solomon
// coded; holders only ever see ciphertext. Without the read key (a
// verify cap) a coder can still check and rebuild pieces, not decrypt.
type coder struct {
	k, m, shard int
	rs          reedsolomon.Encoder
	block       cipher.Block // nil without the read key
	nonce       [16]byte
}

func newCoder(k, m, shard int, readKey []byte, nonce [16]byte) (*coder, error) {
	if k < 1 || m < 0 || k+m > maxShards || shard < 16 || shard%16 != 0 {
		return nil, fmt.Errorf("store: bad code %d+%d of %d-byte pieces", k, m, shard)
	}
	c := &coder{k: k, m: m, shard: shard, nonce: nonce}
	var err error
	if m > 0 {
		if c.rs, err = reedsolomon.New(k, m); err != nil {
			return nil, fmt.Errorf("store: code %d+%d: %w", k, m, err)
		}
	}
	if readKey != nil {
		if c.block, err = aes.NewCipher(readKey); err != nil {
			return nil, fmt.Errorf("store: cipher: %w", err)
		}
	}
	return c, nil
}

// stripeBytes is the content one stripe carries.
func (c *coder) stripeBytes() int { return c.k * c.shard }

// newShards returns k+m pieces; the data pieces share one buffer of a
// stripe's bytes, so that a stripe's content is that buffer.
func (c *coder) newShards() (stripe []byte, shards [][]byte) {
	buf := make([]byte, (c.k+c.m)*c.shard)
	shards = make([][]byte, c.k+c.m)
	for i := range shards {
		shards[i] = buf[i*c.shard : (i+1)*c.shard : (i+1)*c.shard]
	}
	return buf[:c.k*c.shard], shards
}

// stream is the key stream of stripe s's content from off (a multiple
// of 16): the content there is encrypted or decrypted by XORing it.
func (c *coder) stream(s, off int) cipher.Stream {
	var iv [16]byte
	hi := binary.BigEndian.Uint64(c.nonce[:8])
	lo := binary.BigEndian.Uint64(c.nonce[8:])
	blocks := (uint64(s)*uint64(c.stripeBytes()) + uint64(off)) / 16
	nlo := lo + blocks
	if nlo < lo {
		hi++
	}
	binary.BigEndian.PutUint64(iv[:8], hi)
	binary.BigEndian.PutUint64(iv[8:], nlo)
	return cipher.NewCTR(c.block, iv[:])
}

// xorAt puts into dst the content of stripe s from off (any offset)
// XORed with the key stream: src decrypted, or encrypted. dst and src
// may be the same bytes; a copy and a decryption in one pass.
func (c *coder) xorAt(s, off int, dst, src []byte) {
	ks := c.stream(s, off&^15)
	if skip := off & 15; skip != 0 {
		var junk [16]byte
		ks.XORKeyStream(junk[:skip], junk[:skip])
	}
	ks.XORKeyStream(dst, src)
}

// encode completes stripe (the stripe buffer of shards, from newShards)
// whose first n bytes are content already encrypted (the writer
// encrypts as it takes the content, with stream): it zeroes the rest
// and computes parity. The pieces' hashes are the caller's (the writer
// hashes each fragment's pieces on that fragment's own goroutine).
func (c *coder) encode(stripe []byte, n int, shards [][]byte) error {
	clear(stripe[n:])
	if c.rs != nil {
		if err := c.rs.Encode(shards); err != nil {
			return fmt.Errorf("store: encode: %w", err)
		}
	}
	return nil
}

// rebuild fills in the missing (nil) pieces of shards from the others;
// with dataOnly it rebuilds the data pieces alone.
func (c *coder) rebuild(shards [][]byte, dataOnly bool) error {
	if c.rs == nil {
		for _, p := range shards[:c.k] {
			if p == nil {
				return fmt.Errorf("store: too few fragments: want %d", c.k)
			}
		}
		return nil
	}
	var err error
	if dataOnly {
		err = c.rs.ReconstructData(shards)
	} else {
		err = c.rs.Reconstruct(shards)
	}
	if err != nil {
		return fmt.Errorf("store: too few fragments to rebuild: %w", err)
	}
	return nil
}
