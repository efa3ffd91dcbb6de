package dns

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// The reply cache holds the packed replies to plain queries, keyed by
// their question (as sent: the case of the name is kept, and echoed) and
// EDNS flags. It belongs to one version of the zones (see served): a
// change starts a new one, so a cached reply is never stale data. An
// entry is made again after cacheMaxAge, which keeps signatures fresh
// (they are refreshed after a week), and the cache starts afresh when it
// holds cacheMaxEntries, which bounds its memory under a flood of names.
const (
	cacheShards     = 64
	cacheMaxEntries = 1 << 16
	cacheMaxAge     = 10 * time.Minute
)

type respCache struct {
	seed   maphash.Seed
	n      atomic.Int64
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cacheEntry // guarded by mu
}

type cacheEntry struct {
	resp []byte // the reply, ID 0
	made int64  // unix seconds
}

func newRespCache() *respCache {
	c := &respCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *respCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the cached reply for key if there is a fresh one.
func (c *respCache) get(key []byte, now int64) []byte {
	sh := c.shard(key)
	sh.mu.RLock()
	e, ok := sh.m[string(key)]
	sh.mu.RUnlock()
	if !ok || now-e.made > int64(cacheMaxAge/time.Second) {
		return nil
	}
	return e.resp
}

// put caches a copy of resp for key.
func (c *respCache) put(key, resp []byte, now int64) {
	if c.n.Add(1) > cacheMaxEntries {
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.Lock()
			sh.m = make(map[string]cacheEntry)
			sh.mu.Unlock()
		}
		c.n.Store(1)
	}
	r := append([]byte(nil), resp...)
	r[0], r[1] = 0, 0
	sh := c.shard(key)
	sh.mu.Lock()
	sh.m[string(key)] = cacheEntry{resp: r, made: now}
	sh.mu.Unlock()
}

// quickKey returns the cache key of req, appended to key, and the UDP
// size it asks for (0 without EDNS), if req is a plain query: opcode
// QUERY, one question of class IN with an uncompressed name, no other
// records but an OPT of version 0, without options, last. Anything else takes the full
// path, and is not cached.
func quickKey(req, key []byte) ([]byte, int, bool) {
	if len(req) < 17 || req[2]&0xf8 != 0 { // QR and opcode
		return nil, 0, false
	}
	if binary.BigEndian.Uint32(req[4:]) != 1<<16 || binary.BigEndian.Uint16(req[8:]) != 0 {
		return nil, 0, false // qdcount 1, ancount 0, nscount 0
	}
	ar := binary.BigEndian.Uint16(req[10:])
	if ar > 1 {
		return nil, 0, false
	}
	off := 12
	for {
		if off >= len(req) {
			return nil, 0, false
		}
		l := int(req[off])
		if l == 0 {
			off++
			break
		}
		if l&0xc0 != 0 {
			return nil, 0, false
		}
		off += 1 + l
	}
	if off-12 > 255 || off+4 > len(req) || binary.BigEndian.Uint16(req[off+2:]) != 1 {
		return nil, 0, false
	}
	qend := off + 4
	key = append(key, req[12:qend]...)
	if ar == 0 {
		if qend != len(req) {
			return nil, 0, false
		}
		return append(key, 0), 0, true
	}
	// An OPT: root name, type 41, class = UDP size, TTL = extended rcode,
	// version, flags; and no options (a COOKIE needs its own reply).
	o := req[qend:]
	if len(o) != 11 || o[0] != 0 || binary.BigEndian.Uint16(o[1:]) != 41 || o[6] != 0 ||
		binary.BigEndian.Uint16(o[9:]) != 0 {
		return nil, 0, false
	}
	flags := byte(1)
	if o[7]&0x80 != 0 {
		flags |= 2 // DO
	}
	return append(key, flags), int(binary.BigEndian.Uint16(o[3:])), true
}
