//go:build linux

package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing the n bytes of f at off to the disk
// without waiting for them: a fragment's pages go to disk while the
// rest of it arrives, and the sync at its commit has little left to do
// (the kernel would otherwise write nothing until that sync, and the
// whole of every fragment would wait for the disk after the last byte).
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
