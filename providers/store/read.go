package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/plan9"
)

// findList returns the latest list of the file of c that verifies. With
// a write cap this node wrote every version and kept its list; with
// another cap it takes the latest of its own copy and what the holders
// give.
func (s *Store) findList(ctx context.Context, c Cap) (*List, error) {
	name := c.IDHex() + ".list"
	var (
		mu   sync.Mutex
		best *List
		wg   sync.WaitGroup
	)
	if data, err := s.local.GetList(ctx, name); err == nil {
		if l, err := ParseList(data); err == nil && bytes.Equal(l.Pub, c.Pub) {
			if c.CanWrite() {
				return l, nil
			}
			best = l
		}
	}
	for _, k := range byDistance(s.holderKeys(), c.ID()) {
		if k == s.opts.Self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			data, err := s.holder(k).GetList(cctx, name)
			if err != nil {
				return
			}
			l, err := ParseList(data)
			if err != nil || !bytes.Equal(l.Pub, c.Pub) {
				s.noteBad(k, "")
				return
			}
			mu.Lock()
			if best == nil || l.Seq > best.Seq {
				best = l
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if best == nil {
		return nil, fmt.Errorf("store: no holder has file %s: %w", c.IDHex()[:8], plan9.ErrNotFound)
	}
	return best, nil
}

// A fetcher gets verified pieces of a file's stripes from its holders,
// keeping each fragment open once reached.
type fetcher struct {
	s *Store
	l *List
	c *coder

	// pieces holds buffers of a piece's size, for the stripes a reader
	// fetches. Only the pieces that came whole go back (putPieces): a
	// failed or abandoned read may still be filling its buffer.
	pieces sync.Pool

	mu   sync.Mutex
	open map[int]fragReader // guarded by mu
	dead map[int]error      // guarded by mu: fragments that failed
	slow map[int]bool       // guarded by mu: fragments that did not answer within hedge
}

func (s *Store) newFetcher(l *List, readKey []byte) (*fetcher, error) {
	c, err := newCoder(l.K, l.M, l.Shard, readKey, l.Nonce)
	if err != nil {
		return nil, err
	}
	f := &fetcher{s: s, l: l, c: c, open: make(map[int]fragReader), dead: make(map[int]error), slow: make(map[int]bool)}
	f.pieces.New = func() any {
		p := make([]byte, l.Shard)
		return &p
	}
	return f, nil
}

// putPieces gives the pieces of a stripe fetched back to the pool, once
// nothing refers to them.
func (f *fetcher) putPieces(shards [][]byte) {
	for _, p := range shards {
		if len(p) == f.l.Shard {
			f.pieces.Put(&p)
		}
	}
}

func (f *fetcher) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.open {
		r.Close()
	}
	f.open = nil
}

// piece reads fragment i's piece of stripe st into p and checks it.
func (f *fetcher) piece(ctx context.Context, i, st int, p []byte) error {
	f.mu.Lock()
	if err := f.dead[i]; err != nil {
		f.mu.Unlock()
		return err
	}
	r := f.open[i]
	f.mu.Unlock()
	key := f.l.Holders[i]
	if key == "" {
		return fmt.Errorf("store: fragment %d has no holder", i)
	}
	if r == nil {
		nr, err := f.s.holder(key).Open(ctx, f.l.ref(i))
		if err != nil {
			f.kill(i, err)
			return err
		}
		f.mu.Lock()
		if f.open == nil {
			f.mu.Unlock()
			nr.Close()
			return fmt.Errorf("store: read closed: %w", plan9.ErrIO)
		}
		if r = f.open[i]; r == nil {
			f.open[i], r = nr, nr
		} else {
			nr.Close()
		}
		f.mu.Unlock()
	}
	n, err := r.ReadAt(ctx, p, int64(st)*int64(f.l.Shard))
	if err != nil {
		if ctx.Err() == nil {
			f.kill(i, err)
		}
		return err
	}
	if n != len(p) || f.l.sum(p) != f.l.Frags[i].Hashes[st] {
		f.s.noteBad(key, f.l.Frags[i].Name)
		err := fmt.Errorf("store: fragment %d at %s does not match its hash", i, short(key))
		f.kill(i, err)
		return err
	}
	return nil
}

func (f *fetcher) kill(i int, err error) {
	f.mu.Lock()
	if f.dead[i] == nil {
		f.dead[i] = err
	}
	f.mu.Unlock()
	f.s.noteFail(f.l.Holders[i], err)
}

// stripe gets stripe st: the first k pieces to arrive intact, asking the
// data fragments first and another fragment whenever one fails or a
// second passes without an answer. It returns the pieces, nil where
// none came.
func (f *fetcher) stripe(ctx context.Context, st int, want int) ([][]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := f.l.K + f.l.M
	shards := make([][]byte, n)
	type result struct {
		i   int
		p   []byte
		err error
	}
	results := make(chan result, n)
	running, got := 0, 0
	var errs []error
	// The order to ask: fragments that have not been slow first (data
	// before parity), then those that have; dead ones never.
	f.mu.Lock()
	var order []int
	for pass := range 2 {
		for i := range n {
			if f.dead[i] == nil && f.slow[i] == (pass == 1) {
				order = append(order, i)
			}
		}
	}
	f.mu.Unlock()
	asked := make(map[int]bool)
	start := func() bool {
		for len(order) > 0 {
			i := order[0]
			order = order[1:]
			f.mu.Lock()
			dead := f.dead[i] != nil
			f.mu.Unlock()
			if dead {
				continue
			}
			running++
			asked[i] = true
			go func() {
				p := *f.pieces.Get().(*[]byte)
				err := f.piece(ctx, i, st, p)
				results <- result{i, p, err}
			}()
			return true
		}
		return false
	}
	for range want {
		start()
	}
	timer := time.NewTimer(hedge)
	defer timer.Stop()
	for got < want {
		if running == 0 {
			if len(errs) == 0 {
				f.mu.Lock()
				for i := range n {
					if e := f.dead[i]; e != nil {
						errs = append(errs, e)
						break
					}
				}
				f.mu.Unlock()
			}
			return nil, fmt.Errorf("store: too few fragments: %d of %d intact, want %d: %v", got, n, want, firstErr(errs))
		}
		select {
		case r := <-results:
			running--
			if r.err != nil {
				delete(asked, r.i)
				errs = append(errs, r.err)
				start()
				continue
			}
			delete(asked, r.i)
			shards[r.i] = r.p
			got++
			f.mu.Lock()
			delete(f.slow, r.i)
			f.mu.Unlock()
		case <-timer.C:
			// Those still out are slow: later stripes ask them last.
			f.mu.Lock()
			for i := range asked {
				f.slow[i] = true
			}
			f.mu.Unlock()
			start()
			timer.Reset(hedge)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return shards, nil
}

func firstErr(errs []error) error {
	if len(errs) == 0 {
		return fmt.Errorf("no fragment reachable")
	}
	return errs[0]
}

// readAhead is how many stripes a reader fetches ahead of the one read.
const readAhead = 8

// A reader reads a file's content, a stripe at a time, the next
// readAhead stripes fetched while the current one is read.
type reader struct {
	f      *fetcher
	ctx    context.Context // cancelled by Close: ends the fetches
	cancel context.CancelFunc

	mu      sync.Mutex
	cache   map[int]*stripeResult // guarded by mu: the stripes from readAhead before the lowest read to readAhead past the highest
	reading map[int]int           // guarded by mu: the stripes Reads are at, and how many
}

// A stripeResult is a stripe fetched: its k data pieces (buffers of the
// fetcher's pool) hold its n bytes of content, encrypted: a Read
// decrypts what it takes as it copies it. The cache holds a reference,
// the fetch one until it is done, and each Read copying from it one;
// the last gives the pieces back to the pool.
type stripeResult struct {
	f      *fetcher
	st     int
	done   chan struct{}
	pieces [][]byte
	n      int
	err    error
	refs   atomic.Int32
}

func (sr *stripeResult) release() {
	if sr.refs.Add(-1) == 0 {
		sr.f.putPieces(sr.pieces)
	}
}

// copyAt puts the content from off into p, decrypted.
func (sr *stripeResult) copyAt(p []byte, off int) int {
	shard := sr.f.l.Shard
	n := 0
	for n < len(p) && off < sr.n {
		j, o := off/shard, off%shard
		c := min(len(p)-n, min(shard, sr.n-j*shard)-o)
		sr.f.c.xorAt(sr.st, off, p[n:n+c], sr.pieces[j][o:o+c])
		n += c
		off += c
	}
	return n
}

func (s *Store) newReader(ctx context.Context, c Cap) (*reader, error) {
	l, err := s.findList(ctx, c)
	if err != nil {
		return nil, err
	}
	f, err := s.newFetcher(l, c.ReadKey)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(s.ctx)
	return &reader{f: f, ctx: rctx, cancel: cancel, cache: make(map[int]*stripeResult), reading: make(map[int]int)}, nil
}

// get returns stripe st's content, starting its fetch if need be, for
// a read at stripe lo (st or before it). The stripes kept are those
// from readAhead before the lowest being read to readAhead after the
// highest: reads may be in flight several at once, and arrive and end
// out of order, so one may come for a stripe behind those being read.
// (Counted from st alone, reading ahead dropped the stripes just
// fetched ahead, and every stripe was fetched twice, more with reads in
// flight together.)
func (r *reader) get(st, lo int) *stripeResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.getLocked(st, lo)
}

func (r *reader) getLocked(st, lo int) *stripeResult {
	if sr := r.cache[st]; sr != nil {
		return sr
	}
	hi := st
	for k := range r.reading {
		lo, hi = min(lo, k), max(hi, k)
	}
	for k, sr := range r.cache {
		if k < lo-readAhead || k > hi+readAhead {
			delete(r.cache, k)
			sr.release()
		}
	}
	sr := &stripeResult{f: r.f, st: st, done: make(chan struct{})}
	sr.refs.Store(2) // the cache's and the fetch's
	r.cache[st] = sr
	go func() {
		defer sr.release()
		defer close(sr.done)
		ctx, cancel := context.WithTimeout(r.ctx, ackTimeout)
		defer cancel()
		shards, err := r.f.stripe(ctx, st, r.f.l.K)
		if err == nil {
			err = r.f.c.rebuild(shards, true)
		}
		if err != nil {
			sr.err = err
			return
		}
		k := r.f.l.K
		sb := int64(r.f.c.stripeBytes())
		sr.n = int(min(sb, r.f.l.Size-int64(st)*sb))
		sr.pieces = shards[:k:k]
		r.f.putPieces(shards[k:]) // parity, used only to rebuild
	}()
	return sr
}

func (r *reader) Read(ctx context.Context, p []byte, off int64) (int, error) {
	size := r.f.l.Size
	sb := int64(r.f.c.stripeBytes())
	// Every stripe this read spans is asked for at once: a first read
	// of 1 MiB spans two stripes of 768 KiB, and fetched one after the
	// other they took two round trips to the holders.
	if end := min(off+int64(len(p)), size); off < end {
		r.mu.Lock()
		for st := off / sb; st*sb < end; st++ {
			r.getLocked(int(st), int(off/sb))
		}
		r.mu.Unlock()
	}
	n := 0
	for n < len(p) && off < size {
		st := int(off / sb)
		c, err := r.readStripe(ctx, st, p[n:], off-int64(st)*sb)
		n += c
		off += int64(c)
		if err != nil {
			return n, err
		}
	}
	// Read ahead once this read is done, so that the first one has the
	// holders to itself (begun with its first stripe, eight more
	// stripes' fetches held back the rest of it).
	if n > 0 {
		last := int((off - 1) / sb)
		for a := last + 1; a <= last+readAhead && int64(a)*sb < size; a++ {
			r.get(a, last)
		}
	}
	return n, nil
}

// readStripe copies stripe st's content from off into p.
func (r *reader) readStripe(ctx context.Context, st int, p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.reading[st]++
	sr := r.getLocked(st, st)
	sr.refs.Add(1)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.reading[st]--; r.reading[st] == 0 {
			delete(r.reading, st)
		}
		r.mu.Unlock()
		sr.release()
	}()
	select {
	case <-sr.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if sr.err != nil {
		r.mu.Lock()
		if r.cache[st] == sr {
			delete(r.cache, st)
			sr.release()
		}
		r.mu.Unlock()
		return 0, sr.err
	}
	return sr.copyAt(p, int(off)), nil
}

func (r *reader) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}

func (r *reader) Close(ctx context.Context) error {
	r.cancel()
	r.f.close()
	return nil
}
