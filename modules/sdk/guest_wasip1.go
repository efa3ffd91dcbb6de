//go:build wasip1

package sdk

import (
	"unsafe"

	"cheshire/modules/abi"
)

// The guest's side of the ABI: see package abi.

// reqBuf is the buffer cheshire_alloc gave the host last.
var reqBuf []byte

//go:wasmexport cheshire_abi
func exportABI() uint32 { return abi.Version }

//go:wasmexport cheshire_alloc
func exportAlloc(size uint32) uint32 {
	reqBuf = make([]byte, max(size, 1))
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(reqBuf))))
}

//go:wasmexport cheshire_call
func exportCall(ptr, n uint32) uint64 {
	var out []byte
	switch {
	case served == nil:
		out = (&abi.Response{Err: "module serves no files (no sdk.Serve in init)"}).Append(nil)
	case len(reqBuf) == 0 || ptr != uint32(uintptr(unsafe.Pointer(unsafe.SliceData(reqBuf)))) || n > uint32(len(reqBuf)):
		// Only the buffer given out by cheshire_alloc is read.
		served.out = (&abi.Response{Err: "bad request buffer"}).Append(served.out[:0])
		out = served.out
	default:
		out = served.call(reqBuf[:n])
	}
	p := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))
	return p<<32 | uint64(len(out))
}

//go:wasmimport cheshire log
func importLog(ptr unsafe.Pointer, n uint32)

//go:wasmimport cheshire host_call
func importHostCall(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport cheshire host_result
func importHostResult(ptr unsafe.Pointer, n uint32) int32

func hostLog(s string) {
	if s == "" {
		return
	}
	importLog(unsafe.Pointer(unsafe.StringData(s)), uint32(len(s)))
}

// hostCall runs an encoded guest→host request and returns the encoded
// response.
func hostCall(req []byte) ([]byte, error) {
	n := importHostCall(unsafe.Pointer(unsafe.SliceData(req)), uint32(len(req)))
	if n < 0 {
		return nil, Error("node refused the request")
	}
	resp := make([]byte, max(n, 1))
	if m := importHostResult(unsafe.Pointer(unsafe.SliceData(resp)), uint32(n)); m != n {
		return nil, Error("node lost the response")
	}
	return resp[:n], nil
}
