package nodekey_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"cheshire/nodekey"
)

// countingConn counts the writes made to the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// pair returns the two ends of a mutual TLS connection over loopback
// TCP, made with nodekey's Client and Server, and the client's socket.
func pair(t *testing.T) (cli, srv *nodekey.Conn, sock *countingConn) {
	t.Helper()
	srvID, cliID := identity(t), identity(t)
	scfg, err := srvID.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := cliID.ClientTLS(srvID.Public)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := nodekey.NewListener(ln, scfg)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := tl.Accept()
		if err == nil {
			err = c.(*nodekey.Conn).Handshake()
		}
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sock = &countingConn{Conn: raw}
	cli = nodekey.Client(sock, ccfg)
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	c, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	srv = c.(*nodekey.Conn)
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return cli, srv, sock
}

// TestGatheredWrites: a 1 MiB Write reaches the other side whole and in
// order in about 1 MiB / 64 KiB socket writes, where crypto/tls alone
// makes one a 16 KiB record; the peer's key is still known through the
// wrapper; and writes from several goroutines at once, each a header
// and a body, by WriteVector or joined by Write (one record or many),
// arrive unmixed.
func TestGatheredWrites(t *testing.T) {
	t.Parallel()
	cli, srv, sock := pair(t)
	if _, ok := nodekey.Peer(srv); !ok {
		t.Fatal("the server does not see the client's key through the wrapper")
	}

	msg := make([]byte, 1<<20)
	rand.Read(msg)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(msg))
		io.ReadFull(srv, b)
		got <- b
	}()
	before := sock.writes.Load()
	if n, err := cli.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatal("1 MiB write arrived changed")
	}
	if w := sock.writes.Load() - before; w > 20 {
		t.Fatalf("1 MiB went out in %d socket writes, want at most 20 (64 records ungathered)", w)
	}

	// Concurrent messages: each is an 8-byte header (writer, length)
	// and a body of that writer's byte.
	const writers, each = 4, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				body := bytes.Repeat([]byte{byte(w)}, 1000+i*3000)
				var h [8]byte
				binary.LittleEndian.PutUint32(h[:], uint32(w))
				binary.LittleEndian.PutUint32(h[4:], uint32(len(body)))
				var err error
				if w%2 == 0 {
					_, err = cli.WriteVector([][]byte{h[:], body})
				} else { // joined: the small ones are one record, written straight
					_, err = cli.Write(append(h[:], body...))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range writers * each {
		var h [8]byte
		if _, err := io.ReadFull(srv, h[:]); err != nil {
			t.Fatal(err)
		}
		w, n := binary.LittleEndian.Uint32(h[:]), binary.LittleEndian.Uint32(h[4:])
		body := make([]byte, n)
		if _, err := io.ReadFull(srv, body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, bytes.Repeat([]byte{byte(w)}, int(n))) {
			t.Fatalf("message of writer %d mixed with another", w)
		}
	}
	wg.Wait()
}
