package styx_test

// Interoperability with two other Go implementations of 9P2000: the
// 9fans.net/go/plan9 client and the github.com/knusbaum/go9p client
// against our server. Our client against go9p's fs server and 9fans'
// srv9p server is tested beside the servers, in cmd/cheshire-bench's
// bench package.

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"os"
	"sort"
	"strings"
	"testing"

	cplan9 "cheshire/plan9"
	"cheshire/styx"

	"9fans.net/go/plan9"
	p9client "9fans.net/go/plan9/client"
	goclient "github.com/knusbaum/go9p/client"
	"github.com/knusbaum/go9p/proto"
)

// hostPort turns serve's dial string into host:port.
func hostPort(addr string) string {
	f := strings.Split(addr, "!")
	return net.JoinHostPort(f[1], f[2])
}

// testData is len bytes of a pattern that shows misplaced chunks.
func testData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i ^ i>>8 ^ i>>16)
	}
	return b
}

func TestInterop9fansClient(t *testing.T) {
	addr := serve(t, newMemFS("glenda"))
	conn, err := p9client.Dial("tcp", hostPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fsys, err := conn.Attach(nil, "glenda", "")
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close()

	d, err := fsys.Create("dir", plan9.OREAD, plan9.DMDIR|0755)
	if err != nil {
		t.Fatalf("create dir: %v", err)
	}
	d.Close()
	// 300 KB: the 9fans client's msize is 128 KiB, so several Twrites.
	data := testData(300000)
	f, err := fsys.Create("dir/a", plan9.ORDWR, 0644)
	if err != nil {
		t.Fatalf("create file: %v", err)
	}
	if n, err := f.Write(data); err != nil || n != len(data) {
		t.Fatalf("write: %d %v", n, err)
	}
	f.Close()

	f, err = fsys.Open("dir/a", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (err %v), want %d", len(got), err, len(data))
	}
	// ReadAt at an offset.
	f, _ = fsys.Open("dir/a", plan9.OREAD)
	buf := make([]byte, 1000)
	if n, err := f.ReadAt(buf, 200000); err != nil || !bytes.Equal(buf[:n], data[200000:201000]) {
		t.Fatalf("readat: %d %v", n, err)
	}
	f.Close()

	st, err := fsys.Stat("dir/a")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "a" || st.Length != uint64(len(data)) || st.Uid != "glenda" || st.Mode != 0644 {
		t.Fatalf("stat: %v", st)
	}

	d, err = fsys.Open("dir", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := d.Dirreadall()
	d.Close()
	if err != nil || len(ds) != 1 || ds[0].Name != "a" {
		t.Fatalf("dirreadall: %v %v", ds, err)
	}

	var nd plan9.Dir
	nd.Null()
	nd.Name = "b"
	if err := fsys.Wstat("dir/a", &nd); err != nil {
		t.Fatalf("wstat rename: %v", err)
	}
	if _, err := fsys.Stat("dir/a"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("stat of renamed file: %v", err)
	}
	// Errors arrive as the server's strings.
	if _, err := fsys.Open("dir/b", plan9.OWRITE|plan9.OTRUNC); err != nil {
		t.Fatalf("open for truncation: %v", err)
	}
	if st, err := fsys.Stat("dir/b"); err != nil || st.Length != 0 {
		t.Fatalf("stat after truncation: %v %v", st, err)
	}
	if err := fsys.Remove("dir"); err == nil || err.Error() != string(cplan9.ErrNotEmpty) {
		t.Fatalf("remove of non-empty dir: %v", err)
	}
	if err := fsys.Remove("dir/b"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove("dir"); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Open("dir", plan9.OREAD); err == nil {
		t.Fatal("open of removed dir succeeded")
	}
}

func TestInteropGo9pClient(t *testing.T) {
	ctx := context.Background()
	addr := serve(t, newMemFS("glenda"))
	// go9p's client creates everything ORDWR, which a directory refuses:
	// make the directory with ours.
	_, root := dialAttach(t, addr, "glenda")
	_, d, _ := root.Walk(ctx)
	if err := d.Create(ctx, "dir", styx.DMDIR|0777, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	d.Clunk(ctx)

	nc, err := net.Dial("tcp", hostPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	c, err := goclient.NewClient(nc, "glenda", "")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// 200 KB: go9p's client asks for msize 64 KiB, so several Twrites.
	data := testData(200000)
	f, err := c.Create("/dir/a", 0644)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	// go9p's Create leaves the File's iounit 0, so its Write would send
	// empty Twrites for ever: write through an opened File instead.
	f.Close()
	if f, err = c.Open("/dir/a", proto.Owrite); err != nil {
		t.Fatal(err)
	}
	// Its twrite also sends every chunk of one Write at the same offset:
	// keep each WriteAt within one message.
	for off := 0; off < len(data); off += 60000 {
		chunk := data[off:min(off+60000, len(data))]
		if n, err := f.WriteAt(chunk, int64(off)); err != nil || n != len(chunk) {
			t.Fatalf("write at %d: %d %v", off, n, err)
		}
	}
	f.Close()

	f, err = c.Open("/dir/a", proto.Oread)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (err %v), want %d", len(got), err, len(data))
	}

	st, err := c.Stat("/dir/a")
	if err != nil || st.Name != "a" || st.Length != uint64(len(data)) || st.Uid != "glenda" {
		t.Fatalf("stat: %+v %v", st, err)
	}
	if _, err := c.Create("/dir/b", 0600); err != nil {
		t.Fatal(err)
	}
	stats, err := c.Readdir("/dir")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range stats {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "a b" {
		t.Fatalf("readdir: %v", names)
	}
	if _, err := c.Open("/nope", proto.Oread); err == nil || err.Error() != string(cplan9.ErrNotFound) {
		t.Fatalf("open of missing file: %v", err)
	}
	// A walk that fails after its first name gets a partial Rwalk, which
	// go9p's client takes for success: its Topen of the never-made fid
	// then fails.
	if _, err := c.Open("/dir/nope", proto.Oread); err == nil {
		t.Fatal("open of missing file succeeded")
	}
	if err := c.Remove("/dir/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open("/dir/a", proto.Oread); err == nil {
		t.Fatal("open of removed file succeeded")
	}
}

func TestMain(m *testing.M) {
	// go9p's and srv9p's servers log each connection's end.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}
