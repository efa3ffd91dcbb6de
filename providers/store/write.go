package store

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"cheshire/plan9"
)

// inflight is how many coded stripes a write holds at most: one being
// filled, and the rest on their way to the holders (each fragment's
// pieces go out in order, the fragments independently, so a slow holder
// holds back the others only once it is inflight stripes behind).
const inflight = 8

// A writer is one write of a file: content arrives in order, is coded a
// stripe at a time and sent to the k+m holders as it goes; commit waits
// for the holders to sync, signs the list and stores it with them.
type writer struct {
	s     *Store
	path  string
	cap   Cap
	pol   policy
	list  *List
	c     *coder
	keys  []string // holder of each fragment
	ws    []fragWriter
	fails []error // by fragment: why it was lost, guarded by s.mu
	coded error   // guarded by s.mu: the coding of a stripe failed

	mu     sync.Mutex
	off    int64 // content bytes taken
	stripe int   // stripes sent
	cur    *stripeBuf
	free   chan *stripeBuf
	send   chan *stripeBuf
	sent   chan struct{} // closed when the sender is done
	closed bool
	moved  chan struct{} // closed and replaced when off moves
	broken error         // the write failed: every later Write gets this
}

type stripeBuf struct {
	s       int
	n       int
	ks      cipher.Stream // the key stream from data[n]
	data    []byte
	shards  [][]byte
	pending atomic.Int32 // pieces not yet sent
}

// newWriter places the fragments of a new version of the file at path
// (seq after prev) and opens them at their holders.
func (s *Store) newWriter(ctx context.Context, path string, c Cap, pol policy, seq uint64) (*writer, error) {
	l := &List{V: listV, K: pol.K, M: pol.M, Shard: s.opts.Shard, Seq: seq, Pub: c.Pub}
	if _, err := rand.Read(l.Nonce[:]); err != nil {
		return nil, fmt.Errorf("store: nonce: %w", err)
	}
	cd, err := newCoder(pol.K, pol.M, s.opts.Shard, c.ReadKey, l.Nonce)
	if err != nil {
		return nil, err
	}
	w := &writer{s: s, path: path, cap: c, pol: pol, list: l, c: cd,
		free: make(chan *stripeBuf, inflight), send: make(chan *stripeBuf, inflight-1), sent: make(chan struct{}),
		moved: make(chan struct{})}
	n := pol.K + pol.M
	id := c.ID()
	l.Frags = make([]Frag, n)
	l.Holders = make([]string, n)
	for i := range n {
		h := sha256.Sum256(append(append(id[:], l.Nonce[:]...), byte(i), byte(i>>8)))
		l.Frags[i].Name = hex.EncodeToString(h[:])
	}
	w.keys, w.ws, err = s.place(ctx, l, nil, nil)
	if err != nil {
		return nil, err
	}
	w.fails = make([]error, n)
	for range inflight {
		data, shards := cd.newShards()
		w.free <- &stripeBuf{data: data, shards: shards}
	}
	go w.sender()
	return w, nil
}

