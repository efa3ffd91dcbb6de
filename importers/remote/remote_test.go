package remote

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

// server is a node serving an in-memory tree over 9P with mutual TLS.
type server struct {
	t    testing.TB
	id   *nodekey.Identity
	fs   *tmp.FS
	srv  *styx.Server
	addr string
}

func identity(t testing.TB) *nodekey.Identity {
	id, err := nodekey.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// serve starts a server with id on a fresh loopback port, serving fs.
func serve(t testing.TB, id *nodekey.Identity, fs *tmp.FS) *server {
	t.Helper()
	cfg, err := id.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, id: id, fs: fs, srv: &styx.Server{Attacher: fs}}
	a := l.Addr().(*net.TCPAddr)
	s.addr = fmt.Sprintf("tls!127.0.0.1!%d", a.Port)
	go s.srv.Serve(context.Background(), nodekey.NewListener(l, cfg))
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// resolver is a settable name service.
type resolver struct {
	mu    sync.Mutex
	addrs map[string][]string
	calls int
}

func (r *resolver) set(key ed25519.PublicKey, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs[nodekey.Encode(key)] = addrs
}

func (r *resolver) resolve(ctx context.Context, key ed25519.PublicKey) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	a, ok := r.addrs[nodekey.Encode(key)]
	if !ok {
		return nil, errors.New("dht: lookup: not found")
	}
	return a, nil
}

