// Readahead of our own, for a sequential reader of a cached file when
// the kernel's readahead is small.

package fusemount

import (
	"context"
	"sync"
	"sync/atomic"

	"cheshire/styx"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Unless a process that may write sysfs raises it (setReadAhead), the
// kernel reads ahead at most 128 KiB of a FUSE file, one READ at a time:
// a sequential reader then waits for a 128 KiB Tread round trip every
// 128 KiB. When a handle's reads are sequential and smaller than its
// iounit, the handle reads ahead itself: up to raChunks Treads of a
// whole iounit in flight past the kernel's read, and answers the
// kernel's READs from them.
//
// Memory is bounded twice: raChunks chunks per open file, and
// raBudget chunks per mount, shared by all its open files (a file that
// finds none free reads as before, one Tread per READ). With the
// 1 MiB iounit of the default msize that is 4 MiB per file and 16 MiB
// per mount, besides what the kernel holds.
const (
	raChunks = 4
	raBudget = 16
)

// raPool holds a mount's readahead buffers: at most raBudget, made on
// first use and reused.
type raPool struct {
	size int           // bytes in a buffer
	sem  chan struct{} // a token for each buffer handed out
	free chan []byte
}

func newRAPool(size int) *raPool {
	return &raPool{size: size, sem: make(chan struct{}, raBudget), free: make(chan []byte, raBudget)}
}

// get returns a buffer, or nil if the mount's budget is spent.
func (p *raPool) get() []byte {
	select {
	case p.sem <- struct{}{}:
	default:
		return nil
	}
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, p.size)
	}
}

func (p *raPool) put(b []byte) {
	p.free <- b
	<-p.sem
}

// A chunk is one Tread of readahead: buf holds n bytes of the file
// from off once done is closed.
type chunk struct {
	off  int64
	gen  uint64 // the node's write generation when the Tread was sent
	buf  []byte
	n    int
	err  error
	done chan struct{}
	refs atomic.Int32 // the readahead list, the Tread, each reply
	pool *raPool
}

func (c *chunk) unref() {
	if c.refs.Add(-1) == 0 {
		c.pool.put(c.buf)
	}
}

// readAhead is the readahead state of one open file.
type readAhead struct {
	pool *raPool
	gen  *atomic.Uint64 // the node's write generation

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc

	mu     sync.Mutex
	next   int64    // end of the last READ: a READ at next is sequential
	chunks []*chunk // in offset order, contiguous
	closed bool
}

func newReadAhead(pool *raPool, gen *atomic.Uint64) *readAhead {
	ctx, cancel := context.WithCancel(context.Background())
	return &readAhead{pool: pool, gen: gen, ctx: ctx, cancel: cancel, next: -1}
}

// read answers a READ of len(dest) bytes at off from the chunks, or
// returns nil: then the caller reads from the server as it would have.
// It sends the Treads of the chunks that follow a sequential READ.
func (ra *readAhead) read(ctx context.Context, fid *styx.Fid, dest []byte, off int64) fuse.ReadResult {
	iou := fid.Iounit()
	if ra == nil || iou == 0 || len(dest) >= int(iou) || len(dest) == 0 {
		return nil
	}
	end := off + int64(len(dest))
	ra.mu.Lock()
	if ra.closed {
		ra.mu.Unlock()
		return nil
	}
	gen := ra.gen.Load()
	var hit *chunk
	for _, c := range ra.chunks {
		if c.gen == gen && c.off <= off && end <= c.off+int64(iou) {
			hit = c
		}
	}
	// The kernel's READs may reach us out of order: one that a chunk
	// covers counts as sequential.
	sequential := hit != nil || off == ra.next
	ra.next = max(ra.next, end)
	if !sequential {
		ra.next = end
	}
	// Drop what a write made stale, what this READ is past, and
	// everything if the reader jumped.
	keep := ra.chunks[:0]
	for _, c := range ra.chunks {
		if !sequential || c.gen != gen || c.off+int64(iou) <= off {
			c.unref()
			continue
		}
		keep = append(keep, c)
	}
	clear(ra.chunks[len(keep):])
	ra.chunks = keep
	if !sequential {
		ra.mu.Unlock()
		return nil
	}
	if hit != nil {
		hit.refs.Add(1)
	}
	from := end
	if k := len(ra.chunks); k > 0 {
		from = ra.chunks[k-1].off + int64(iou)
	}
	for len(ra.chunks) < raChunks {
		buf := ra.pool.get()
		if buf == nil {
			break
		}
		c := &chunk{off: from, gen: gen, buf: buf[:iou], done: make(chan struct{}), pool: ra.pool}
		c.refs.Store(2)
		ra.chunks = append(ra.chunks, c)
		from += int64(iou)
		go func() {
			defer c.unref()
			c.n, c.err = fid.ReadOnce(ra.ctx, c.buf, c.off)
			close(c.done)
		}()
	}
	ra.mu.Unlock()
	if hit == nil {
		return nil
	}
	select {
	case <-hit.done:
	case <-ctx.Done():
		hit.unref()
		return nil
	}
	lo, hi := int(off-hit.off), int(end-hit.off)
	if hit.err != nil || hit.n < hi {
		// An error, or the end of the file: the caller reads it
		// from the server, which says what it is.
		hit.unref()
		return nil
	}
	return &chunkResult{c: hit, data: hit.buf[lo:hi]}
}

// close drops the chunks and stops the Treads in flight.
func (ra *readAhead) close() {
	if ra == nil {
		return
	}
	ra.cancel()
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.closed = true
	for _, c := range ra.chunks {
		c.unref()
	}
	ra.chunks = nil
}

// A chunkResult is a READ's reply from a chunk, whose buffer it holds
// until go-fuse has written the reply (Slices: go-fuse then calls Done
// only after the write).
type chunkResult struct {
	c    *chunk
	data []byte
}

func (r *chunkResult) Bytes(buf []byte) ([]byte, fuse.Status) { return r.data, fuse.OK }
func (r *chunkResult) Size() int                              { return len(r.data) }
func (r *chunkResult) Slices() ([][]byte, fuse.Status)        { return [][]byte{r.data}, fuse.OK }

func (r *chunkResult) Done() {
	if r.c != nil {
		r.c.unref()
		r.c = nil
	}
}
