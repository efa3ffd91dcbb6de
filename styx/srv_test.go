package styx_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// serve starts a server for a on a loopback listener and returns its
// dial string.
func serve(t testing.TB, a styx.Attacher, opts ...func(*styx.Server)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &styx.Server{Attacher: a}
	for _, o := range opts {
		o(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); s.Close(); <-done })
	return "tcp!127.0.0.1!" + portOf(l.Addr())
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func dialAttach(t testing.TB, addr, user string) (*styx.Client, *styx.Fid) {
	t.Helper()
	ctx := context.Background()
	c, err := styx.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	root, err := c.Attach(ctx, nil, user, "")
	if err != nil {
		t.Fatal(err)
	}
	return c, root
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	addr := serve(t, newMemFS("glenda"))
	c, root := dialAttach(t, addr, "glenda")
	if c.Msize() != styx.DefaultMsize {
		t.Errorf("msize %d, want %d", c.Msize(), styx.DefaultMsize)
	}
	_, d, err := root.Walk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Create(ctx, "sub", styx.DMDIR|0755, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	d.Clunk(ctx)
	_, f, err := root.Walk(ctx, "sub")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Create(ctx, "a", 0644, styx.ORDWR); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 300000) // 4.8 MB: several Twrites in flight
	if n, err := f.WriteAt(ctx, big, 0); err != nil || n != len(big) {
		t.Fatalf("write: %d %v", n, err)
	}
	got := make([]byte, len(big)+10)
	n, err := f.ReadAt(ctx, got, 0)
	if n != len(big) || !bytes.Equal(got[:n], big) {
		t.Fatalf("read back %d bytes (err %v), want %d", n, err, len(big))
	}
	st, err := f.Stat(ctx)
	if err != nil || st.Length != uint64(len(big)) || st.Name != "a" || st.Uid != "glenda" {
		t.Fatalf("stat %v %v", st, err)
	}
	f.Clunk(ctx)
	_, g, err := root.Walk(ctx, "sub", "..", "sub", "a")
	if err != nil {
		t.Fatal(err)
	}
	nd := styx.NullDir()
	nd.Name = "b"
	nd.Muid = "nobody"
	if err := g.Wstat(ctx, nd); err != nil {
		t.Fatalf("rename: %v", err)
	}
	g.Clunk(ctx)
	if _, _, err := root.Walk(ctx, "sub", "a"); !errors.Is(err, plan9.ErrNotFound) {
		t.Fatalf("walk to renamed file: %v", err)
	}
	_, dir, _ := root.Walk(ctx, "sub")
	if err := dir.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	ds, err := dir.ReadDir(ctx)
	if err != nil || len(ds) != 1 || ds[0].Name != "b" {
		t.Fatalf("readdir %v %v", ds, err)
	}
	dir.Clunk(ctx)
	if _, _, err := root.Walk(ctx, "nope"); !errors.Is(err, plan9.ErrNotFound) {
		t.Fatalf("walk to missing file: %v", err)
	}
}

func TestFlushCancelsRead(t *testing.T) {
	ctx := context.Background()
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	addr := serve(t, styx.AttachFunc(func(ctx context.Context, u, a string, auth styx.File) (styx.File, error) {
		return &blocker{started: started, cancelled: cancelled}, nil
	}))
	_, root := dialAttach(t, addr, "glenda")
	if err := root.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := root.ReadOnce(rctx, make([]byte, 100), 0)
		errc <- err
	}()
	<-started
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read error %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flushed read did not return")
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("server handler was not cancelled by the flush")
	}
	// The connection still works.
	if _, err := root.Stat(ctx); err != nil {
		t.Fatal(err)
	}
}

type blocker struct {
	started, cancelled chan struct{}
}

func (b *blocker) Qid() styx.Qid { return styx.Qid{Path: 1} }
func (b *blocker) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	if len(names) == 0 {
		return nil, b, nil
	}
	return nil, nil, plan9.ErrNotFound
}
func (b *blocker) Open(ctx context.Context, mode uint8) (uint32, error) { return 0, nil }
func (b *blocker) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	return nil, 0, plan9.ErrCreate
}
func (b *blocker) Read(ctx context.Context, p []byte, off int64) (int, error) {
	b.started <- struct{}{}
	<-ctx.Done()
	b.cancelled <- struct{}{}
	return 0, ctx.Err()
}
func (b *blocker) ReadDir(ctx context.Context) ([]styx.Dir, error) { return nil, plan9.ErrNotDir }
func (b *blocker) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrWrite
}
func (b *blocker) Stat(ctx context.Context) (styx.Dir, error) {
	return styx.Dir{Name: "blocker", Qid: b.Qid(), Mode: 0444}, nil
}
func (b *blocker) Wstat(ctx context.Context, d styx.Dir) error { return plan9.ErrWstat }
func (b *blocker) Remove(ctx context.Context) error            { return plan9.ErrRemove }
func (b *blocker) Clunk() error                                { return nil }
