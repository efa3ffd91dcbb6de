//go:build linux

package hostfs

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// openExtra is added to every host open: O_NONBLOCK so that opening a
// FIFO cannot block, O_NOCTTY so that a terminal never becomes ours.
const openExtra = syscall.O_NONBLOCK | syscall.O_NOCTTY

// sys is what Qids and owners need from a host stat.
type sys struct {
	ino, dev uint64
	uid, gid uint32
	atime    time.Time
}

func sysInfo(fi fs.FileInfo) (sys, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return sys{}, false
	}
	return sys{ino: st.Ino, dev: uint64(st.Dev), uid: st.Uid, gid: st.Gid,
		atime: time.Unix(st.Atim.Unix())}, true
}

// setBlocking clears the O_NONBLOCK of openExtra on a regular file or
// directory.
func setBlocking(fd *os.File) error {
	rc, err := fd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(d uintptr) { serr = syscall.SetNonblock(int(d), false) }); err != nil {
		return err
	}
	return serr
}
