package styx

import (
	"math/bits"
	"sync"
	"time"
)

// bufPool hands out frame buffers in power-of-two size classes from 4 KiB
// to 4 MiB; larger requests are allocated and dropped.
type bufPool struct {
	classes [11]sync.Pool // 4 KiB << i
}

const minBufShift = 12

func classOf(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
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
	b := make([]byte, n, 1<<(c+minBufShift))
	return &b
}

// size is the capacity of the buffer get(n) returns: what it costs.
func (p *bufPool) size(n int) int {
	c := classOf(n)
	if c >= len(p.classes) {
		return n
	}
	return 1 << (c + minBufShift)
}

// put returns b to the pool.
func (p *bufPool) put(b *[]byte) {
	c := classOf(cap(*b))
	if c >= len(p.classes) || cap(*b) != 1<<(c+minBufShift) {
		return
	}
	p.classes[c].Put(b)
}

var (
	aLongTimeAgo = time.Unix(1, 0)
	noDeadline   = time.Time{}
)
