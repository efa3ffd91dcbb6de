package styx

import (
	"math/bits"
	"sync"
	"time"
)

// bufPool hands out frame buffers in size classes of a power of two
// from 4 KiB to 4 MiB, each with room for a read or write header
// (IOHdrSz) besides: a frame of a whole iounit (1 MiB of data, 1 MiB
// and 23 bytes) takes 1 MiB and 24 bytes, not 2 MiB. Larger requests
// are allocated and dropped.
type bufPool struct {
	classes [11]sync.Pool // 4 KiB << i, plus IOHdrSz
}

const minBufShift = 12

// classCap is the capacity of the buffers of class c.
func classCap(c int) int { return 1<<(c+minBufShift) + IOHdrSz }

func classOf(n int) int {
	if n <= classCap(0) {
		return 0
	}
	return bits.Len(uint(n-IOHdrSz-1)) - minBufShift
}

// get returns a buffer of length n.
func (p *bufPool) get(n int) *[]byte {
	c := classOf(n)
	if c >= len(p.classes) {
		b := make([]byte, n)
		return &b
	}
	if v := p.classes[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, classCap(c))
	return &b
}

// size is the capacity of the buffer get(n) returns: what it costs.
func (p *bufPool) size(n int) int {
	c := classOf(n)
	if c >= len(p.classes) {
		return n
	}
	return classCap(c)
}

// put returns b to the pool.
func (p *bufPool) put(b *[]byte) {
	c := classOf(cap(*b))
	if c >= len(p.classes) || cap(*b) != classCap(c) {
		return
	}
	p.classes[c].Put(b)
}

var (
	aLongTimeAgo = time.Unix(1, 0)
	noDeadline   = time.Time{}
)
