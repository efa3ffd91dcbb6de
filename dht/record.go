package dht

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"cheshire/nodekey"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
)

// MaxValue is the largest value Publish takes: BEP 44 nodes refuse an
// item whose bencoded value ("996:" and the bytes) is over 1000 bytes.
const MaxValue = 996

// maxEncodedValue is the BEP 44 limit on the bencoded value.
const maxEncodedValue = 1000

// maxSeen is how many keys a node remembers the highest seq of.
const maxSeen = 16384

// Errors of Publish and Lookup; the errors returned wrap them.
var (
	ErrTooBig    = errors.New("value too big")
	ErrNotFound  = errors.New("no record found")
	ErrForged    = errors.New("forged record")
	ErrStale     = errors.New("stale record")
	ErrMalformed = errors.New("malformed record")
	ErrNoStore   = errors.New("no node stored the record")
	ErrNothing   = errors.New("nothing published yet")
)

// A Record is a value published under an ed25519 key.
type Record struct {
	Key    ed25519.PublicKey
	Value  []byte
	Seq    int64         // the publisher's sequence number: microseconds since 1970
	Age    time.Duration // how long ago Seq says it was published (0 if in the future)
	From   int           // nodes that gave this record (Lookup)
	Stored int           // nodes that accepted it (the node's own record, at its last put)
	When   time.Time     // when it was fetched or put
}

// ageOf is how long ago seq (microseconds) was, by now.
func ageOf(seq int64, now time.Time) time.Duration {
	age := now.Sub(time.UnixMicro(seq))
	if age < 0 {
		return 0
	}
	return age
}

// signedBuffer is what a BEP 44 mutable item's signature covers, for a
// bencoded value bv and no salt.
func signedBuffer(seq int64, bv []byte) []byte {
	b := make([]byte, 0, 32+len(bv))
	b = append(b, "3:seqi"...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "e1:v"...)
	return append(b, bv...)
}

// decodeString decodes bv, which must be exactly one bencoded byte
// string ("N:bytes").
func decodeString(bv []byte) ([]byte, error) {
	colon := bytes.IndexByte(bv, ':')
	if colon <= 0 || colon > 4 {
		return nil, fmt.Errorf("%w: value is not a byte string", ErrMalformed)
	}
	digits := bv[:colon]
	if len(digits) > 1 && digits[0] == '0' {
		return nil, fmt.Errorf("%w: value length has a leading zero", ErrMalformed)
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: value is not a byte string", ErrMalformed)
		}
		n = n*10 + int(c-'0')
	}
	if rest := len(bv) - colon - 1; rest != n {
		return nil, fmt.Errorf("%w: value length %d, %d bytes follow", ErrMalformed, n, rest)
	}
	return bytes.Clone(bv[colon+1:]), nil
}

// verifyRecord checks a get reply's item for key pub: the key it names,
// the seq, the size and form of the value and the signature (checked by
// the library's bep44.Verify and again with crypto/ed25519 over the
// buffer built here). It returns the value.
func verifyRecord(pub ed25519.PublicKey, k [32]byte, seq *int64, bv []byte, sig [64]byte) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: key of %d bytes", ErrMalformed, len(pub))
	}
	if !bytes.Equal(k[:], pub) {
		return nil, fmt.Errorf("%w: signed by another key", ErrForged)
	}
	if seq == nil {
		return nil, fmt.Errorf("%w: no seq", ErrMalformed)
	}
	if len(bv) > maxEncodedValue {
		return nil, fmt.Errorf("%w: value of %d bytes bencoded, over %d", ErrMalformed, len(bv), maxEncodedValue)
	}
	if !bep44.Verify(pub, nil, *seq, bv, sig[:]) || !ed25519.Verify(pub, signedBuffer(*seq, bv), sig[:]) {
		return nil, fmt.Errorf("%w: bad signature", ErrForged)
	}
	return decodeString(bv)
}

// target is the DHT id of the mutable item of key pub (no salt).
func target(pub ed25519.PublicKey) bep44.Target {
	var k [32]byte
	copy(k[:], pub)
	return bep44.MakeMutableTarget(k, nil)
}

// found is the best record a get traversal gave.
type found struct {
	value []byte
	seq   int64
	sig   [64]byte
	from  int
}

