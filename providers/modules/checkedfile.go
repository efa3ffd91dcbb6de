package modules

import (
	"context"
	"sync"

	"cheshire/synth"
)

// A file that takes a whole text at clunk (synth.ReadWrite) cannot
// refuse it where a shell would notice: `echo line > file` ignores the
// error of close(2). checkedFile judges each write's complete lines as
// they arrive, so that the write carrying a bad line fails; the whole
// text is still applied (and judged again) at clunk.

// checkedFile returns synth.ReadWrite(name, perm, get, set) whose writes
// fail with check's error when the fid's copy, cut after its last
// newline, is refused. check returns nil for a text that may yet become
// acceptable (a setting still missing); it is called with no lock held.
// A fid whose write failed applies nothing at clunk and returns the same
// error.
func checkedFile(name string, perm uint32, get func(ctx context.Context) ([]byte, error), set func(ctx context.Context, data []byte) error, check func(ctx context.Context, text string) error) *synth.File {
	inner := synth.ReadWrite(name, perm, get, func(ctx context.Context, data []byte) error {
		if err, ok := ctx.Value(refusedKey{}).(error); ok {
			return err
		}
		return set(ctx, data)
	}).Handler()
	return synth.NewFile(name, perm, &checkedHandler{inner: inner, check: check})
}

// refusedKey marks the context of a clunk whose fid had a write
// refused: the ReadWrite's set then applies nothing.
type refusedKey struct{}

type checkedHandler struct {
	inner synth.Handler // a synth.ReadWrite's
	check func(ctx context.Context, text string) error
}

func (h *checkedHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	hd, err := h.inner.Open(ctx, mode)
	if err != nil {
		return nil, err
	}
	return &checkedHandle{Handle: hd, check: h.check}, nil
}

// Length and Truncate are the ReadWrite's.
func (h *checkedHandler) Length(ctx context.Context) int64 {
	return h.inner.(interface{ Length(context.Context) int64 }).Length(ctx)
}

func (h *checkedHandler) Truncate(ctx context.Context, size int64) error {
	return h.inner.(interface {
		Truncate(context.Context, int64) error
	}).Truncate(ctx, size)
}

type checkedHandle struct {
	synth.Handle
	check func(ctx context.Context, text string) error

	mu      sync.Mutex // serialises writes, so each check sees its own write
	refused error      // guarded by mu: the first write refused
}

func (c *checkedHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused != nil {
		return 0, c.refused
	}
	n, err := c.Handle.Write(ctx, p, off)
	if err != nil {
		return n, err
	}
	text, err := c.text(ctx)
	if err != nil {
		return n, err
	}
	if text == "" {
		return n, nil
	}
	if err := c.check(ctx, text); err != nil {
		c.refused = err
		return 0, err
	}
	return n, nil
}

// text is the fid's copy up to and including its last newline.
func (c *checkedHandle) text(ctx context.Context) (string, error) {
	var data []byte
	buf := make([]byte, 8192)
	for {
		n, err := c.Handle.Read(ctx, buf, int64(len(data)))
		if err != nil {
			return "", err
		}
		if n == 0 {
			break
		}
		data = append(data, buf[:n]...)
	}
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == '\n' {
			return string(data[:i+1]), nil
		}
	}
	return "", nil
}

func (c *checkedHandle) Close(ctx context.Context) error {
	c.mu.Lock()
	refused := c.refused
	c.mu.Unlock()
	if refused != nil {
		ctx = context.WithValue(ctx, refusedKey{}, refused)
	}
	return c.Handle.Close(ctx)
}
