// The fid table of a connection: fids are reference-counted (the table
// holds one reference, each request in flight on the fid one more), and
// the File's Clunk runs once, when the last reference drops.

package styx

import (
	"context"
	"sync"
	"sync/atomic"

	"cheshire/plan9"
)

// fid is one fid of a connection. The table holds a reference, and each
// request using it holds one; the File is clunked when the last drops.
type fid struct {
	num  uint32
	refs atomic.Int32

	mu      sync.Mutex
	file    File   // guarded by mu
	opened  bool   // guarded by mu
	mode    uint8  // guarded by mu
	removed bool   // guarded by mu
	dirents []Dir  // guarded by mu: directory snapshot taken at offset 0
	dirnext int    // guarded by mu: next entry of dirents to send
	diroff  uint64 // guarded by mu: offset the next directory read must use
}

func newFid(num uint32, f File) *fid {
	x := &fid{num: num, file: f}
	x.refs.Store(1)
	return x
}

// decref drops a reference; the last one clunks the File, and its error
// (a commit-at-clunk file may refuse what was written) is returned.
func (f *fid) decref() error {
	if f.refs.Add(-1) != 0 {
		return nil
	}
	f.mu.Lock()
	file, rclose := f.file, f.opened && f.mode&ORCLOSE != 0 && !f.removed
	f.file = nil
	f.mu.Unlock()
	if file == nil {
		return nil
	}
	var err error
	if rclose {
		err = file.Remove(context.Background())
	}
	if cerr := file.Clunk(); cerr != nil {
		err = cerr
	}
	return err
}

func (f *fid) get() (File, bool, uint8) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.file, f.opened, f.mode
}

func (c *conn) lookup(num uint32) (*fid, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fids[num]
	if f == nil {
		return nil, plan9.ErrUnknownFid
	}
	f.refs.Add(1)
	return f, nil
}

// insert adds a new fid; it fails if num is in use.
func (c *conn) insert(num uint32, file File) (*fid, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.fids[num]; ok || num == NoFid {
		return nil, plan9.ErrDupFid
	}
	f := newFid(num, file)
	c.fids[num] = f
	return f, nil
}

// drop removes num from the table and returns it with the table's
// reference, which the caller must drop.
func (c *conn) drop(num uint32) *fid {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fids[num]
	delete(c.fids, num)
	return f
}

func (c *conn) dropIf(num uint32, f *fid) {
	c.mu.Lock()
	if c.fids[num] == f {
		delete(c.fids, num)
	} else {
		f = nil
	}
	c.mu.Unlock()
	if f != nil {
		f.decref()
	}
}
