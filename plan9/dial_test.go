package plan9

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseDial(t *testing.T) {
	tests := []struct {
		in   string
		want Addr
		err  string // substring of the error; "" for success
	}{
		{"tcp!127.0.0.1!5640", Addr{"tcp", "127.0.0.1", "5640"}, ""},
		{"tcp!*!564", Addr{"tcp", "*", "564"}, ""},
		{"net!example.com!564", Addr{"tcp", "example.com", "564"}, ""},
		{"tcp!::1!5640", Addr{"tcp", "::1", "5640"}, ""},
		{"tcp!fe80::1%eth0!5640", Addr{"tcp", "fe80::1%eth0", "5640"}, ""},
		{"tcp!h!ssh", Addr{"tcp", "h", "ssh"}, ""},
		{"tcp!h!0", Addr{"tcp", "h", "0"}, ""},
		{"tcp!h!65535", Addr{"tcp", "h", "65535"}, ""},
		{"tls!h!443", Addr{"tls", "h", "443"}, ""},
		{"udp!h!53", Addr{"udp", "h", "53"}, ""},
		{"unix!/tmp/x.sock", Addr{"unix", "/tmp/x.sock", ""}, ""},
		{"unix!rel/a!b", Addr{"unix", "rel/a!b", ""}, ""},

		{"", Addr{}, `dial string "": want net!host!port or unix!path`},
		{"tcp", Addr{}, `dial string "tcp": want net!host!port`},
		{"tcp!x", Addr{}, `dial string "tcp!x": missing port`},
		{"tcp!x!", Addr{}, `dial string "tcp!x!": missing port`},
		{"tcp!!1", Addr{}, `dial string "tcp!!1": missing host`},
		{"tcp!", Addr{}, `dial string "tcp!": missing host`},
		{"!a!b", Addr{}, `dial string "!a!b": missing network`},
		{"foo!a!b", Addr{}, `unknown network "foo" in dial string "foo!a!b"`},
		{"tcp!a!1!2", Addr{}, `dial string "tcp!a!1!2": too many fields`},
		{"tcp!a!65536", Addr{}, `dial string "tcp!a!65536": bad port "65536"`},
		{"tcp!a!99999999999999999999", Addr{}, `bad port`},
		{"tcp!a!-1", Addr{}, `bad port "-1"`},
		{"tcp!a!+1", Addr{}, `bad port "+1"`},
		{"tcp!a!nosuchservice", Addr{}, `bad port "nosuchservice"`},
		{"unix!", Addr{}, `dial string "unix!": missing path`},
	}
	for _, tt := range tests {
		got, err := ParseDial(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDial(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDial(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestAddrString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"tcp!127.0.0.1!5640", "tcp!127.0.0.1!5640"},
		{"net!h!564", "tcp!h!564"},
		{"tcp!::1!5640", "tcp!::1!5640"},
		{"unix!/path", "unix!/path"},
		{"tls!h!443", "tls!h!443"},
	}
	for _, tt := range tests {
		a, err := ParseDial(tt.in)
		if err != nil {
			t.Fatalf("ParseDial(%q): %v", tt.in, err)
		}
		if got := a.String(); got != tt.want {
			t.Errorf("ParseDial(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		if b, err := ParseDial(a.String()); err != nil || b != a {
			t.Errorf("ParseDial(%q) = %#v, %v; want %#v", a.String(), b, err, a)
		}
	}
}

func TestNetAddr(t *testing.T) {
	tests := []struct {
		in, network, address string
	}{
		{"tcp!127.0.0.1!5640", "tcp", "127.0.0.1:5640"},
		{"tcp!*!5640", "tcp", ":5640"},
		{"tcp!::1!5640", "tcp", "[::1]:5640"},
		{"net!h!ssh", "tcp", "h:ssh"},
		{"tls!h!443", "tcp", "h:443"},
		{"udp!h!53", "udp", "h:53"},
		{"unix!/tmp/s", "unix", "/tmp/s"},
	}
	for _, tt := range tests {
		a, err := ParseDial(tt.in)
		if err != nil {
			t.Fatalf("ParseDial(%q): %v", tt.in, err)
		}
		n, addr := a.NetAddr()
		if n != tt.network || addr != tt.address {
			t.Errorf("%q.NetAddr() = %q, %q; want %q, %q", tt.in, n, addr, tt.network, tt.address)
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// serveHi writes "hi" to every connection accepted on l until l is
// closed.
func serveHi(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
}

func readHi(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	buf := make([]byte, 2)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v; want \"hi\"", buf, err)
	}
}

func TestListenDialTCP(t *testing.T) {
	l, err := Listen("tcp!127.0.0.1!0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	serveHi(l)
	c, err := Dial(ctx(t), "tcp!127.0.0.1!"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	readHi(t, c)
}

func TestListenDialUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	s := "unix!" + path
	l, err := Listen(s)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}

	// A live server keeps its socket.
	if l2, err := Listen(s); err == nil {
		l2.Close()
		t.Errorf("second Listen(%q) succeeded", s)
	} else if want := s + ": address already in use"; err.Error() != want || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen(%q): %v; want %q", s, err, want)
	}

	serveHi(l)
	c, err := Dial(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	readHi(t, c)

	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed on Close: %v", err)
	}
}

func TestListenUnixStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	l, err := Listen("unix!" + path)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	l.Close()
}

func TestListenUnixNotSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen("unix!" + path); err == nil {
		l.Close()
		t.Fatal("Listen over a regular file succeeded")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("regular file removed: %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{"tls!h!443", "tls!h!443: tls needs keys: dial it with cheshire's -k KEY, or listen with serve --listen"},
		{"udp!h!53", "udp!h!53: udp dial strings are not supported"},
		{"tcp!x", `dial string "tcp!x": missing port`},
		{"unix!" + filepath.Join(t.TempDir(), "none"), "unix!"},
	}
	for _, tt := range tests {
		c, err := Dial(ctx(t), tt.in)
		if err == nil {
			c.Close()
			t.Errorf("Dial(%q) succeeded", tt.in)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("Dial(%q): %v; want prefix %q", tt.in, err, tt.err)
		}
		if strings.HasPrefix(tt.in, "unix!") {
			continue
		}
		if l, err := Listen(tt.in); err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded", tt.in)
		} else if !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("Listen(%q): %v; want prefix %q", tt.in, err, tt.err)
		}
	}
}
