//go:build !(linux || darwin)

package wasm

type mmapMemory = heapMemory

func newMmapMemory(*memoryAllocator, uint64) *mmapMemory { return nil }
