package tmp

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestFileData checks fileData against a plain slice through random
// writes, truncations and reads across chunk boundaries.
func TestFileData(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fill := rand.NewChaCha8([32]byte{1})
	var d fileData
	var model []byte
	buf := make([]byte, 3*dataChunk/2)
	offs := func() int64 {
		// Near a chunk boundary most of the time.
		return int64(r.IntN(4))*dataChunk + int64(r.IntN(64)) - 32 + int64(r.IntN(2))*int64(r.IntN(dataChunk))
	}
	for step := 0; step < 400; step++ {
		switch r.IntN(5) {
		case 0, 1:
			off := max(0, offs())
			p := buf[:r.IntN(len(buf))]
			fill.Read(p)
			d.writeAt(p, off)
			if end := off + int64(len(p)); end > int64(len(model)) {
				model = append(model, make([]byte, end-int64(len(model)))...)
			}
			copy(model[off:], p)
		case 2:
			l := max(0, offs())
			d.truncate(l)
			if l <= int64(len(model)) {
				model = model[:l]
			} else {
				model = append(model, make([]byte, l-int64(len(model)))...)
			}
		default:
			off := max(0, offs())
			p := buf[:r.IntN(len(buf))]
			fill.Read(p) // not zeros: a hole must be cleared
			n := d.readAt(p, off)
			want := 0
			if off < int64(len(model)) {
				want = min(len(p), len(model)-int(off))
			}
			if n != want || !bytes.Equal(p[:n], model[off:off+int64(n)]) {
				t.Fatalf("step %d: read %d at %d: got %d bytes, want %d, or the bytes differ", step, len(p), off, n, want)
			}
		}
		if d.size != int64(len(model)) {
			t.Fatalf("step %d: size %d, want %d", step, d.size, len(model))
		}
	}
}
