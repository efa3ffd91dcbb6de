package ledger

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseTx(t *testing.T) {
	t.Parallel()
	a, b := newAccount(t), newAccount(t)
	sig := strings.Repeat("ab", 64)
	for _, tc := range []struct {
		line string
		want string // "" for no error, else a part of it
	}{
		{fmt.Sprintf("transfer %s %s 5 1 %s", a.key, b.key, sig), ""},
		{fmt.Sprintf("transfer %s %s -5 1 %s", a.key, b.key, sig), "bad amount"},
		{fmt.Sprintf("transfer %s %s +5 1 %s", a.key, b.key, sig), "bad amount"},
		{fmt.Sprintf("transfer %s %s 0 1 %s", a.key, b.key, sig), "bad amount"},
		{fmt.Sprintf("transfer %s %s 4611686018427387904 1 %s", a.key, b.key, sig), "bad amount"},
		{fmt.Sprintf("transfer %s %s 5 0 %s", a.key, b.key, sig), "bad nonce"},
		{fmt.Sprintf("transfer %s %s 5 1", a.key, b.key), "bad signature"},
		{fmt.Sprintf("transfer %s nobody 5 1 %s", a.key, sig), "bad key"},
		{fmt.Sprintf("contract open %s c-1 %s 2 30 4 %s", a.key, b.key, sig), ""},
		{fmt.Sprintf("contract open %s ../x %s 2 30 4 %s", a.key, b.key, sig), "bad contract id"},
		{fmt.Sprintf("contract open %s c %s 2 99999 4 %s", a.key, b.key, sig), "bad days"},
		{fmt.Sprintf("contract settle %s c-1 5 %s", b.key, sig), ""},
		{fmt.Sprintf("contract burn %s c-1 5 %s", b.key, sig), "unknown operation"},
		{fmt.Sprintf("endpoint %s tls!1.2.3.4!5641,tcp!h!1 2 %s", a.key, sig), ""},
		{fmt.Sprintf("endpoint %s nowhere 2 %s", a.key, sig), "bad endpoint"},
		{"mint " + a.key + " 1 " + sig, "unknown transaction"},
		{"", "empty"},
		{strings.Repeat("x ", 600), "too large"},
	} {
		_, err := ParseTx(tc.line)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%.50s…: %v", tc.line, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%.50s…: %v, want %q", tc.line, err, tc.want)
		}
	}
}

// FuzzParseTx: no input panics the parser; what parses prints back to a
// line that parses the same.
func FuzzParseTx(f *testing.F) {
	a, b := newAccount(f), newAccount(f)
	f.Add(a.sign(f, fmt.Sprintf("transfer %s %s 5 1", a.key, b.key)))
	f.Add(a.sign(f, fmt.Sprintf("contract open %s c %s 2 30 4", a.key, b.key)))
	f.Add(a.sign(f, fmt.Sprintf("endpoint %s tls!h!1 3", a.key)))
	f.Add("transfer x y -1 1 00")
	f.Fuzz(func(t *testing.T, line string) {
		tx, err := ParseTx(line)
		if err != nil {
			return
		}
		again, err := ParseTx(tx.Line())
		if err != nil || again.Body != tx.Body || again.Nonce != tx.Nonce || again.Amount != tx.Amount {
			t.Fatalf("%q parsed, printed as %q, then %v", line, tx.Line(), err)
		}
		tx.Verify() // must not panic
	})
}

// FuzzParseBlock: no block text panics the parser or the chain check.
func FuzzParseBlock(f *testing.F) {
	a := newAccount(f)
	blk := &Block{Prev: zeroHash, Allocs: []Alloc{{a.key, 5}}}
	blk.seal(a.priv)
	f.Add(blk.Text())
	f.Fuzz(func(t *testing.T, text string) {
		b, err := ParseBlock(text)
		if err != nil {
			return
		}
		VerifyChain([]*Block{b})
	})
}