// getAll runs a get traversal for pub's item, verifying each reply. It
// returns the highest valid record (nil if none), the closest nodes with
// tokens and the counts of refused replies by kind.
func (n *Node) getAll(ctx context.Context, pub ed25519.PublicKey) (best *found, closest []closeNode, refused map[error]int, err error) {
	t := target(pub)
	refused = make(map[error]int)
	var mu sync.Mutex
	closest, err = n.traverse(ctx, t,
		func(ctx context.Context, a adht.Addr) adht.QueryResult {
			return n.srv.Get(ctx, a, t, nil, adht.QueryRateLimiting{})
		},
		func(from netip.AddrPort, r *krpc.Return) {
			if len(r.V) == 0 {
				return
			}
			v, verr := verifyRecord(pub, r.K, r.Seq, r.V, r.Sig)
			mu.Lock()
			defer mu.Unlock()
			if verr != nil {
				for _, kind := range []error{ErrForged, ErrMalformed} {
					if errors.Is(verr, kind) {
						refused[kind]++
					}
				}
				n.log.Debug("dht: refused record", "from", from, "key", nodekey.Encode(pub), "err", verr)
				return
			}
			switch {
			case best == nil || *r.Seq > best.seq:
				best = &found{value: v, seq: *r.Seq, sig: r.Sig, from: 1}
			case *r.Seq == best.seq && bytes.Equal(v, best.value):
				best.from++
			}
		})
	mu.Lock()
	defer mu.Unlock()
	n.mem.count(func(c *Stats) {
		c.Forged += int64(refused[ErrForged])
		c.Malformed += int64(refused[ErrMalformed])
	})
	return best, closest, refused, err
}

