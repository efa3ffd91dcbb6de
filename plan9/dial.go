package plan9

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addr is a parsed Plan 9 dial string such as tcp!host!port or unix!/path.
type Addr struct {
	// Net is "tcp", "unix", "tls" or "udp". The Plan 9 network
	// "net" is recorded as "tcp".
	Net string
	// Host is a host name or address, "*" meaning every local
	// address; for unix it holds the socket path.
	Host string
	// Port is a decimal port number or a service name; it is
	// empty for unix.
	Port string
}

// String returns a as a dial string: tcp!127.0.0.1!5640 or unix!/path.
func (a Addr) String() string {
	if a.Net == "unix" {
		return "unix!" + a.Host
	}
	return a.Net + "!" + a.Host + "!" + a.Port
}

// ParseDial parses a dial string. It accepts tcp!host!port,
// tcp!*!port (every local address), net!host!port (taken as tcp),
// tls!host!port, udp!host!port and unix!/path/to/socket. Because the
// fields are separated by '!', host may be a bare IPv6 literal
// (tcp!::1!5640). The port is a decimal number from 0 to 65535 (0
// asks Listen for any free port) or a service name known to
// net.LookupPort.
func ParseDial(s string) (Addr, error) {
	network, rest, ok := strings.Cut(s, "!")
	if !ok {
		return Addr{}, fmt.Errorf("dial string %q: want net!host!port or unix!path", s)
	}
	switch network {
	case "":
		return Addr{}, fmt.Errorf("dial string %q: missing network", s)
	case "unix":
		if rest == "" {
			return Addr{}, fmt.Errorf("dial string %q: missing path", s)
		}
		return Addr{Net: "unix", Host: rest}, nil
	case "tcp", "net", "tls", "udp":
	default:
		return Addr{}, fmt.Errorf("unknown network %q in dial string %q", network, s)
	}
	if network == "net" {
		network = "tcp"
	}
	host, port, ok := strings.Cut(rest, "!")
	switch {
	case host == "":
		return Addr{}, fmt.Errorf("dial string %q: missing host", s)
	case !ok || port == "":
		return Addr{}, fmt.Errorf("dial string %q: missing port", s)
	case strings.Contains(port, "!"):
		return Addr{}, fmt.Errorf("dial string %q: too many fields", s)
	}
	if !validPort(network, port) {
		return Addr{}, fmt.Errorf("dial string %q: bad port %q", s, port)
	}
	return Addr{Net: network, Host: host, Port: port}, nil
}

// validPort reports whether port is a decimal number in 0..65535 or a
// service name that net.LookupPort knows for network.
func validPort(network, port string) bool {
	if strings.Trim(port, "0123456789") == "" {
		_, err := strconv.ParseUint(port, 10, 16)
		return err == nil
	}
	if port[0] == '+' || port[0] == '-' {
		return false // net.LookupPort would take these as numbers
	}
	lookup := "tcp"
	if network == "udp" {
		lookup = "udp"
	}
	_, err := net.LookupPort(lookup, port)
	return err == nil
}

// NetAddr returns the network and address to hand to package net:
// ("tcp", "host:port") for tcp and tls, ("udp", "host:port") for udp
// and ("unix", path) for unix. The host "*" becomes the empty host.
func (a Addr) NetAddr() (network, address string) {
	switch a.Net {
	case "unix":
		return "unix", a.Host
	case "udp":
		network = "udp"
	default:
		network = "tcp"
	}
	host := a.Host
	if host == "*" {
		host = ""
	}
	return network, net.JoinHostPort(host, a.Port)
}

// streamAddr parses s for Dial and Listen, which handle only tcp and
// unix.
func streamAddr(s string) (Addr, error) {
	a, err := ParseDial(s)
	if err != nil {
		return Addr{}, err
	}
	switch a.Net {
	case "tcp", "unix":
		return a, nil
	case "tls":
		return Addr{}, fmt.Errorf("%s: tls needs keys: dial it with cheshire's -k KEY, or listen with serve --listen", s)
	default:
		return Addr{}, fmt.Errorf("%s: %s dial strings are not supported", s, a.Net)
	}
}

// Dial connects to the tcp or unix address named by the dial string s.
func Dial(ctx context.Context, s string) (net.Conn, error) {
	a, err := streamAddr(s)
	if err != nil {
		return nil, err
	}
	network, address := a.NetAddr()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return c, nil
}

// Listen announces on the tcp or unix address named by the dial
// string s.
//
// For unix, a socket already at the path that refuses connections is
// a leftover and is removed; one that accepts them belongs to a live
// server and Listen fails with "address already in use" (the probe
// leaves that server an empty connection to accept). Anything
// else at the path is left alone and is an error. The new socket is
// made mode 0600 right after it is bound, so only its owner can
// connect; there is a brief window before the chmod, so keep sockets
// in a directory only the owner can search if that matters. The
// socket file is removed when the listener is closed.
func Listen(s string) (net.Listener, error) {
	a, err := streamAddr(s)
	if err != nil {
		return nil, err
	}
	if a.Net == "unix" {
		return listenUnix(s, a.Host)
	}
	network, address := a.NetAddr()
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return l, nil
}

func listenUnix(s, path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%s: %w", s, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("%s: file exists and is not a socket", s)
	default:
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("%s: %w", s, syscall.EADDRINUSE)
		case errors.Is(err, syscall.ECONNREFUSED):
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: remove stale socket: %w", s, err)
			}
		default:
			return nil, fmt.Errorf("%s: probe existing socket: %w", s, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return l, nil
}

// HostIPs is what the host of a listener's dial string stands for: the
// address itself, or for a wildcard (0.0.0.0, ::) the addresses of the
// machine's interfaces; nothing for a name.
func HostIPs(host string) []net.IP {
	ip := net.ParseIP(host)
	if ip == nil {
		return nil
	}
	if !ip.IsUnspecified() {
		return []net.IP{ip}
	}
	var out []net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out
}
