package synth

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Query returns a file that answers requests, after Plan 9's /net/cs and
// lib9p's rot13fs: a fid writes a request, then reads the answer from
// offset 0 on the same fid. Each open has its own request and answer.
//
// Each write is one whole request (its offset is ignored): answer is
// called with it during the write, its error is the reply to the write,
// and what it returns becomes the fid's answer until the next write,
// also with an error (the part done before it failed) unless it is nil:
// a request refused outright leaves the answer as it was. A read
// before any request gets what answer returns for a nil request, its
// error failing the read: a help text, or "write a request first". With
// Gather, the request is gathered instead and answered at the first read.
//
// answer may be called concurrently for different fids; its context is
// cancelled if the request is flushed.
func Query(name string, perm uint32, answer func(ctx context.Context, req []byte) ([]byte, error), opts ...QueryOption) *File {
	h := &queryHandler{name: name, answer: answer}
	for _, o := range opts {
		o(h)
	}
	return NewFile(name, perm, h)
}

// A QueryOption configures a Query file.
type QueryOption func(*queryHandler)

// Gather makes a Query take its request whole before answering: the
// writes of a fid put their data at their offsets, as in a file, up to
// max bytes (a write beyond fails with "request larger than MAX bytes"),
// and answer is called once, at the fid's first read, with all of it.
// Every read then gives that answer, or its error; a write after it fails
// with "request already answered; open NAME again for another". A read
// with nothing written gets answer's for a nil request and leaves the
// fid waiting for one. A fid clunked before any read is never answered:
// nothing the request would do happens.
func Gather(max int) QueryOption {
	return func(h *queryHandler) { h.gather, h.max = true, max }
}

type queryHandler struct {
	name   string
	answer func(ctx context.Context, req []byte) ([]byte, error)
	gather bool // Gather's: answered at the first read
	max    int  // Gather's: the largest request
}

func (h *queryHandler) Open(ctx context.Context, mode uint8) (Handle, error) {
	return &queryHandle{h: h}, nil
}

// queryHandle is one open of a Query file.
type queryHandle struct {
	h *queryHandler

	mu       sync.Mutex // held while a gathered request is answered
	req      []byte     // guarded by mu: what Gather gathered
	asked    bool       // guarded by mu: Gather's request was answered
	answered bool       // guarded by mu: ans and err are set (the nil request's too)
	ans      []byte     // guarded by mu
	err      error      // guarded by mu: Gather's answer's error
}

func (q *queryHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.answered {
		switch {
		case q.h.gather && len(q.req) > 0:
			q.ans, q.err = q.h.answer(ctx, q.req)
			q.req, q.asked = nil, true
		default: // nothing asked yet
			ans, err := q.h.answer(ctx, nil)
			if err != nil {
				return 0, err
			}
			q.ans = ans
		}
		q.answered = true
	}
	if q.err != nil {
		return 0, q.err
	}
	return readAt(q.ans, p, off), nil
}

func (q *queryHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if q.h.gather {
		return q.gatherWrite(p, off)
	}
	if p == nil {
		p = []byte{} // nil is the request of a read before any
	}
	ans, err := q.h.answer(ctx, p)
	if err != nil && ans == nil {
		return 0, err
	}
	q.mu.Lock()
	q.ans, q.answered = ans, true
	q.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// gatherWrite puts p at off in Gather's request.
func (q *queryHandle) gatherWrite(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if off < 0 || end > int64(q.h.max) || end < off {
		return 0, fmt.Errorf("request larger than %d bytes", q.h.max)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.asked {
		return 0, errors.New("request already answered; open " + q.h.name + " again for another")
	}
	q.answered, q.ans = false, nil // a help text read before is no answer
	if end > int64(len(q.req)) {
		q.req = resize(q.req, end)
	}
	copy(q.req[off:], p)
	return len(p), nil
}

func (q *queryHandle) Close(ctx context.Context) error { return nil }

// CtlAnswer makes the answer function of a Query from a command table:
// a request is one or more lines, parsed against cmds as Ctl does (all
// before any runs), and carried out in order by each command's Answer
// (or Run). The answer is theirs, one after the other. The first error
// stops them: the answer is then those of the lines before it, and the
// error is "verb: error" as Ctl's (naming the line in a request of
// several), and the answer of a request that did not parse is nil (the
// fid keeps its last). A nil request, a read before any, is answered
// with help.
func CtlAnswer(cmds []Cmd, help string) func(ctx context.Context, req []byte) ([]byte, error) {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		if req == nil {
			return []byte(help), nil
		}
		calls, err := parseLines(req, cmds)
		if err != nil {
			return nil, err
		}
		out := []byte{} // not nil: with an error, the answer is what ran
		for _, c := range calls {
			if err := ctx.Err(); err != nil {
				return out, err // flushed, or the client went away
			}
			var ans []byte
			var err error
			switch {
			case c.cmd.Answer != nil:
				ans, err = c.cmd.Answer(ctx, c.args)
			case c.cmd.Run != nil:
				err = c.cmd.Run(ctx, c.args)
			}
			if err != nil {
				return out, c.fail(err, len(calls))
			}
			out = append(out, ans...)
		}
		return out, nil
	}
}