// place opens fragment i of l, for each i in want (all if nil), at
// holders: the reachable ones nearest the file id by XOR distance, one
// fragment each while there are enough (this node, if among them,
// keeping fragment 0); those in avoid (holders that lost or refused it)
// only when no other takes it.
func (s *Store) place(ctx context.Context, l *List, want []int, avoid map[string]bool) ([]string, []fragWriter, error) {
	if want == nil {
		for i := range l.Frags {
			want = append(want, i)
		}
	}
	id := (Cap{Pub: l.Pub}).ID()
	cands := byDistance(s.placementKeys(), id)
	if len(want) == len(l.Frags) {
		// A whole placement takes the nearest holders in any order: this
		// node, when it is one of them, keeps fragment 0, a data
		// fragment, so that its own reads take a k-th of the content
		// from its disk rather than over TLS.
		if i := slices.Index(cands, s.opts.Self); i > 0 && i < len(l.Frags) {
			cands = slices.Insert(slices.Delete(cands, i, i+1), 0, s.opts.Self)
		}
	}
	used := make(map[string]int)
	for i, h := range l.Holders {
		if h != "" && !slices.Contains(want, i) {
			used[h]++
		}
	}
	keys := make([]string, len(l.Frags))
	ws := make([]fragWriter, len(l.Frags))
	dead := make(map[string]bool)
	for _, i := range want {
		// The holders of avoid only when no other takes the fragment.
		for round := 0; keys[i] == "" && round <= 2*len(l.Frags)+1; round++ {
			for _, k := range cands {
				if dead[k] || used[k] > round || avoid[k] && round <= len(l.Frags) {
					continue
				}
				fw, err := s.holder(k).Create(ctx, l.Frags[i].Name)
				if err != nil {
					s.noteFail(k, err)
					dead[k] = true
					continue
				}
				keys[i], ws[i] = k, fw
				used[k]++
				break
			}
		}
		if keys[i] == "" {
			for _, fw := range ws {
				if fw != nil {
					fw.Abort()
				}
			}
			return nil, nil, fmt.Errorf("store: no holder reachable for fragment %d", i)
		}
	}
	return keys, ws, nil
}

// maxGap is how far ahead of the content taken a write may come: a
// client with several writes in flight (styx's WriteAt, the kernel)
// may have them arrive out of order, and a write waits for those before
// it.
const maxGap = 16 << 20

// Write takes p at off, which must follow what came before, or come
// soon after (it then waits for what comes between). A write that fails
// breaks the version: every later write fails, and so does the commit.
func (w *writer) Write(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := w.write(ctx, p, off)
	if err != nil {
		w.mu.Lock()
		if w.broken == nil {
			w.broken = err
		}
		w.mu.Unlock()
	}
	return n, err
}

func (w *writer) write(ctx context.Context, p []byte, off int64) (int, error) {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return 0, fmt.Errorf("store: write after close: %w", plan9.ErrIO)
		}
		if w.broken != nil {
			err := w.broken
			w.mu.Unlock()
			return 0, err
		}
		if off == w.off {
			break
		}
		if off < w.off || off-w.off > maxGap {
			at := w.off
			w.mu.Unlock()
			return 0, fmt.Errorf("store: bad offset %d: writes must be in order from %d", off, at)
		}
		ch := w.moved
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	defer w.mu.Unlock()
	defer func() {
		close(w.moved)
		w.moved = make(chan struct{})
	}()
	if err := w.failed(); err != nil {
		w.broken = err // the writes waiting their turn get it too
		return 0, err
	}
	n := 0
	for n < len(p) {
		if w.cur == nil {
			select {
			case w.cur = <-w.free:
			case <-ctx.Done():
				return n, ctx.Err()
			}
			w.cur.s, w.cur.n = w.stripe, 0
			w.cur.ks = w.c.stream(w.stripe, 0)
			w.stripe++
		}
		// Encrypted as it is taken: a copy and an encryption in one
		// pass over the bytes, not two.
		c := min(len(w.cur.data)-w.cur.n, len(p)-n)
		w.cur.ks.XORKeyStream(w.cur.data[w.cur.n:w.cur.n+c], p[n:n+c])
		w.cur.n += c
		n += c
		w.off += int64(c)
		if w.cur.n == len(w.cur.data) {
			if err := w.flush(ctx); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// failed is the error that ends the write: fewer than k fragments
// left, too few to rebuild the others from at the commit. w.mu is held.
func (w *writer) failed() error {
	if err := w.codeErr(); err != nil {
		return err
	}
	lost := 0
	var last error
	for _, e := range w.failErrs() {
		if e != nil {
			lost++
			last = e
		}
	}
	if len(w.fails)-lost < w.pol.K {
		return fmt.Errorf("store: %d of %d fragments lost, want %d acks: %w", lost, len(w.fails), w.pol.Happy, last)
	}
	return nil
}

func (w *writer) codeErr() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.coded
}

func (w *writer) failErrs() []error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return append([]error(nil), w.fails...)
}

