package remote

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"

	"cheshire/providers/tmp"
	"cheshire/styx"
)

// attacherOf serves one file tree.
type attacherOf struct{ f styx.File }

func (a attacherOf) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	_, f, err := a.f.Walk(ctx, nil)
	return f, err
}

// BenchmarkRemoteRead is the in-process form of tests'
// BenchmarkRemoteSequentialRead, for profiling: a client reads 64 MiB
// over a unix socket from a server whose tree is an import of another
// server over TLS; the anchor reads the same file from that other server
// over a unix socket.
func BenchmarkRemoteRead(b *testing.B) {
	const size = 64 << 20
	ctx := context.Background()
	fs := tmp.New("b")
	bs := serve(b, identity(b), fs)
	res := &resolver{addrs: map[string][]string{}}
	res.set(bs.id.Public, bs.addr)
	im := New(Options{Resolve: res.resolve, Dial: TLSDialer(identity(b)), Uname: "a"})
	b.Cleanup(func() { im.Close() })
	r, err := im.Import(ctx, bs.id.Public, "", true)
	if err != nil {
		b.Fatal(err)
	}
	if err := writeFile(ctx, r, "big", string(make([]byte, size))); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	unixServe := func(name string, a styx.Attacher) *styx.Fid {
		p := filepath.Join(dir, name)
		l, err := net.Listen("unix", p)
		if err != nil {
			b.Fatal(err)
		}
		srv := &styx.Server{Attacher: a}
		go srv.Serve(ctx, l)
		b.Cleanup(func() { srv.Close() })
		c, err := styx.Dial(ctx, "unix!"+p)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		root, err := c.Attach(ctx, nil, "u", "")
		if err != nil {
			b.Fatal(err)
		}
		return root
	}
	remote := unixServe("a", attacherOf{r})
	local := unixServe("b", fs)
	read := func(root *styx.Fid) float64 {
		f, err := root.WalkPath(ctx, "big")
		if err != nil {
			b.Fatal(err)
		}
		defer f.Clunk(ctx)
		if err := f.Open(ctx, styx.OREAD); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 8<<20)
		var total int64
		for {
			k, err := f.ReadAt(ctx, buf, total)
			total += int64(k)
			if err != nil || k == 0 {
				break
			}
		}
		if total != size {
			b.Fatalf("read %d", total)
		}
		return 0
	}
	b.Run("remote", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			read(remote)
		}
	})
	// The floor of a path that must encrypt: one TLS 1.3 stream over
	// loopback, the nodes' own configurations, 64 MiB written in 1 MiB
	// pieces and read through.
	b.Run("tls-stream", func(b *testing.B) {
		b.SetBytes(size)
		sid, cid := identity(b), identity(b)
		scfg, err := sid.ServerTLS()
		if err != nil {
			b.Fatal(err)
		}
		ccfg, err := cid.ClientTLS(sid.Public)
		if err != nil {
			b.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					tc := tls.Server(c, scfg)
					chunk := make([]byte, 1<<20)
					var one [1]byte
					for {
						if _, err := io.ReadFull(tc, one[:]); err != nil {
							return
						}
						for sent := 0; sent < size; sent += len(chunk) {
							if _, err := tc.Write(chunk); err != nil {
								return
							}
						}
					}
				}()
			}
		}()
		c, err := tls.Dial("tcp", l.Addr().String(), ccfg)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		b.ResetTimer()
		for range b.N {
			c.Write([]byte{1})
			for got := 0; got < size; {
				n, err := c.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				got += n
			}
		}
	})
	b.Run("local", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			read(local)
		}
	})
}