// Lookup fetches the record published under pub and verifies it. It
// refuses replies with a bad signature (counted as forged) and a record
// with a lower seq than one seen before for pub (counted as stale). The
// errors wrap ErrNotFound, ErrForged (every record found was forged) and
// ErrStale.
func (n *Node) Lookup(ctx context.Context, pub ed25519.PublicKey) (Record, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Record{}, fmt.Errorf("dht: lookup: key of %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	key := nodekey.Encode(pub)
	best, _, refused, err := n.getAll(ctx, pub)
	if best == nil {
		switch {
		case err != nil:
			return Record{}, fmt.Errorf("dht: lookup %s: %w", key, err)
		case refused[ErrForged] > 0:
			return Record{}, fmt.Errorf("dht: lookup %s: %w: bad signature from %d nodes", key, ErrForged, refused[ErrForged])
		case refused[ErrMalformed] > 0:
			return Record{}, fmt.Errorf("dht: lookup %s: %w from %d nodes", key, ErrMalformed, refused[ErrMalformed])
		}
		return Record{}, fmt.Errorf("dht: lookup %s: %w", key, ErrNotFound)
	}
	now := n.now()
	m := n.mem
	m.mu.Lock()
	if seen, ok := m.seen[key]; ok && best.seq < seen {
		m.counts.Stale++
		m.mu.Unlock()
		return Record{}, fmt.Errorf("dht: lookup %s: %w: seq %d is lower than %d seen before", key, ErrStale, best.seq, seen)
	}
	m.see(key, best.seq)
	m.counts.Fetched++
	m.mu.Unlock()
	r := Record{Key: pub, Value: best.value, Seq: best.seq, Age: ageOf(best.seq, now), From: best.from, When: now}
	if own := n.own(); own != nil && bytes.Equal(pub, n.pub) && own.seq == best.seq {
		r.Stored = own.stored
	}
	m.keep(key, r)
	return r, nil
}

// see records seq as seen for key; m.mu is held.
func (m *Memory) see(key string, seq int64) {
	if cur, ok := m.seen[key]; ok {
		if seq > cur {
			m.seen[key] = seq
		}
		return
	}
	if len(m.seen) >= maxSeen {
		for k := range m.seen {
			delete(m.seen, k)
			break
		}
	}
	m.seen[key] = seq
}

// own returns a copy of the node's last published record, or nil.
func (n *Node) own() *ownRecord {
	n.mem.mu.Lock()
	defer n.mem.mu.Unlock()
	if n.mem.own == nil {
		return nil
	}
	o := *n.mem.own
	return &o
}

// Publish stores value in the DHT under the node's key, as a BEP 44
// mutable item signed with it, with the time in microseconds as seq
// (higher than any seq seen for the key). It returns how many of the
// closest nodes accepted it; none is an error wrapping ErrNoStore. A
// value over MaxValue bytes is refused with ErrTooBig.
func (n *Node) Publish(ctx context.Context, value []byte) (int, error) {
	if len(value) > MaxValue {
		return 0, fmt.Errorf("dht: publish: %w: %d bytes, at most %d", ErrTooBig, len(value), MaxValue)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	best, closest, _, err := n.getAll(ctx, n.pub)
	if err != nil {
		return 0, fmt.Errorf("dht: publish: %w", err)
	}
	seq := n.now().UnixMicro()
	key := nodekey.Encode(n.pub)
	n.mem.mu.Lock()
	if s, ok := n.mem.seen[key]; ok && s >= seq {
		seq = s + 1
	}
	if o := n.mem.own; o != nil && o.seq >= seq {
		seq = o.seq + 1
	}
	n.mem.mu.Unlock()
	if best != nil && best.seq >= seq {
		seq = best.seq + 1
	}
	put := bep44.Put{V: bytes.Clone(value), K: (*[32]byte)(n.pub), Seq: seq}
	put.Sign(n.key)
	o := &ownRecord{value: bytes.Clone(value), seq: seq, sig: put.Sig}
	return n.putOwn(ctx, o, closest)
}

// putOwn puts o to the closest nodes and records it as the node's own.
func (n *Node) putOwn(ctx context.Context, o *ownRecord, closest []closeNode) (int, error) {
	put := bep44.Put{V: o.value, K: (*[32]byte)(n.pub), Seq: o.seq, Sig: o.sig}
	stored, firstErr := sendAll(closest, func(c closeNode) error {
		return n.srv.Put(ctx, udpAddr(c.addr), put, c.token, adht.QueryRateLimiting{}).ToError()
	})
	now := n.now()
	o.stored, o.when = stored, now
	key := nodekey.Encode(n.pub)
	m := n.mem
	m.mu.Lock()
	// A republish that ran alongside a Publish does not bring back the
	// older record.
	latest := m.own == nil || o.seq >= m.own.seq
	if latest {
		m.own = o
	}
	m.see(key, o.seq)
	m.counts.Published++
	m.mu.Unlock()
	if latest {
		m.keep(key, Record{Key: n.pub, Value: o.value, Seq: o.seq, Age: ageOf(o.seq, now), Stored: stored, When: now})
	}
	n.log.Info("dht: published", "key", key, "seq", o.seq, "stored", stored, "asked", len(closest))
	if stored == 0 {
		if firstErr != nil {
			return 0, fmt.Errorf("dht: publish: %w (%d asked; %v)", ErrNoStore, len(closest), firstErr)
		}
		return 0, fmt.Errorf("dht: publish: %w (%d asked)", ErrNoStore, len(closest))
	}
	return stored, nil
}

// Republish puts the node's last published record again, with the same
// seq and signature, so that the nodes closest to its key now keep it for
// another two hours. It returns how many nodes accepted it.
func (n *Node) Republish(ctx context.Context) (int, error) {
	o := n.own()
	if o == nil {
		return 0, fmt.Errorf("dht: republish: %w", ErrNothing)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	t := target(n.pub)
	closest, err := n.traverse(ctx, t, func(ctx context.Context, a adht.Addr) adht.QueryResult {
		return n.srv.Get(ctx, a, t, nil, adht.QueryRateLimiting{})
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("dht: republish: %w", err)
	}
	return n.putOwn(ctx, o, closest)
}

// maintain republishes the node's record and announces its paths again
// until the node closes.
func (n *Node) maintain() {
	defer n.wg.Done()
	rt := time.NewTicker(n.republishEvery)
	defer rt.Stop()
	at := time.NewTicker(n.reannounceEvery)
	defer at.Stop()
	qt := time.NewTicker(QuietSaveInterval)
	defer qt.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-qt.C:
			n.saveQuiet()
		case <-rt.C:
			if n.own() == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
			if _, err := n.Republish(ctx); err != nil {
				n.log.Warn("dht: republish", "err", err)
			}
			cancel()
		case <-at.C:
			n.reannounce()
		}
	}
}

// opTimeout bounds each operation of the maintenance loop.
const opTimeout = 2 * time.Minute

// AgeAt is how long ago r's Seq says it was published, by now (0 if in
// the future).
func (r Record) AgeAt(now time.Time) time.Duration { return ageOf(r.Seq, now) }

// Own reports the seq of the node's last published record and how many
// nodes accepted its last put; ok is false if it published none.
func (n *Node) Own() (seq int64, stored int, ok bool) {
	o := n.own()
	if o == nil {
		return 0, 0, false
	}
	return o.seq, o.stored, true
}

// RecordKeys returns the keys (z-base-32) of the records the node keeps,
// fetched or published, sorted.
func (n *Node) RecordKeys() []string {
	m := n.mem
	m.mu.Lock()
	keys := make([]string, 0, len(m.records))
	for k := range m.records {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	slices.Sort(keys)
	return keys
}

// Record returns the record kept for key (z-base-32), if any.
func (n *Node) Record(key string) (Record, bool) {
	m := n.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[key]
	return r, ok
}
