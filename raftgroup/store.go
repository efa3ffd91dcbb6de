package raftgroup

import (
	"errors"
	"sync"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// stable is raft's StableStore over the bolt store, which after close
// drops writes instead of failing them. raft panics when it cannot save
// its term, and its heartbeat handler runs on the transport's
// goroutines, which may still be at work after raft has shut down and
// the store is closed (seen as "failed to save current term: database
// not open"). A write dropped after close is as if the node had died
// just before it.
type stable struct {
	mu     sync.RWMutex
	closed bool // guarded by mu
	s      *raftboltdb.BoltStore
}

var errClosed = errors.New("raft store closed")

func (st *stable) Set(k, v []byte) error {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return nil
	}
	return st.s.Set(k, v)
}

func (st *stable) Get(k []byte) ([]byte, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return nil, errClosed
	}
	return st.s.Get(k)
}

func (st *stable) SetUint64(k []byte, v uint64) error {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return nil
	}
	return st.s.SetUint64(k, v)
}

func (st *stable) GetUint64(k []byte) (uint64, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return 0, errClosed
	}
	return st.s.GetUint64(k)
}

// close ends writes, waiting for those under way.
func (st *stable) close() {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
}
