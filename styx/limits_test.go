package styx_test

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cheshire/providers/tmp"
	"cheshire/styx"
)

// emfileListener fails its first n Accepts with EMFILE, as a process out
// of descriptors does, then accepts from the real listener.
type emfileListener struct {
	net.Listener
	n     atomic.Int32
	fails atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		l.fails.Add(1)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

func TestServeRetriesEMFILE(t *testing.T) {
	t.Parallel()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &emfileListener{Listener: tl}
	l.n.Store(4)
	s := &styx.Server{Attacher: tmp.New("glenda")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); s.Close(); <-done })

	// The deadline only guards against a hang if the listener died.
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	c, err := styx.Dial(dctx, "tcp!127.0.0.1!"+portOf(tl.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := l.fails.Load(); n != 4 {
		t.Errorf("%d failed accepts, want 4", n)
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned early: %v", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	done <- nil // for the cleanup
}
