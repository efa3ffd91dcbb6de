package styx_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"cheshire/styx"
)

// lateCtx is a context whose Done is closed while the functions given
// to its AfterFunc never start: the window in which a real context has
// closed Done but not yet run its AfterFuncs, held open.
type lateCtx struct {
	context.Context
	done chan struct{}
}

func (c *lateCtx) Done() <-chan struct{} { return c.done }

func (c *lateCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// AfterFunc cancels c as the function is registered, and never runs it.
func (c *lateCtx) AfterFunc(func()) func() bool {
	close(c.done)
	return func() bool { return true }
}

// TestCancelBeforeAfterFunc cancels a request whose reply never comes,
// with the context's AfterFunc not yet started when the caller gives
// up: the client must still flush the request and answer with the
// context's error (it answered "protocol botch" and kept the tag,
// which a later Close then wrote to under the race detector).
func TestCancelBeforeAfterFunc(t *testing.T) {
	cn, sn := net.Pipe()
	t.Cleanup(func() { cn.Close(); sn.Close() })
	flushed := make(chan uint16, 1)
	ctx := &lateCtx{Context: context.Background(), done: make(chan struct{})}
	go fakeServer(sn, func(tx *styx.Fcall) (styx.Fcall, bool) {
		switch tx.Type {
		case styx.Tversion:
			return styx.Fcall{Type: styx.Rversion, Msize: tx.Msize, Version: tx.Version}, true
		case styx.Tflush: // the attach it names is never answered
			flushed <- tx.Oldtag
			return styx.Fcall{Type: styx.Rflush}, true
		}
		return styx.Fcall{}, false
	})
	c, err := styx.NewClient(context.Background(), cn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Attach(ctx, nil, "glenda", "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("attach with a cancelled context: got %v, want %v", err, context.Canceled)
	}
	select {
	case <-flushed:
	default:
		t.Fatal("the cancelled request was not flushed")
	}
}

// TestHeldClunkGoesOut clunks a fid that was never opened and sends
// nothing after it: the Tclunk, held to go out with the next request,
// must still reach the server on its own.
func TestHeldClunkGoesOut(t *testing.T) {
	cn, sn := net.Pipe()
	t.Cleanup(func() { cn.Close(); sn.Close() })
	clunked := make(chan uint32, 1)
	go fakeServer(sn, func(tx *styx.Fcall) (styx.Fcall, bool) {
		rx := styx.Fcall{Type: tx.Type + 1}
		switch tx.Type {
		case styx.Tversion:
			rx.Msize, rx.Version = tx.Msize, tx.Version
		case styx.Tattach:
			rx.Qid = styx.Qid{Type: styx.QTDIR}
		case styx.Tclunk:
			clunked <- tx.Fid
		}
		return rx, true
	})
	ctx := context.Background()
	c, err := styx.NewClient(ctx, cn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	root, err := c.Attach(ctx, nil, "glenda", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Clunk(ctx); err != nil {
		t.Fatal(err)
	}
	<-clunked
}

// fakeServer answers the client at the far end of sn with what answer
// makes of each request, and nothing when it says not to.
func fakeServer(sn net.Conn, answer func(tx *styx.Fcall) (styx.Fcall, bool)) {
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(sn, hdr[:]); err != nil {
			return
		}
		b := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
		copy(b, hdr[:])
		if _, err := io.ReadFull(sn, b[4:]); err != nil {
			return
		}
		var tx styx.Fcall
		if err := tx.Unmarshal(b); err != nil {
			return
		}
		rx, ok := answer(&tx)
		if !ok {
			continue
		}
		rx.Tag = tx.Tag
		out, err := rx.Bytes()
		if err != nil {
			return
		}
		if _, err := sn.Write(out); err != nil {
			return
		}
	}
}
