package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

func testList(t testing.TB) (*List, ed25519.PrivateKey) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	l := &List{V: listV, Seq: 3, Size: 100, K: 2, M: 1, Shard: 32}
	rand.Read(l.Nonce[:])
	for range 3 {
		f := Frag{Name: strings.Repeat("ab", 32)}
		for range l.Stripes() {
			var h [32]byte
			rand.Read(h[:])
			f.Hashes = append(f.Hashes, h)
		}
		l.Frags = append(l.Frags, f)
	}
	l.Holders = []string{"k0", "", "k2"}
	l.Sign(priv)
	return l, priv
}

// TestListVersions checks that a version 1 list (SHA-256 pieces) is
// still read and hashes with SHA-256, that new lists hash with BLAKE3,
// and that the version is signed: relabelling a list fails its check.
func TestListVersions(t *testing.T) {
	piece := []byte("a piece of a stripe")
	for _, tc := range []struct {
		v    int
		want [32]byte
	}{
		{1, sha256.Sum256(piece)},
		{2, blake3.Sum256(piece)},
	} {
		l, priv := testList(t)
		l.V = tc.v
		l.Sign(priv)
		data := l.Marshal()
		got, err := ParseList(data)
		if err != nil {
			t.Fatalf("v%d: %v", tc.v, err)
		}
		if got.V != tc.v || got.sum(piece) != tc.want {
			t.Fatalf("v%d: parsed as v%d, sum %x, want %x", tc.v, got.V, got.sum(piece), tc.want)
		}
		other := listMagic(3 - tc.v)
		relabelled := append([]byte(other), data[len(listMagic(tc.v)):]...)
		if _, err := ParseList(relabelled); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
			t.Fatalf("v%d relabelled as %q: %v, want a bad signature", tc.v, other, err)
		}
	}
	if _, err := ParseList([]byte(strings.Replace(string(mustList(t).Marshal()), listMagic(listV), "cheshire-store-list 9", 1))); err == nil || !strings.Contains(err.Error(), `want "cheshire-store-list 2" first`) {
		t.Fatalf("unknown version: %v", err)
	}
}

func mustList(t *testing.T) *List {
	l, _ := testList(t)
	return l
}

func TestListRoundTrip(t *testing.T) {
	l, _ := testList(t)
	data := l.Marshal()
	got, err := ParseList(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), data) {
		t.Fatalf("round trip:\n%s\n%s", data, got.Marshal())
	}
	// Hints are not signed: they may change.
	got.Holders[1] = "k1"
	if _, err := ParseList(got.Marshal()); err != nil {
		t.Fatalf("list with a new hint: %v", err)
	}
	// Anything signed may not.
	for _, tc := range []struct{ old, new string }{{"size 100", "size 101"}, {"seq 3", "seq 4"}, {"code 2 1 32", "code 1 2 32"}} {
		bad := bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)
		if _, err := ParseList(bad); err == nil {
			t.Errorf("%s → %s accepted", tc.old, tc.new)
		}
	}
	// Signed by another key, under this one's name.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forged := *l
	forged.Sign(other)
	forged.Pub = l.Pub
	if _, err := ParseList(forged.Marshal()); err == nil {
		t.Error("list signed by the wrong key accepted")
	}
	// Truncated anywhere.
	for i := 0; i < len(data)-1; i += 7 {
		if _, err := ParseList(data[:i]); err == nil && i < bytes.Index(data, []byte("\nsig ")) {
			t.Errorf("list truncated at %d accepted", i)
		}
	}
}

func TestCapRoundTrip(t *testing.T) {
	seed := make([]byte, 32)
	rand.Read(seed)
	w := NewWriteCap(seed)
	for _, c := range []Cap{w, w.Read(), w.Verify()} {
		got, err := ParseCap(c.String())
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if got.String() != c.String() || got.IDHex() != w.IDHex() {
			t.Fatalf("round trip %s → %s", c, got)
		}
		// Every single-character change is refused.
		s := c.String()
		for i := range s {
			b := []byte(s)
			b[i] ^= 1
			if _, err := ParseCap(string(b)); err == nil {
				t.Errorf("%s with character %d changed accepted", s, i)
			}
		}
	}
	if w.Read().CanWrite() || w.Verify().CanRead() || !w.Read().CanRead() {
		t.Error("cap rights")
	}
}

func FuzzParseCap(f *testing.F) {
	seed := make([]byte, 32)
	w := NewWriteCap(seed)
	for _, c := range []Cap{w, w.Read(), w.Verify()} {
		f.Add(c.String())
	}
	f.Add("w1..")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCap(s)
		if err != nil {
			return
		}
		if _, err := ParseCap(c.String()); err != nil {
			t.Fatalf("%q parsed, but its rendering %q does not: %v", s, c.String(), err)
		}
	})
}

func FuzzParseList(f *testing.F) {
	l, _ := testList(f)
	f.Add(l.Marshal())
	f.Add([]byte(listMagic(listV) + "\npub a\nseq 1\nsize 0\ncode 1 0 16\nnonce 00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseList(data)
		if err != nil {
			return
		}
		again, err := ParseList(l.Marshal())
		if err != nil {
			t.Fatalf("parsed list does not parse again: %v", err)
		}
		if again.Stripes() != l.Stripes() || len(again.Frags) != l.K+l.M {
			t.Fatal("round trip changed the list")
		}
	})
}
