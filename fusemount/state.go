// The state a FUSE node keeps of its 9P file: the fid it holds (shared
// by reference count with open handles), attributes last seen, and
// what they let the page cache keep.

package fusemount

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/styx"
)

// nodeState is the mutable part of a node. It is separate so that a
// cleanup attached to the node can release the fid without keeping the
// node alive.
type nodeState struct {
	// rd is held shared by each cached read in flight and exclusively
	// while attributes of the node are put in a reply. The kernel shrinks
	// a file to a short read's end only if no attributes of it arrived
	// while the read was in flight; otherwise it pads the read with NUL
	// bytes up to the length it was told (see handle.Read).
	rd sync.RWMutex

	// gen counts the changes of the file's data this mount made or
	// saw (a new qid version): readahead read before a change is not
	// used after it.
	gen atomic.Uint64

	mu  sync.Mutex
	ref *fidRef // nil: walk from the parent when next needed

	seen bool   // vers is set
	vers uint32 // qid.vers at the last stat

	// The page cache is valid for this version of the file.
	cacheOK    bool
	cacheVers  uint32
	cacheLen   uint64
	cacheMtime uint32

	// The file read short of its stat length at this version: it is
	// synthetic, and opens of it use direct I/O.
	short     bool
	shortVers uint32

	// 9P2000 has no ctime and no link count: ctime is the last time
	// this mount changed the file's metadata (zero: never), and
	// unlinked is set once this mount has removed the file (cleared if
	// a name leads to it again).
	ctime    time.Time
	unlinked bool
}

// touchCtime records a change of the file's metadata made now.
func (s *nodeState) touchCtime() {
	s.mu.Lock()
	s.ctime = time.Now()
	s.mu.Unlock()
}

// setUnlinked records whether the file has lost its name.
func (s *nodeState) setUnlinked(u bool) {
	s.mu.Lock()
	s.unlinked = u
	if u {
		s.ctime = time.Now()
	}
	s.mu.Unlock()
}

// meta returns the recorded ctime and whether the file was unlinked.
func (s *nodeState) meta() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctime, s.unlinked
}

// A fidRef counts the users of a node's fid: the node itself and each
// request using it. The fid is clunked when the count drops to zero.
type fidRef struct {
	fid  *styx.Fid
	refs atomic.Int32
}

func newFidRef(f *styx.Fid) *fidRef {
	r := &fidRef{fid: f}
	r.refs.Store(1)
	return r
}

func (r *fidRef) put() {
	if r.refs.Add(-1) == 0 {
		clunk(r.fid)
	}
}

// clunk clunks f in the background: clunks never fail in a way that
// matters to the caller, and must not block FORGET or a reply.
func clunk(f *styx.Fid) {
	go f.Clunk(context.Background())
}

// acquire returns the node's fid with a reference for the caller, or nil.
func (s *nodeState) acquire() *fidRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ref != nil {
		s.ref.refs.Add(1)
	}
	return s.ref
}

// set makes f the node's fid, dropping the one it had.
func (s *nodeState) set(f *styx.Fid) {
	s.mu.Lock()
	old := s.ref
	s.ref = newFidRef(f)
	s.mu.Unlock()
	if old != nil {
		old.put()
	}
}

// drop forgets the node's fid if it is still r.
func (s *nodeState) drop(r *fidRef) {
	s.mu.Lock()
	if s.ref != r {
		s.mu.Unlock()
		return
	}
	s.ref = nil
	s.mu.Unlock()
	r.put()
}

// release forgets the node's fid.
func (s *nodeState) release() {
	s.mu.Lock()
	old := s.ref
	s.ref = nil
	s.mu.Unlock()
	if old != nil {
		old.put()
	}
}

// observe records the version of d and reports whether it changed since
// the previous observation.
func (s *nodeState) observe(d *styx.Dir) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = s.seen && s.vers != d.Qid.Vers
	if changed {
		s.gen.Add(1) // changed elsewhere: drop the readahead too
	}
	s.seen = true
	s.vers = d.Qid.Vers
	return changed
}

// keepCache reports whether the page cache, if any, still holds the file
// described by d, and records d as the version the cache now holds.
func (s *nodeState) keepCache(d *styx.Dir) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.cacheOK && s.cacheVers == d.Qid.Vers && s.cacheLen == d.Length && s.cacheMtime == d.Mtime
	s.cacheOK, s.cacheVers, s.cacheLen, s.cacheMtime = true, d.Qid.Vers, d.Length, d.Mtime
	return keep
}

// readShort records that the file, at version vers, ended before its
// stat length.
func (s *nodeState) readShort(vers uint32) {
	s.mu.Lock()
	s.short, s.shortVers = true, vers
	s.mu.Unlock()
}

// isShort reports whether the file at version vers is known to end before
// its stat length.
func (s *nodeState) isShort(vers uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.short && s.shortVers == vers
}

// invalidateCache records a change of the file's data by this mount.
func (s *nodeState) invalidateCache() {
	s.gen.Add(1)
	s.mu.Lock()
	s.cacheOK = false
	s.mu.Unlock()
}
