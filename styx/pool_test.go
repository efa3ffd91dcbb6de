package styx

import "testing"

// TestPoolClasses: a frame of a whole iounit fits the class of its
// data's size, every size gets a buffer that holds it from the smallest
// class that does, and buffers come back to their class.
func TestPoolClasses(t *testing.T) {
	t.Parallel()
	var p bufPool
	if got, want := p.size(1<<20+IOHdrSz-1), 1<<20+IOHdrSz; got != want {
		t.Errorf("a Twrite of 1 MiB costs %d bytes, want %d", got, want)
	}
	if got, want := p.size(DefaultMsize), 1<<20+IOHdrSz; got != want {
		t.Errorf("a frame of msize %d costs %d bytes, want %d", DefaultMsize, got, want)
	}
	for _, n := range []int{0, 1, 4096, 4096 + IOHdrSz, 4096 + IOHdrSz + 1, 65536, 1 << 20, 1<<20 + IOHdrSz, 1<<20 + IOHdrSz + 1, 4<<20 + IOHdrSz, 4<<20 + IOHdrSz + 1} {
		b := p.get(n)
		if len(*b) != n || cap(*b) != p.size(n) {
			t.Errorf("get(%d): len %d cap %d, want len %d cap %d", n, len(*b), cap(*b), n, p.size(n))
		}
		if c := classOf(n); c > 0 && c < len(p.classes) && classCap(c-1) >= n {
			t.Errorf("get(%d) took class %d (%d bytes) where class %d (%d) holds it", n, c, classCap(c), c-1, classCap(c-1))
		}
		p.put(b)
	}
}