// flush hands the current stripe to the sender, which codes it; w.mu is
// held, and the stripe's buffer is the sender's from here on.
func (w *writer) flush(ctx context.Context) error {
	b := w.cur
	w.cur = nil
	select {
	case w.send <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sender codes each stripe (computes its parity), off
// the writes' lock, so that the content of the next stripes is taken
// meanwhile, and hands its pieces to the fragments' senders, which hash
// them and send them; a stripe's buffer is free again once every piece
// has gone.
func (w *writer) sender() {
	defer close(w.sent)
	queues := make([]chan *stripeBuf, len(w.ws))
	var wg sync.WaitGroup
	for i := range w.ws {
		queues[i] = make(chan *stripeBuf, inflight)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.fragSender(i, queues[i])
		}()
	}
	for b := range w.send {
		if err := w.c.encode(b.data, b.n, b.shards); err != nil {
			// Not w.mu: a write holding it may wait for this loop.
			w.s.mu.Lock()
			if w.coded == nil {
				w.coded = err
			}
			w.s.mu.Unlock()
			w.free <- b
			continue
		}
		b.pending.Store(int32(len(w.ws)))
		for _, q := range queues {
			q <- b
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
}

// pieceDepth is how many pieces of one fragment are on their way at
// once: a holder's answer to one need not come before the next is sent.
const pieceDepth = inflight

// fragSender hashes fragment i's pieces, in order, into the list (only
// it touches fragment i's hashes until the sender is done), and sends
// them, pieceDepth at a time. A lost fragment's pieces are hashed all
// the same: repair rebuilds it by the list.
func (w *writer) fragSender(i int, q chan *stripeBuf) {
	fw := w.ws[i]
	hashes := &w.list.Frags[i].Hashes
	sem := make(chan struct{}, pieceDepth)
	var wg sync.WaitGroup
	for b := range q {
		*hashes = append(*hashes, w.list.sum(b.shards[i]))
		w.s.mu.Lock()
		lost := w.fails[i] != nil
		w.s.mu.Unlock()
		if lost {
			w.done(b)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(w.s.ctx, ackTimeout)
			defer cancel()
			if err := fw.WriteAt(ctx, b.shards[i], int64(b.s)*int64(w.c.shard)); err != nil {
				w.lose(i, err)
			}
			w.done(b)
		}()
	}
	wg.Wait()
}

// done counts one piece of b sent; the last frees b.
func (w *writer) done(b *stripeBuf) {
	if b.pending.Add(-1) == 0 {
		w.free <- b
	}
}

func (w *writer) lose(i int, err error) {
	w.s.mu.Lock()
	if w.fails[i] == nil {
		w.fails[i] = err
	}
	w.s.mu.Unlock()
	w.s.noteFail(w.keys[i], err)
	w.s.log.Warn("store: fragment lost during write", "file", w.path, "fragment", i, "holder", w.keys[i], "err", err)
}

// commit ends the write: the last stripe goes out, every holder syncs
// its fragment and stores the signed list; it returns the acks, or an
// error if fewer than happy came (the version then does not exist).
func (w *writer) commit(ctx context.Context) (acks, holders int, err error) {
	w.mu.Lock()
	w.closed = true
	if w.broken != nil {
		err = fmt.Errorf("store: a write failed, version discarded: %w", w.broken)
		w.cur = nil
	}
	if err == nil && w.cur != nil && w.cur.n > 0 {
		err = w.flush(ctx)
	} else if w.cur != nil {
		w.stripe--
	}
	w.mu.Unlock()
	close(w.send)
	<-w.sent
	if err == nil {
		err = w.codeErr()
	}
	if err != nil {
		w.abort()
		return 0, 0, err
	}
	w.list.Size = w.off
	for i := range w.list.Holders {
		w.list.Holders[i] = w.keys[i]
	}
	w.list.Sign(w.cap.Private())
	data := w.list.Marshal()
	ok := make([]bool, len(w.ws))
	var wg sync.WaitGroup
	lost := w.failErrs() // the senders are done: only the commits below lose more
	for i, fw := range w.ws {
		if lost[i] != nil {
			fw.Abort()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fw.Commit(); err != nil {
				w.lose(i, err)
				return
			}
			w.s.noteOK(w.keys[i])
			ok[i] = true
		}()
	}
	wg.Wait()
	synced := 0
	var last error
	lost = w.failErrs()
	for i := range ok {
		if ok[i] {
			synced++
		} else if e := lost[i]; e != nil && last == nil {
			last = e
		}
	}
	if synced < w.pol.Happy && synced >= w.pol.K {
		// Holders that refused part way (over quota, disk full) or went
		// away: their fragments are rebuilt from the others, elsewhere.
		n, err := w.replace(ctx, ok)
		synced += n
		if err != nil {
			last = err
		}
		data = w.list.Marshal() // the places changed; they are not signed
	}
	if synced < w.pol.Happy {
		// The list goes nowhere: the version does not exist.
		if last == nil {
			last = errors.New("no holder acknowledged")
		}
		return synced, 0, fmt.Errorf("store: only %d of %d fragments acknowledged, want %d: %w", synced, len(w.ws), w.pol.Happy, last)
	}
	// Each holder of an acknowledged fragment keeps the list too.
	listName := w.cap.IDHex() + ".list"
	done := make(map[string]error)
	var mu sync.Mutex
	for i := range w.ws {
		if !ok[i] {
			continue
		}
		k := w.keys[i]
		mu.Lock()
		_, seen := done[k]
		if !seen {
			done[k] = nil
		}
		mu.Unlock()
		if seen {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, ackTimeout)
			defer cancel()
			err := w.s.holder(k).PutList(cctx, listName, data)
			mu.Lock()
			done[k] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	distinct := make(map[string]bool)
	for i := range w.ws {
		if ok[i] && done[w.keys[i]] == nil {
			acks++
			distinct[w.keys[i]] = true
		} else if e := done[w.keys[i]]; e != nil {
			last = e
		}
	}
	if acks < w.pol.Happy {
		if last == nil {
			last = errors.New("no holder acknowledged")
		}
		return acks, len(distinct), fmt.Errorf("store: only %d of %d fragments acknowledged, want %d: %w", acks, len(w.ws), w.pol.Happy, last)
	}
	// This node keeps the list of every file it wrote, held or not; it is
	// the version this node reads.
	if !distinct[w.s.opts.Self] {
		if err := w.s.local.PutList(ctx, listName, data); err != nil {
			return 0, 0, err
		}
	}
	return acks, len(distinct), nil
}

// replace rebuilds the fragments not ok (lost during the write) from
// those that are, at holders other than those that lost them, and
// returns how many it stored (each then ok, at its new holder).
func (w *writer) replace(ctx context.Context, ok []bool) (int, error) {
	var lost []int
	avoid := make(map[string]bool)
	for i := range ok {
		if !ok[i] {
			lost = append(lost, i)
			avoid[w.keys[i]] = true
			w.list.Holders[i] = ""
		}
	}
	n, err := w.s.rebuild(ctx, w.list, lost, avoid, 0)
	for _, i := range lost {
		if k := w.list.Holders[i]; k != "" {
			w.keys[i], ok[i] = k, true
		}
	}
	if err != nil {
		return n, fmt.Errorf("store: lost fragments not placed again: %w", err)
	}
	w.s.log.Info("store: fragments lost during the write placed again", "file", w.path, "lost", len(lost), "placed", n)
	return n, nil
}

// abort throws the version away.
func (w *writer) abort() {
	for _, fw := range w.ws {
		fw.Abort()
	}
}
