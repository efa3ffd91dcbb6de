package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// A memoryAllocator makes the linear memory of one instance's guest.
//
// wazero's own keeps it in the Go heap and grows it by appending: each
// growth allocates the new size and copies, and what is left over waits
// for the garbage collector, which does not hand it back to the system
// soon. A guest that takes its whole limit so cost the node several
// times the limit, for long after the instance was gone. Ours, where the
// system allows (mmapMemory), reserves the maximum as address space
// only, makes pages usable as the guest grows, never copies, and unmaps
// all at Free: the node's resident memory grows by what the guest
// touched, at most its limit, and shrinks back when the instance dies.
type memoryAllocator struct {
	mapped atomic.Int64 // bytes of linear memory mapped now
}

var _ experimental.MemoryAllocator = (*memoryAllocator)(nil)

// Allocate implements experimental.MemoryAllocator.
func (a *memoryAllocator) Allocate(cap, max uint64) experimental.LinearMemory {
	if m := newMmapMemory(a, max); m != nil {
		return m
	}
	return &heapMemory{buf: make([]byte, 0, cap)}
}

// heapMemory is linear memory in the Go heap, grown as wazero's is,
// where mmapMemory cannot be had.
type heapMemory struct{ buf []byte }

func (m *heapMemory) Reallocate(size uint64) []byte {
	if n := uint64(len(m.buf)); size > n {
		m.buf = append(m.buf, make([]byte, size-n)...)
	}
	return m.buf[:size]
}

func (m *heapMemory) Free() { m.buf = nil }
