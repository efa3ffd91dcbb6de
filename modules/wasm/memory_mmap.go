//go:build linux || darwin

package wasm

import (
	"golang.org/x/sys/unix"
)

// mmapMemory is linear memory outside the Go heap: a mapping of the
// maximum size, inaccessible but for the first size bytes.
type mmapMemory struct {
	a    *memoryAllocator
	buf  []byte // the whole mapping; nil once freed
	size uint64 // accessible bytes
}

// newMmapMemory reserves max bytes, or returns nil.
func newMmapMemory(a *memoryAllocator, max uint64) *mmapMemory {
	if max == 0 || max > 1<<32 {
		return nil
	}
	// PROT_NONE pages take address space, not memory or commit charge.
	b, err := unix.Mmap(-1, 0, int(max), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil
	}
	a.mapped.Add(int64(max))
	return &mmapMemory{a: a, buf: b}
}

// Reallocate implements experimental.LinearMemory: it makes the first
// size bytes accessible, in place. Linear memory never shrinks.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	if size > m.size {
		if err := unix.Mprotect(m.buf[m.size:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.size = size
	}
	return m.buf[:size:size]
}

// Free implements experimental.LinearMemory. wazero calls it only when
// no guest code runs in the memory any more.
func (m *mmapMemory) Free() {
	if m.buf == nil {
		return
	}
	n := len(m.buf)
	if unix.Munmap(m.buf) == nil {
		m.a.mapped.Add(-int64(n))
	}
	m.buf = nil
}