func newImporter(t *testing.T, res *resolver) *Importer {
	im := New(Options{Resolve: res.resolve, Dial: TLSDialer(identity(t)), Uname: "a",
		Heartbeat: 100 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, AttemptTimeout: 2 * time.Second})
	t.Cleanup(func() { im.Close() })
	return im
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func writeFile(ctx context.Context, root styx.File, name, data string) error {
	_, f, err := root.Walk(ctx, nil)
	if err != nil {
		return err
	}
	defer f.Clunk()
	nf, _, err := f.Create(ctx, name, 0644, styx.OWRITE)
	if err != nil {
		return err
	}
	defer nf.Clunk()
	_, err = nf.Write(ctx, []byte(data), 0)
	return err
}

func TestImportReadWrite(t *testing.T) {
	ctx := ctxT(t)
	b := serve(t, identity(t), tmp.New("b"))
	res := &resolver{addrs: map[string][]string{}}
	res.set(b.id.Public, b.addr)
	im := newImporter(t, res)
	r, err := im.Import(ctx, b.id.Public, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Clunk()
	if r.Qid().Type&styx.QTDIR == 0 {
		t.Errorf("root qid %v is not a directory", r.Qid())
	}
	if err := writeFile(ctx, r, "hello", "from a\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := testutil.ReadFile(ctx, r, "hello"); err != nil || got != "from a\n" {
		t.Fatalf("read back %q, %v", got, err)
	}
	// A second import of the same node shares the connection.
	r2, err := im.Import(ctx, b.id.Public, "/", true)
	if err != nil {
		t.Fatal(err)
	}
	st := im.Status()
	if len(st) != 1 || st[0].State != stateUp || st[0].Imports != 2 || st[0].Addr != b.addr {
		t.Errorf("status %+v, want one connection, up, 2 imports", st)
	}
	r2.Clunk()
	r.Clunk()
	r.Clunk() // twice is once
	testutil.WaitFor(t, "the connection to close", func() bool { return len(im.Status()) == 0 })
}

// TestNodeDownAndBack: the remote node stops; operations fail at once
// with "remote node unreachable", a file open across the loss says the
// connection was lost; the node comes back on another port, found by
// resolving its key again, and the same import works again.
func TestNodeDownAndBack(t *testing.T) {
	ctx := ctxT(t)
	bid := identity(t)
	fs := tmp.New("b")
	b := serve(t, bid, fs)
	res := &resolver{addrs: map[string][]string{}}
	res.set(bid.Public, b.addr)
	im := newImporter(t, res)
	r, err := im.Import(ctx, bid.Public, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Clunk()
	if err := writeFile(ctx, r, "f", "one"); err != nil {
		t.Fatal(err)
	}
	_, open, err := r.Walk(ctx, []string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	defer open.Clunk()

	b.srv.Close()
	testutil.WaitFor(t, "the loss to be seen", func() bool {
		s, _ := im.StatusOf(bid.Public)
		return s.State == stateDown
	})
	start := time.Now()
	_, err = testutil.ReadFile(ctx, r, "f")
	if took := time.Since(start); err == nil || !errors.Is(err, plan9.ErrUnreachable) || took > time.Second {
		t.Fatalf("read while down: %v after %v, want remote node unreachable at once", err, took)
	}
	t.Logf("while down: %v (in %v)", err, time.Since(start))
	if _, err := open.Read(ctx, make([]byte, 10), 0); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("read of a file open across the loss: %v, want connection lost", err)
	}
	if len(plan9.Errstr(err)) > plan9.ErrMax-1 {
		t.Errorf("error longer than ERRMAX: %q", err)
	}
	s, _ := im.StatusOf(bid.Public)
	if s.Err == "" {
		t.Errorf("status of a lost node gives no reason: %+v", s)
	}

	b2 := serve(t, bid, fs) // same key and files, another port
	if b2.addr == b.addr {
		t.Fatal("same port")
	}
	res.set(bid.Public, b2.addr)
	testutil.WaitFor(t, "reconnection", func() bool {
		got, err := testutil.ReadFile(ctx, r, "f")
		return err == nil && got == "one"
	})
	if s, _ := im.StatusOf(bid.Public); s.Addr != b2.addr || s.State != stateUp {
		t.Errorf("status after reconnection: %+v", s)
	}
	if _, err := open.Read(ctx, make([]byte, 10), 0); err == nil {
		t.Error("a file of the lost connection works on the new one")
	}
}

// TestWrongKey: an address that answers with another key is refused.
func TestWrongKey(t *testing.T) {
	ctx := ctxT(t)
	c := serve(t, identity(t), tmp.New("c"))
	want := identity(t)
	res := &resolver{addrs: map[string][]string{}}
	res.set(want.Public, c.addr) // a forged record pointing at C
	im := newImporter(t, res)
	_, err := im.Import(ctx, want.Public, "", true)
	if err == nil || !errors.Is(err, plan9.ErrUnreachable) || !strings.Contains(err.Error(), "not the expected") {
		t.Fatalf("import of a key whose address answers with another: %v", err)
	}
	if !strings.Contains(err.Error(), "node presented key "+nodekey.Encode(c.id.Public)) {
		t.Errorf("the error does not say which key answered: %v", err)
	}
}

// TestUnknownKey: a key that resolves to nothing fails at once.
func TestUnknownKey(t *testing.T) {
	ctx := ctxT(t)
	res := &resolver{addrs: map[string][]string{}}
	im := newImporter(t, res)
	k := identity(t).Public
	_, err := im.Import(ctx, k, "", true)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("import of an unknown key: %v", err)
	}
	// Lazily, the first operation waits for the first attempt, then fails.
	im2 := newImporter(t, res)
	r, err := im2.Import(ctx, k, "/x", false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Clunk()
	if _, _, err := r.Walk(ctx, nil); !errors.Is(err, plan9.ErrUnreachable) {
		t.Fatalf("walk of a lazy import of an unknown key: %v", err)
	}
}

// TestSilentNode: a connection that stops answering (a partition) is
// dropped by the heartbeat: operations in flight and new ones fail.
func TestSilentNode(t *testing.T) {
	ctx := ctxT(t)
	b := serve(t, identity(t), tmp.New("b"))
	px := newProxy(t, strings.ReplaceAll(strings.TrimPrefix(b.addr, "tls!"), "!", ":"))
	res := &resolver{addrs: map[string][]string{}}
	res.set(b.id.Public, px.addr)
	im := newImporter(t, res)
	r, err := im.Import(ctx, b.id.Public, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Clunk()
	if err := writeFile(ctx, r, "f", "x"); err != nil {
		t.Fatal(err)
	}
	px.freeze()
	start := time.Now()
	_, err = testutil.ReadFile(ctx, r, "f")
	took := time.Since(start)
	if !errors.Is(err, plan9.ErrUnreachable) {
		t.Fatalf("read across a partition: %v", err)
	}
	t.Logf("partitioned read failed after %v: %v", took, err)
	if took > 3*time.Second {
		t.Errorf("took %v to notice a silent node (heartbeat 100ms, timeout 300ms)", took)
	}
	px.thaw()
	testutil.WaitFor(t, "reconnection after the partition", func() bool {
		got, err := testutil.ReadFile(ctx, r, "f")
		return err == nil && got == "x"
	})
}

// proxy forwards TCP to a server until frozen: then it forwards nothing
// and refuses nothing, as a partitioned network does.
type proxy struct {
	l      net.Listener
	addr   string
	to     string
	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func newProxy(t *testing.T, to string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, to: to, addr: fmt.Sprintf("tls!127.0.0.1!%d", l.Addr().(*net.TCPAddr).Port)}
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p
}

func (p *proxy) handle(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	frozen := p.frozen
	p.mu.Unlock()
	if frozen {
		return // held open, never answered
	}
	s, err := net.Dial("tcp", p.to)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	go p.pipe(s, c)
	p.pipe(c, s)
}

// pipe copies until the proxy freezes, then holds both ends silent.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		frozen := p.frozen
		p.mu.Unlock()
		if frozen {
			io.Copy(io.Discard, src)
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *proxy) freeze() { p.mu.Lock(); p.frozen = true; p.mu.Unlock() }
func (p *proxy) thaw()   { p.mu.Lock(); p.frozen = false; p.mu.Unlock() }

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Addrs: []string{"tls!127.0.0.1!5641", "tls!::1!5641"}, Exports: []string{"/tmp/pub", "/a b"}}
	v, dropped, err := r.Encode(996)
	if err != nil || dropped != 0 {
		t.Fatal(err, dropped)
	}
	got, err := ParseRecord(v)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(r) {
		t.Errorf("round trip: %v, want %v", got, r)
	}
	// Exports that do not fit are left out, from the last.
	var many Record
	many.Addrs = r.Addrs
	for i := range 100 {
		many.Exports = append(many.Exports, fmt.Sprintf("/export/number/%03d", i))
	}
	v, dropped, err = many.Encode(996)
	if err != nil || len(v) > 996 || dropped == 0 {
		t.Fatalf("%d bytes, %d dropped, %v", len(v), dropped, err)
	}
	got, _ = ParseRecord(v)
	if len(got.Exports)+dropped != 100 {
		t.Errorf("%d kept + %d dropped != 100", len(got.Exports), dropped)
	}
	for _, bad := range []string{"", "hello\n", "cheshire 1\naddr tcp!a!1\n", "cheshire 1\naddr\n", "cheshire 1\nexport rel\n", "cheshire 1\nexport /a/../b\n"} {
		if _, err := ParseRecord([]byte(bad)); err == nil {
			t.Errorf("ParseRecord(%q) accepted", bad)
		}
	}
	if _, err := ParseRecord([]byte("cheshire 1\nfuture thing\naddr tls!h!1\n")); err != nil {
		t.Errorf("unknown kinds should be ignored: %v", err)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte("cheshire 1\naddr tls!127.0.0.1!5641\nexport /tmp/pub\n"))
	f.Add([]byte("cheshire 1\nexport '/a b'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord(data)
		if err != nil {
			return
		}
		v, dropped, err := r.Encode(1 << 20)
		if err != nil || dropped != 0 {
			t.Fatalf("a parsed record does not encode: %v", err)
		}
		r2, err := ParseRecord(v)
		if err != nil || fmt.Sprint(r2) != fmt.Sprint(r) {
			t.Fatalf("round trip: %v -> %q -> %v, %v", r, v, r2, err)
		}
	})
}
