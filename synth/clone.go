package synth

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
)

// Clone returns a clone file, like /net/tcp/clone: each open takes the
// next number n of this file (0, 1, 2, ...), calls newSession(ctx, n) and
// adds the Dir it returns to parent under the name strconv.Itoa(n).
// Reading the open clone file gives "n\n"; writing to it writes to the
// session's "ctl" file (with the permission that file needs), whose open
// is closed when the clone fid is clunked. The session stays in parent
// until the provider removes it. A failed newSession uses up its number.
func Clone(name string, perm uint32, parent *Dir, newSession func(ctx context.Context, n int) (*Dir, error)) *File {
	return NewFile(name, perm, &cloneHandler{parent: parent, newSession: newSession})
}

type cloneHandler struct {
	parent     *Dir
	newSession func(ctx context.Context, n int) (*Dir, error)

	mu   sync.Mutex
	next int // guarded by mu
}

func (h *cloneHandler) Open(ctx context.Context, mode uint8) (Handle, error) {
	h.mu.Lock()
	n := h.next
	h.next++
	h.mu.Unlock()
	d, err := h.newSession(ctx, n)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errors.New("synth: clone made no session")
	}
	name := strconv.Itoa(n)
	d.mu.Lock()
	if d.parent == nil {
		d.name = name
	}
	d.mu.Unlock()
	if cur, ok := h.parent.Lookup(name); !ok || cur != Node(d) {
		if err := h.parent.Add(d); err != nil {
			return nil, err
		}
	}
	return &cloneHandle{text: []byte(name + "\n"), session: d}, nil
}

// cloneHandle is one open of a clone file: the session it made.
type cloneHandle struct {
	text    []byte
	session *Dir

	mu  sync.Mutex
	ctl Handle // guarded by mu: the open of the session's ctl file
	ctn *File  // guarded by mu: the session's ctl file
}

func (c *cloneHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return readAt(c.text, p, off), nil
}

// ctlOpen opens the session's ctl file for writing, once.
func (c *cloneHandle) ctlOpen(ctx context.Context) (Handle, *File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctl != nil {
		return c.ctl, c.ctn, nil
	}
	n, ok := c.session.Lookup("ctl")
	file, isFile := n.(*File)
	if !ok || !isFile {
		return nil, nil, plan9.ErrWrite
	}
	if ri := reqFrom(ctx); ri != nil && !ri.srv.allowed(file, ri.user, styx.OWRITE) {
		return nil, nil, plan9.ErrPerm
	}
	h, err := file.h.Open(ctx, styx.OWRITE)
	if err != nil {
		return nil, nil, err
	}
	c.ctl, c.ctn = h, file
	return h, file, nil
}

func (c *cloneHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	h, file, err := c.ctlOpen(ctx)
	if err != nil {
		return 0, err
	}
	n, err := h.Write(ctx, p, off)
	if n > 0 || err == nil {
		file.touch()
	}
	return n, err
}

func (c *cloneHandle) Close(ctx context.Context) error {
	c.mu.Lock()
	h := c.ctl
	c.ctl = nil
	c.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.Close(ctx)
}
