package synth

import (
	"context"
	"fmt"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
)

// DefaultLogKeep is how many bytes of history a Log keeps.
const DefaultLogKeep = 256 << 10

// A Log is an event source whose file reads like a growing log: the file's
// length is the number of bytes written to the log so far, a read below
// that length returns history (the last keep bytes are kept), and a read
// at the end is the end of file (File) or blocks until the next line
// arrives (FollowFile). So `cat` of the File shows the recent log and
// ends, `tail -f` follows it as a regular log file (by polling its
// length), and `cat` of the FollowFile follows it, until interrupted. A
// reader that falls behind the kept history gets one line
// "overflow: N bytes dropped" in its place, never a silent gap. Memory is
// the one shared history, however many readers there are.
type Log struct {
	keep int

	mu     sync.Mutex
	hist   []byte        // guarded by mu: the last keep bytes
	total  int64         // guarded by mu: bytes ever written
	wake   chan struct{} // guarded by mu: closed at the next write
	closed bool          // guarded by mu
}

// NewLog returns a log keeping keep bytes of history (DefaultLogKeep if
// keep <= 0).
func NewLog(keep int) *Log {
	if keep <= 0 {
		keep = DefaultLogKeep
	}
	return &Log{keep: keep, wake: make(chan struct{})}
}

// Write appends p (whole lines, normally) to the log. It never blocks.
func (l *Log) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	l.hist = append(l.hist, p...)
	if over := len(l.hist) - l.keep; over > 0 {
		l.hist = append(l.hist[:0], l.hist[over:]...)
	}
	l.total += int64(len(p))
	close(l.wake)
	l.wake = make(chan struct{})
	return len(p), nil
}

// Close makes reads at the end return end of file.
func (l *Log) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.wake)
	}
}

// File returns the log as an append-only file whose reads end at the end
// of the log.
func (l *Log) File(name string, perm uint32) *File {
	return NewFile(name, perm|styx.DMAPPEND, logHandler{l: l})
}

// FollowFile returns the log as an append-only file whose reads at the end
// wait for the next line. A client that cannot interrupt a read (Tflush)
// waits until one comes.
func (l *Log) FollowFile(name string, perm uint32) *File {
	return NewFile(name, perm|styx.DMAPPEND, logHandler{l: l, follow: true})
}

type logHandler struct {
	l      *Log
	follow bool
}

func (h logHandler) Open(ctx context.Context, mode uint8) (Handle, error) {
	if writeMode(mode) || mode&styx.OTRUNC != 0 {
		return nil, plan9.ErrPerm
	}
	return &logReader{l: h.l, follow: h.follow, nextOff: -1}, nil
}

func (h logHandler) Length(ctx context.Context) int64 {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	return h.l.total
}

// logReader is one open of a log. A read at the offset that follows its
// previous read continues from where that read stopped in the log, so a
// sequential reader stays in step after an overflow line.
type logReader struct {
	l       *Log
	follow  bool
	mu      sync.Mutex
	nextOff int64 // offset the client will read next, if sequential
	pos     int64 // position in the log that offset stands for
}

func (r *logReader) Length(ctx context.Context) int64 { return logHandler{l: r.l}.Length(ctx) }

func (r *logReader) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pos := off
	if off == r.nextOff {
		pos = r.pos
	}
	l := r.l
	for {
		l.mu.Lock()
		base := l.total - int64(len(l.hist))
		switch {
		case pos < base:
			line := fmt.Appendf(nil, "overflow: %d bytes dropped\n", base-pos)
			l.mu.Unlock()
			n := copy(p, line)
			r.nextOff, r.pos = off+int64(n), base
			return n, nil
		case pos < l.total:
			n := copy(p, l.hist[pos-base:])
			l.mu.Unlock()
			r.nextOff, r.pos = off+int64(n), pos+int64(n)
			return n, nil
		case l.closed || !r.follow:
			l.mu.Unlock()
			return 0, nil
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (r *logReader) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}

func (r *logReader) Close(ctx context.Context) error { return nil }
