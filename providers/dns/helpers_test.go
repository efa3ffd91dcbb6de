package dns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/styx"

	"github.com/miekg/dns"
)

// testServer is a Server serving on loopback UDP and TCP.
type testServer struct {
	*Server
	t    *testing.T
	dir  string
	addr string // host:port, the same port for UDP and TCP
	port string
}

// newTestServer makes a Server in a temporary directory (or dir) and
// serves it on 127.0.0.1 until the test ends.
func newTestServer(t *testing.T, dir string) *testServer {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := New(dir, Options{Owner: "glenda"})
	if err != nil {
		t.Fatal(err)
	}
	pc, l := listenPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return")
		}
	})
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	return &testServer{Server: s, t: t, dir: dir, addr: pc.LocalAddr().String(), port: port}
}

// listenPair opens a UDP socket and a TCP listener on the same loopback
// port.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", l.Addr().String())
		if err == nil {
			return pc, l
		}
		l.Close()
	}
	t.Fatal("no port free for both UDP and TCP")
	return nil, nil
}

// root attaches to the file tree as glenda.
func (ts *testServer) root() styx.File {
	ts.t.Helper()
	f, err := ts.Attach(context.Background(), "glenda", "", nil)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { f.Clunk() })
	return f
}

// readFile reads the file at p (relative to the root of the tree).
func (ts *testServer) readFile(p string) string {
	ts.t.Helper()
	s, err := readFileErr(ts.root(), p)
	if err != nil {
		ts.t.Fatalf("read %s: %v", p, err)
	}
	return s
}

func readFileErr(root styx.File, p string) (string, error) {
	ctx := context.Background()
	f, err := testutil.WalkOpen(ctx, root, p, styx.OREAD)
	if err != nil {
		return "", err
	}
	defer f.Clunk()
	var out []byte
	buf := make([]byte, 8192)
	for {
		n, err := f.Read(ctx, buf, int64(len(out)))
		if err != nil {
			return string(out), err
		}
		if n == 0 {
			return string(out), nil
		}
		out = append(out, buf[:n]...)
	}
}

// writeFile writes data to the file at p (opened with OTRUNC) and returns
// the error of the write or of the clunk that commits it.
func (ts *testServer) writeFile(p, data string) error {
	return writeFileErr(ts.root(), p, data)
}

func writeFileErr(root styx.File, p, data string) error {
	ctx := context.Background()
	f, err := testutil.WalkOpen(ctx, root, p, styx.OWRITE|styx.OTRUNC)
	if err != nil {
		return err
	}
	if _, err := f.Write(ctx, []byte(data), 0); err != nil {
		f.Clunk()
		return err
	}
	return f.Clunk()
}

// ctl writes a control message, failing the test if it is refused.
func (ts *testServer) ctl(p, msg string) {
	ts.t.Helper()
	if err := ts.writeFile(p, msg); err != nil {
		ts.t.Fatalf("%s: %q: %v", p, msg, err)
	}
}

// needTool skips the test if the command is not installed.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

// run runs a command with a time limit and returns its output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, needTool(t, name), args...).CombinedOutput()
	return string(out), err
}

// dig runs dig against the server with args and returns its output.
func (ts *testServer) dig(args ...string) string {
	ts.t.Helper()
	all := append([]string{"@127.0.0.1", "-p", ts.port, "+time=2", "+tries=1"}, args...)
	out, err := run(ts.t, "dig", all...)
	if err != nil {
		ts.t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// query asks the server with the miekg/dns client.
func (ts *testServer) query(name string, qtype uint16, tcp, do bool) *dns.Msg {
	ts.t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	if do {
		m.SetEdns0(4096, true)
	}
	return ts.exchange(m, tcp)
}

func (ts *testServer) exchange(m *dns.Msg, tcp bool) *dns.Msg {
	ts.t.Helper()
	c := &dns.Client{Timeout: 3 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	r, _, err := c.Exchange(m, ts.addr)
	if err != nil {
		ts.t.Fatalf("exchange %v: %v", m.Question, err)
	}
	return r
}

// tlsConfigFor trusts the CA certificate in the PEM file ca.
func tlsConfigFor(t *testing.T, ca string) *tls.Config {
	t.Helper()
	data, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(data)
	return &tls.Config{RootCAs: pool}
}
