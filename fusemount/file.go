package fusemount

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"cheshire/styx"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	_ fs.FileReader       = (*handle)(nil)
	_ fs.FileWriter       = (*handle)(nil)
	_ fs.FileReleaser     = (*handle)(nil)
	_ fs.FileFlusher      = (*handle)(nil)
	_ fs.FileFsyncer      = (*handle)(nil)
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

// A handle is an open file: an open fid of its own.
type handle struct {
	n      *node
	direct bool       // FOPEN_DIRECT_IO: one read(2) is one Tread
	vers   uint32     // the qid version at open
	length uint64     // the stat length at open
	append bool       // O_APPEND: write at the server's length
	mode   uint8      // to open the file again after a flush
	ra     *readAhead // nil for direct I/O

	mu    sync.RWMutex // held to write the fields below, and for O_APPEND writes
	fid   *styx.Fid    // nil if reopening after a flush failed
	dirty atomic.Bool  // written since the last flush
}

// errBadHandle is the errno of I/O on a handle whose fid could not be
// opened again after a flush.
const errBadHandle = syscall.EBADF

// Read reads at off. A direct file answers with one Tread, as short as the
// server makes it (a read of an event file blocks until there is data);
// a cached file fills dest up to end of file, since the kernel takes a
// short read for the end. A sequential READ of a cached file smaller
// than the iounit is answered from the handle's readahead when it holds
// the bytes (readahead.go).
//
// A cached file may end before its stat length (a synthetic file that
// declares one): the kernel then shrinks the file to the read's end, as
// long as no attributes of the file reached it while the read was in
// flight, so attribute replies wait for cached reads (nodeState.rd); and
// later opens of the file use direct I/O.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.fid == nil {
		return nil, errBadHandle
	}
	if !h.direct {
		h.n.st.rd.RLock()
		defer h.n.st.rd.RUnlock()
	}
	if h.direct {
		n, err := h.fid.ReadOnce(ctx, dest, off)
		if err != nil {
			return nil, toErrno(err)
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	if res := h.ra.read(ctx, h.fid, dest, off); res != nil {
		return res, 0
	}
	total := 0
	for total < len(dest) {
		n, err := h.fid.ReadAt(ctx, dest[total:], off+int64(total))
		total += n
		if err == io.EOF {
			if n == 0 {
				break
			}
			continue // a short read need not be the end: ask again
		}
		if err != nil {
			return nil, toErrno(err)
		}
	}
	if total < len(dest) && uint64(off)+uint64(total) < h.length {
		h.n.st.readShort(h.vers)
	}
	return fuse.ReadResultData(dest[:total]), 0
}

// Write writes data at off, or at the end for O_APPEND.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.append {
		// The kernel's idea of the length may be stale; the server's
		// is the one that counts.
		h.mu.Lock()
		defer h.mu.Unlock()
	} else {
		h.mu.RLock()
		defer h.mu.RUnlock()
	}
	if h.fid == nil {
		return 0, errBadHandle
	}
	h.dirty.Store(true)
	h.n.st.invalidateCache() // readahead from before the write is stale
	if h.append {
		d, err := h.fid.Stat(ctx)
		if err != nil {
			return 0, toErrno(err)
		}
		off = int64(d.Length)
	}
	n, err := h.fid.WriteAt(ctx, data, off)
	h.n.st.invalidateCache()
	if err != nil && n == 0 {
		return 0, toErrno(err)
	}
	return uint32(n), 0
}

// Flush, at each close(2) of a file written since the last flush,
// clunks the fid — so a file that commits at clunk (a zone, a config)
// can refuse what was written and close(2) reports it — and opens the
// file again for whatever descriptors remain.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.dirty.Load() || h.fid == nil {
		return 0
	}
	h.dirty.Store(false)
	ctx = context.WithoutCancel(ctx)
	err := h.fid.Clunk(ctx)
	h.fid = nil
	if r, errno := h.n.ref(ctx); errno == 0 {
		_, fid, werr := r.fid.Walk(ctx)
		r.put()
		if werr == nil {
			if oerr := fid.Open(ctx, h.mode); oerr == nil {
				h.fid = fid
			} else {
				clunk(fid)
			}
		}
	}
	if err != nil {
		return toErrno(err)
	}
	return 0
}

