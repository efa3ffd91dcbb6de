//go:build !linux

package hostfs

import (
	"io/fs"
	"os"
	"time"
)

// openExtra is added to every host open. Elsewhere than Linux a FIFO
// in the export can block an open.
const openExtra = 0

// sys is what Qids and owners need from a host stat. Elsewhere than Linux
// it is not used: Qid.Path is a hash of the path and files belong to
// the WithOwner name, or "none".
type sys struct {
	ino, dev uint64
	uid, gid uint32
	atime    time.Time
}

func sysInfo(fi fs.FileInfo) (sys, bool) { return sys{}, false }

func setBlocking(fd *os.File) error { return nil }
