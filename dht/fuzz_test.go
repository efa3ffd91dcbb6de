package dht

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strconv"
	"testing"

	"github.com/anacrolix/dht/v2/bep44"
)

// FuzzRecord puts arbitrary bytes as a record's key, seq, value and
// signature through the verification path: it must never panic, must
// accept only what ed25519 verifies under the asked key, and must give
// back the value that was signed.
func FuzzRecord(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := seed.Public().(ed25519.PublicKey)
	for _, c := range []struct {
		seq   int64
		value string
	}{{1, "hello"}, {0, ""}, {-5, "x"}, {1 << 60, string(bytes.Repeat([]byte("v"), MaxValue))}} {
		bv := []byte(strconv.Itoa(len(c.value)) + ":" + c.value)
		sig := bep44.Sign(seed, nil, c.seq, bv)
		f.Add([]byte(pub), c.seq, true, bv, sig)
	}
	f.Add([]byte(pub), int64(1), false, []byte("5:hello"), make([]byte, 64))
	f.Add([]byte{}, int64(1), true, []byte("i42e"), []byte{1, 2, 3})
	f.Add([]byte(pub), int64(3), true, []byte("05:hello"), make([]byte, 64))
	f.Add([]byte(pub), int64(3), true, []byte("99999999999999999999:"), make([]byte, 64))
	f.Fuzz(func(t *testing.T, k []byte, seq int64, hasSeq bool, bv, sigb []byte) {
		var key [32]byte
		copy(key[:], k)
		var sig [64]byte
		copy(sig[:], sigb)
		var sp *int64
		if hasSeq {
			sp = &seq
		}
		// As the record of the key it names, and of another key.
		for _, asked := range []ed25519.PublicKey{key[:], pub, k} {
			v, err := verifyRecord(asked, key, sp, bv, sig)
			if err != nil {
				if !errors.Is(err, ErrForged) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("error of unknown kind: %v", err)
				}
				continue
			}
			if !bytes.Equal(asked, key[:]) || sp == nil || !ed25519.Verify(asked, signedBuffer(seq, bv), sig[:]) {
				t.Fatalf("accepted a record that does not verify: key %x seq %v", key, sp)
			}
			if want := strconv.Itoa(len(v)) + ":" + string(v); want != string(bv) {
				t.Fatalf("value %q from %q", v, bv)
			}
		}
		_, _ = decodeString(bv)
	})
}