// Fsync does nothing: every write has reached the server.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

// Release clunks the fid.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.ra.close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fid != nil {
		h.fid.Clunk(context.WithoutCancel(ctx))
		h.fid = nil
	}
	return 0
}

// A dirHandle is an open directory: a listing read at open (and again on
// rewind).
type dirHandle struct {
	n *node

	mu   sync.Mutex
	ents []styx.Dir
	pos  int // next entry: 0 is ".", 1 "..", then ents
	last int // index in ents of the last entry returned, or -1
}

// OpendirHandle reads the directory.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h := &dirHandle{n: n, last: -1}
	if errno := h.load(ctx); errno != 0 {
		return nil, 0, errno
	}
	return h, 0, 0
}

// load reads the directory through a clone of the node's fid.
func (h *dirHandle) load(ctx context.Context) syscall.Errno {
	r, errno := h.n.ref(ctx)
	if errno != 0 {
		return errno
	}
	_, fid, err := r.fid.Walk(ctx)
	r.put()
	if err != nil {
		return toErrno(err)
	}
	defer clunk(fid)
	if err := fid.Open(ctx, styx.OREAD); err != nil {
		return toErrno(err)
	}
	ents, err := fid.ReadDir(ctx)
	if err != nil {
		return toErrno(err)
	}
	// Drop names no directory entry can have.
	h.ents = slices.DeleteFunc(ents, func(d styx.Dir) bool {
		return d.Name == "" || d.Name == "." || d.Name == ".." || strings.Contains(d.Name, "/")
	})
	h.pos = 0
	h.last = -1
	return 0
}

// Readdirent returns the next entry, or nil at the end.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.pos
	if i >= len(h.ents)+2 {
		return nil, 0
	}
	h.pos++
	de := &fuse.DirEntry{Mode: syscall.S_IFDIR, Off: uint64(h.pos)}
	switch i {
	case 0:
		de.Name = "."
		de.Ino = h.n.key.Ino
	case 1:
		de.Name = ".."
		de.Ino = h.n.key.Ino
		if _, p := h.n.Parent(); p != nil {
			de.Ino = p.StableAttr().Ino
		}
	default:
		d := &h.ents[i-2]
		key := stableAttr(d)
		de.Name, de.Ino, de.Mode = d.Name, key.Ino, key.Mode
		h.last = i - 2
	}
	return de, 0
}

// Lookup makes the node of an entry just listed (for READDIRPLUS) from
// the listing, without a walk: the node walks its fid when it needs it.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	h.mu.Lock()
	var d *styx.Dir
	if h.last >= 0 && h.ents[h.last].Name == name {
		d = &h.ents[h.last]
	} else {
		for i := range h.ents {
			if h.ents[i].Name == name {
				d = &h.ents[i]
				break
			}
		}
	}
	var dd styx.Dir
	if d != nil {
		dd = *d
	}
	h.mu.Unlock()
	if d == nil {
		return nil, syscall.ENOENT
	}
	c := h.n.fsys.nodeFor(ctx, h.n, &dd, nil)
	if c == nil {
		return nil, syscall.EIO
	}
	h.n.fsys.fillEntry(c, out, &dd)
	return c, 0
}

// Seekdir rereads the directory on a rewind; other offsets are positions
// in the listing read at open.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == 0 {
		nh := &dirHandle{n: h.n}
		if errno := nh.load(ctx); errno != 0 {
			return errno
		}
		h.mu.Lock()
		h.ents, h.pos, h.last = nh.ents, 0, -1
		h.mu.Unlock()
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pos = int(min(off, uint64(len(h.ents)+2)))
	h.last = -1
	return 0
}

// Fsyncdir does nothing.
func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }
