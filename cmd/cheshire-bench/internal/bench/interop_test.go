package bench_test

// Our client against the other servers of the benchmarks, go9p's fs
// server and 9fans' srv9p server, on a tree with an empty, writable
// root.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"cheshire/cmd/cheshire-bench/internal/bench"
	"cheshire/internal/testutil"
	"cheshire/styx"
)

// testData is len bytes of a pattern that shows misplaced chunks.
func testData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i ^ i>>8 ^ i>>16)
	}
	return b
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

// exerciseOurClient runs our client through create, write, read, stat,
// readdir, walk errors and remove against a server whose root is an
// empty, writable directory.
func exerciseOurClient(t *testing.T, dial string, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, root := dialAttach(t, dial, bench.User)

	_, d, err := root.Walk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Create(ctx, "dir", styx.DMDIR|0777, styx.OREAD); err != nil {
		t.Fatalf("create dir: %v", err)
	}
	d.Clunk(ctx)
	_, f, err := root.Walk(ctx, "dir")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Create(ctx, "a", 0666, styx.ORDWR); err != nil {
		t.Fatalf("create: %v", err)
	}
	data := testData(size)
	// One Twrite at a time, in order: the other servers' write paths
	// are not all safe for concurrent writes to one file.
	for off := 0; off < len(data); {
		n, err := f.WriteOnce(ctx, data[off:], int64(off))
		if err != nil || n == 0 {
			t.Fatalf("write at %d: %d %v", off, n, err)
		}
		off += n
	}
	f.Clunk(ctx)

	_, f, err = root.Walk(ctx, "dir", "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size+100)
	n, err := f.ReadAt(ctx, got, 0) // pipelined Treads
	if n != size || !bytes.Equal(got[:n], data) || !errors.Is(err, io.EOF) {
		t.Fatalf("read back %d bytes (err %v), want %d", n, err, size)
	}
	all, err := f.ReadAll(ctx)
	if err != nil || !bytes.Equal(all, data) {
		t.Fatalf("readall: %d %v", len(all), err)
	}
	st, err := f.Stat(ctx)
	if err != nil || st.Name != "a" || st.Length != uint64(size) {
		t.Fatalf("stat: %v %v", st, err)
	}
	f.Clunk(ctx)

	for _, name := range []string{"b", "c"} {
		_, g, _ := root.Walk(ctx, "dir")
		if err := g.Create(ctx, name, 0666, styx.OWRITE); err != nil {
			t.Fatal(err)
		}
		g.Clunk(ctx)
	}
	_, dir, _ := root.Walk(ctx, "dir")
	if err := dir.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	ds, err := dir.ReadDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "a b c" {
		t.Fatalf("readdir: %v", names)
	}
	dir.Clunk(ctx)

	if _, _, err := root.Walk(ctx, "dir", "nope"); err == nil {
		t.Fatal("walk to a missing file succeeded")
	}
	_, g, err := root.Walk(ctx, "dir", "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(ctx); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, _, err := root.Walk(ctx, "dir", "b"); err == nil {
		t.Fatal("walk to a removed file succeeded")
	}
	// The connection is still sound.
	if _, err := root.Stat(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestInteropGo9pServer(t *testing.T) {
	s, err := bench.StartGo9p(bench.Tree{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// go9p's server caps msize at 64 KiB and offers a 16 KiB iounit.
	exerciseOurClient(t, s.DialString(), 300000)
}

func TestInteropSrv9pServer(t *testing.T) {
	// srv9p at its default msize of 8 KiB.
	srv := bench.Srv9pServer(bench.Tree{}, 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, nc)
			go srv.Serve(nc, nc)
		}
	}()
	defer func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	}()
	exerciseOurClient(t, "tcp!127.0.0.1!"+testutil.PortOf(l.Addr()), 100000)
}

func TestMain(m *testing.M) {
	// go9p's and srv9p's servers log each connection's end.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}
