package connlimit_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"cheshire/connlimit"
)

// accepted serves l, sending each accepted connection on the channel.
func accepted(t *testing.T, l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() { l.Close() })
	return ch
}

func dialFrom(t *testing.T, src string, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closed waits for the peer to close c (a hang guard, not a budget).
func closed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection not closed by the listener")
	}
}

func TestListener(t *testing.T) {
	t.Parallel()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := &connlimit.Limits{PerHost: 2, Total: 3}
	ch := accepted(t, connlimit.Listener(tl, lim))
	a1, a2 := dialFrom(t, "127.0.0.2", tl.Addr()), dialFrom(t, "127.0.0.2", tl.Addr())
	s1, s2 := <-ch, <-ch
	closed(t, dialFrom(t, "127.0.0.2", tl.Addr())) // past PerHost
	// The third host fills the total; the fourth evicts the oldest.
	dialFrom(t, "127.0.0.3", tl.Addr())
	<-ch
	connlimit.MarkEstablished(tls.Server(s2, &tls.Config{})) // through a wrapper
	dialFrom(t, "127.0.0.4", tl.Addr())
	<-ch
	closed(t, a1)
	if st := lim.Stats(); st != (connlimit.Stats{Held: 3, Pending: 2, Refused: 1, Evicted: 1}) {
		t.Errorf("%+v, want held 3 pending 2 refused 1 evicted 1", st)
	}
	// Closing gives the place back, once.
	s1.Close()
	s2.Close()
	s2.Close()
	closed(t, a2)
	if held := lim.Stats().Held; held != 2 {
		t.Errorf("held %d after two closes, want 2", held)
	}
}

func TestUnixNotCounted(t *testing.T) {
	t.Parallel()
	sock := t.TempDir() + "/s"
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	lim := &connlimit.Limits{PerHost: 1, Total: 1}
	ch := accepted(t, connlimit.Listener(ul, lim))
	for range 3 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		<-ch
	}
	if held := lim.Stats().Held; held != 0 {
		t.Errorf("held %d unix connections, want 0", held)
	}
}
