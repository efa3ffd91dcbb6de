package styx_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cheshire/connlimit"
	"cheshire/plan9"
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
	s := &styx.Server{Attacher: newMemFS("glenda")}
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

// dialFrom opens a TCP connection to addr from the loopback address src
// (any of 127.0.0.0/8 on Linux), so that tests can play several hosts.
func dialFrom(t testing.TB, src, addr string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", hostPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 1<<16)}
}

// waitConns waits until the server holds want connections in total.
func waitConns(t testing.TB, s *styx.Server, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a budget
	for {
		n := s.Limits.Stats().Held
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server holds %d connections, want %d", n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func limitServer(t *testing.T, opts ...func(*styx.Server)) (*styx.Server, string) {
	t.Helper()
	var srv *styx.Server
	opts = append([]func(*styx.Server){func(s *styx.Server) { s.Limits = new(connlimit.Limits) }}, opts...)
	addr := serve(t, newMemFS("glenda"), append(opts, func(s *styx.Server) { srv = s })...)
	return srv, addr
}

func TestConnsPerHost(t *testing.T) {
	t.Parallel()
	s, addr := limitServer(t, func(s *styx.Server) { s.Limits.PerHost = 3 })
	var idle []*rawConn
	for range 3 {
		idle = append(idle, dialFrom(t, "127.0.0.2", addr))
	}
	waitConns(t, s, 3)
	// The fourth from the same host is closed at once...
	extra := dialFrom(t, "127.0.0.2", addr)
	if _, err := extra.closedByServer(30 * time.Second); err != nil {
		t.Fatalf("fourth connection from one host: %v", err)
	}
	// ...while another host is served,
	other := dialFrom(t, "127.0.0.1", addr)
	other.session()
	// and the held ones still work.
	for _, r := range idle {
		r.session()
	}
}

func TestConnsTotalEvictsUnversioned(t *testing.T) {
	t.Parallel()
	s, addr := limitServer(t, func(s *styx.Server) { s.Limits.Total = 4 })
	var idle []*rawConn
	for i := range 4 {
		idle = append(idle, dialFrom(t, fmt.Sprintf("127.0.0.%d", 2+i), addr))
	}
	waitConns(t, s, 4)
	if pending := s.Limits.Stats().Pending; pending != 4 {
		t.Fatalf("%d connections pending, want 4", pending)
	}
	// A legitimate client gets in: the oldest silent one makes room.
	good := dialFrom(t, "127.0.0.1", addr)
	good.session()
	if _, err := idle[0].closedByServer(30 * time.Second); err != nil {
		t.Fatalf("oldest silent connection: %v", err)
	}
	// Once all have negotiated, nobody is evicted: a newcomer is refused.
	for _, r := range idle[1:] {
		r.session()
	}
	waitConns(t, s, 4)
	late := dialFrom(t, "127.0.0.9", addr)
	if _, err := late.closedByServer(30 * time.Second); err != nil {
		t.Fatalf("connection past the total: %v", err)
	}
	for _, r := range append(idle[1:], good) {
		r.expect(&styx.Fcall{Type: styx.Tstat, Tag: 2, Fid: 1}, styx.Rstat)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	s, addr := limitServer(t, func(s *styx.Server) { s.HandshakeTimeout = 50 * time.Millisecond })
	// Silent: closed at the deadline.
	silent := dialFrom(t, "127.0.0.1", addr)
	if _, err := silent.closedByServer(30 * time.Second); err != nil {
		t.Fatalf("silent connection: %v", err)
	}
	// Talking, but never agreeing a version: closed too.
	chatty := dialFrom(t, "127.0.0.1", addr)
	for range 3 {
		rx := chatty.rpc(&styx.Fcall{Type: styx.Tattach, Tag: 1, Fid: 1, Afid: styx.NoFid, Uname: "glenda"})
		if rx.Type != styx.Rerror || rx.Ename != string(plan9.ErrNoVersion) {
			t.Fatalf("attach before version: %v", rx)
		}
	}
	if _, err := chatty.closedByServer(30 * time.Second); err != nil {
		t.Fatalf("connection without a version: %v", err)
	}
	// A session that agreed a version lives on past the deadline: the
	// server holds it once the others are gone, and it still answers.
	good := dialFrom(t, "127.0.0.1", addr)
	good.session()
	waitConns(t, s, 1)
	time.Sleep(100 * time.Millisecond) // past the handshake deadline
	good.expect(&styx.Fcall{Type: styx.Tstat, Tag: 2, Fid: 1}, styx.Rstat)
}

func TestBigFrameBeforeVersion(t *testing.T) {
	t.Parallel()
	_, addr := limitServer(t)
	r := dialFrom(t, "127.0.0.1", addr)
	r.write(frame(t, &styx.Fcall{Type: styx.Twrite, Tag: 1, Fid: 1, Data: make([]byte, 9000)}))
	if _, err := r.closedByServer(30 * time.Second); err != nil {
		t.Fatalf("9000-byte frame before Tversion: %v", err)
	}
}
