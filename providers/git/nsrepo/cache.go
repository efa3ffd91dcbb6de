package nsrepo

import (
	"container/list"
	"sync"

	"cheshire/styx"

	"github.com/go-git/go-git/v5/plumbing"
)

// cacheKey identifies a file's content: its namespace path, qid,
// length and mtime as its directory entry gives them.
type cacheKey struct {
	path   string
	qid    styx.Qid
	length uint64
	mtime  uint32
}

// blobCache remembers the blobs made of files, least recently used
// first out, bounded in entries and bytes. The objects it holds have
// their hashes computed and are never changed, so repositories share
// them.
type blobCache struct {
	max      int
	maxBytes int64

	mu    sync.Mutex
	lru   *list.List // guarded by mu: of *cacheEntry, most recent first
	byKey map[cacheKey]*list.Element
	bytes int64 // guarded by mu
}

type cacheEntry struct {
	key cacheKey
	obj *plumbing.MemoryObject
}

func newBlobCache(max int, maxBytes int64) *blobCache {
	return &blobCache{max: max, maxBytes: maxBytes, lru: list.New(), byKey: map[cacheKey]*list.Element{}}
}

// get returns the blob of key, or nil.
func (c *blobCache) get(k cacheKey) *plumbing.MemoryObject {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byKey[k]
	if e == nil {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).obj
}

// put remembers o as the blob of key; a blob larger than the whole
// cache is not kept.
func (c *blobCache) put(k cacheKey, o *plumbing.MemoryObject) {
	if o.Size() > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[k]; e != nil {
		c.bytes -= e.Value.(*cacheEntry).obj.Size()
		c.lru.Remove(e)
	}
	c.byKey[k] = c.lru.PushFront(&cacheEntry{key: k, obj: o})
	c.bytes += o.Size()
	for c.lru.Len() > c.max || c.bytes > c.maxBytes {
		e := c.lru.Back()
		ce := e.Value.(*cacheEntry)
		c.lru.Remove(e)
		delete(c.byKey, ce.key)
		c.bytes -= ce.obj.Size()
	}
}

// history is what a path keeps of its head: the commit and every
// object it reaches.
type history struct {
	path    string
	head    plumbing.Hash
	objects []plumbing.EncodedObject
	bytes   int64
}

// histories keeps the histories of paths, least recently changed
// first out, bounded in bytes.
type histories struct {
	max int64

	mu     sync.Mutex
	lru    *list.List // guarded by mu: of *history, most recent first
	byPath map[string]*list.Element
	bytes  int64 // guarded by mu
}

func newHistories(max int64) *histories {
	return &histories{max: max, lru: list.New(), byPath: map[string]*list.Element{}}
}

// get returns the history of path, or nil.
func (hs *histories) get(path string) *history {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if e := hs.byPath[path]; e != nil {
		return e.Value.(*history)
	}
	return nil
}

// put makes h its path's history; one larger than the bound is not
// kept, and the path then has none. It reports whether h was kept.
func (hs *histories) put(h *history) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if e := hs.byPath[h.path]; e != nil {
		hs.bytes -= e.Value.(*history).bytes
		hs.lru.Remove(e)
		delete(hs.byPath, h.path)
	}
	if h.bytes > hs.max {
		return false
	}
	hs.byPath[h.path] = hs.lru.PushFront(h)
	hs.bytes += h.bytes
	for hs.bytes > hs.max {
		e := hs.lru.Back()
		old := e.Value.(*history)
		hs.lru.Remove(e)
		delete(hs.byPath, old.path)
		hs.bytes -= old.bytes
	}
	return true
}
