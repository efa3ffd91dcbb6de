package main

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"cheshire/modules/sdk"
)

// dataFD is the descriptor of /data, the module's one preopened directory.
const dataFD = 3

//go:wasmimport wasi_snapshot_preview1 path_open
func pathOpen(fd, dirflags int32, path unsafe.Pointer, pathLen, oflags int32, base, inheriting int64, fdflags int32, newfd unsafe.Pointer) int32

//go:wasmimport wasi_snapshot_preview1 path_symlink
func pathSymlink(old unsafe.Pointer, oldLen, fd int32, new unsafe.Pointer, newLen int32) int32

//go:wasmimport wasi_snapshot_preview1 path_link
func pathLink(oldFD, oldFlags int32, old unsafe.Pointer, oldLen, newFD int32, new unsafe.Pointer, newLen int32) int32

//go:wasmimport wasi_snapshot_preview1 path_rename
func pathRename(fd int32, old unsafe.Pointer, oldLen, newFD int32, new unsafe.Pointer, newLen int32) int32

func ptr(s string) (unsafe.Pointer, int32) {
	b := []byte(s + "\x00")
	return unsafe.Pointer(&b[0]), int32(len(s))
}

func errnoErr(e int32) error {
	if e == 0 {
		return nil
	}
	return fmt.Errorf("wasi errno %d", e)
}

// rawop is fsop's raw: open PATH, symlink OLD NEW, link OLD NEW,
// rename OLD NEW, relative to /data.
func rawop(f []string) ([]byte, error) {
	if len(f) == 2 && f[0] == "open" {
		p, n := ptr(f[1])
		var fd int32
		const lookupFollow = 1
		if err := errnoErr(pathOpen(dataFD, lookupFollow, p, n, 0, -1, -1, 0, unsafe.Pointer(&fd))); err != nil {
			return nil, err
		}
		file := os.NewFile(uintptr(fd), f[1])
		defer file.Close()
		return io.ReadAll(file)
	}
	if len(f) != 3 {
		return nil, sdk.ErrBadArgs
	}
	o, on := ptr(f[1])
	w, wn := ptr(f[2])
	var e int32
	switch f[0] {
	case "symlink":
		e = pathSymlink(o, on, dataFD, w, wn)
	case "link":
		e = pathLink(dataFD, 0, o, on, dataFD, w, wn)
	case "rename":
		e = pathRename(dataFD, o, on, dataFD, w, wn)
	default:
		return nil, sdk.ErrBadArgs
	}
	return []byte("ok"), errnoErr(e)
}
