package synth

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
)

// DefaultQueue is the number of events an Events buffers per reader when
// NewEvents is given none.
const DefaultQueue = 256

// Events is a source of events read through event files (File). Each open
// of an event file is a reader that receives, in order, every event
// published from its open on. Memory is bounded: a reader that falls
// queue events behind loses the newer ones, and reads instead, where they
// would have been, one line "overflow: N events dropped"; events
// published after it has caught up follow that line.
type Events struct {
	queue int

	mu      sync.Mutex
	readers map[*evReader]struct{} // guarded by mu
	wake    chan struct{}          // guarded by mu: closed at the next event
	closed  bool                   // guarded by mu
}

// evReader is one open of an event file. Its queue holds at most queue
// events, and an overflow line after each run of dropped ones, so at most
// 2*queue+1 items.
type evReader struct {
	e       *Events
	q       []evItem // guarded by e.mu: not yet read
	events  int      // guarded by e.mu: items of q that are events
	dropped int      // guarded by e.mu: events lost since q filled
	partial []byte   // guarded by e.mu: rest of an item cut by a short read
	queued  int64    // guarded by e.mu: bytes given to this reader since open
}

// Length is the length an open event file reports: the bytes this reader
// has been given since it opened, so the file grows as events arrive and
// tools that poll a growing log, such as tail -f, read on.
func (r *evReader) Length(ctx context.Context) int64 {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	return r.queued
}

// evItem is an event or an overflow line.
type evItem struct {
	data     []byte
	overflow bool
}

// NewEvents returns an event source that buffers at most queue events per
// reader (DefaultQueue if queue <= 0).
func NewEvents(queue int) *Events {
	if queue <= 0 {
		queue = DefaultQueue
	}
	return &Events{queue: queue, readers: make(map[*evReader]struct{}), wake: make(chan struct{})}
}

// Publish sends data, one event (usually a line ending in a newline), to
// every reader. It does not block. An empty event, or one published after
// Close, is dropped (a read of 0 bytes would mean end of file).
func (e *Events) Publish(data []byte) {
	if len(data) == 0 {
		return
	}
	data = bytes.Clone(data)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	for r := range e.readers {
		if r.events >= e.queue {
			r.dropped++
			continue
		}
		if r.dropped > 0 {
			ol := overflowLine(r.dropped)
			r.q = append(r.q, evItem{ol, true})
			r.queued += int64(len(ol))
			r.dropped = 0
		}
		r.q = append(r.q, evItem{data: data})
		r.queued += int64(len(data))
		r.events++
	}
	close(e.wake)
	e.wake = make(chan struct{})
}

// Publishf publishes the event fmt.Sprintf(format, args...).
func (e *Events) Publishf(format string, args ...any) {
	e.Publish(fmt.Appendf(nil, format, args...))
}

// Close ends the events: reads return what is buffered, then end of file.
func (e *Events) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		close(e.wake)
	}
}

func overflowLine(n int) []byte { return fmt.Appendf(nil, "overflow: %d events dropped\n", n) }

// File returns an event file of e. A read blocks until there is an event,
// then returns as many whole events as fit (an event longer than the read
// is split across reads); offsets are ignored. A flushed read fails; after
// Close, reads return end of file once the buffered events are read.
//
// The file is append-only (DMAPPEND). Its length is 0, except through an
// open fid, where it is what that reader has been given (see
// evReader.Length).
func (e *Events) File(name string, perm uint32) *File {
	return NewFile(name, perm|styx.DMAPPEND, evHandler{e})
}

type evHandler struct{ e *Events }

func (h evHandler) Open(ctx context.Context, mode uint8) (Handle, error) {
	if writeMode(mode) || mode&styx.OTRUNC != 0 {
		return nil, plan9.ErrPerm
	}
	r := &evReader{e: h.e}
	h.e.mu.Lock()
	h.e.readers[r] = struct{}{}
	h.e.mu.Unlock()
	return r, nil
}

func (r *evReader) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		r.e.mu.Lock()
		n := r.take(p)
		wake, closed := r.e.wake, r.e.closed
		r.e.mu.Unlock()
		if n > 0 || closed {
			return n, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// take moves into p the rest of a cut item, or else as many whole items
// as fit, cutting the first if it does not. An overflow line not yet
// queued comes last. r.e.mu is held.
func (r *evReader) take(p []byte) int {
	if len(r.partial) > 0 {
		n := copy(p, r.partial)
		r.partial = r.partial[n:]
		return n
	}
	n := 0
	for len(r.q) > 0 || r.dropped > 0 {
		var it evItem
		if len(r.q) > 0 {
			it = r.q[0]
		} else {
			it = evItem{overflowLine(r.dropped), true}
		}
		if len(it.data) > len(p)-n && n > 0 {
			break
		}
		c := copy(p[n:], it.data)
		n += c
		switch {
		case len(r.q) == 0:
			r.dropped = 0
		default:
			r.q[0] = evItem{}
			r.q = r.q[1:]
			if !it.overflow {
				r.events--
			}
		}
		if c < len(it.data) {
			r.partial = it.data[c:]
			break
		}
	}
	return n
}

func (r *evReader) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrWrite
}

func (r *evReader) Close(ctx context.Context) error {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	delete(r.e.readers, r)
	r.q, r.partial = nil, nil
	return nil
}
