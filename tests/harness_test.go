// Package tests holds multi-process integration tests: they build the real
// cheshire binary, start nodes on real sockets, mount them with FUSE and
// drive them with shell tools and other clients.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/styx"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary returns the cheshire binary: $CHESHIRE_BIN, or one built once.
func binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHESHIRE_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cheshire-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cheshire")
		out, err := exec.Command("go", "build", "-o", binPath, "cheshire/cmd/cheshire").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// node is a running cheshire process.
type node struct {
	t    testing.TB
	dir  string
	cmd  *exec.Cmd
	logs *syncBuffer
	sock string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// shortTemp makes a directory with a short path (unix socket paths are
// limited to 108 bytes).
func shortTemp(t testing.TB) string {
	d, err := os.MkdirTemp("/tmp", "ch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startNode runs `cheshire serve` on dir with extra args and waits for its
// socket.
func startNode(t testing.TB, dir string, args ...string) *node {
	t.Helper()
	return startNodeUnder(t, nil, dir, args...)
}

// startNodeUnder is startNode with the node run by a wrapper command,
// such as prlimit.
func startNodeUnder(t testing.TB, wrapper []string, dir string, args ...string) *node {
	t.Helper()
	n := &node{t: t, dir: dir, logs: &syncBuffer{}, sock: filepath.Join(dir, "cheshire.sock")}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--https") }) {
		args = append(args, "--https", "tcp!127.0.0.1!0") // many nodes, one machine
	}
	// The DNS module's static config: a free port unless the test set one.
	// Likewise the DHT's: a free port, and no bootstrap.
	for mod, cfg := range map[string]string{"dns": "listen 127.0.0.1:0\n", "dht": "listen 127.0.0.1:0\n"} {
		if p := filepath.Join(dir, "modules", mod, "config"); !exists(p) {
			os.MkdirAll(filepath.Dir(p), 0700)
			os.WriteFile(p, []byte(cfg), 0600)
		}
	}
	argv := append(append(append([]string(nil), wrapper...), binary(t), "serve", "--dir", dir), args...)
	n.cmd = exec.Command(argv[0], argv[1:]...)
	n.cmd.Stderr = n.logs
	n.cmd.Stdout = n.logs
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", n.sock); err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not start; log:\n%s", n.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *node) stop() {
	if n.cmd.ProcessState != nil {
		return
	}
	n.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
}

func (n *node) addr() string { return "unix!" + n.sock }

// run runs the cheshire binary with args against n and returns stdout.
func (n *node) run(stdin string, args ...string) (string, error) {
	cmd := exec.Command(binary(n.t), args...)
	cmd.Env = append(os.Environ(), "CHESHIRE_DIR="+n.dir)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// client attaches to n as user.
func (n *node) client(user string) *styx.Fid {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := styx.Dial(ctx, n.addr())
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	root, err := c.Attach(ctx, nil, user, "")
	if err != nil {
		n.t.Fatal(err)
	}
	return root
}

// sh runs a shell command line and returns its output.
func sh(t testing.TB, script string) string {
	t.Helper()
	out, err := exec.Command("bash", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// occupy binds a loopback port for TCP and UDP (either may be false) and
// returns it; the sockets stay bound until the test ends.
func occupy(t *testing.T, tcp, udp bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			l.Close()
			continue
		}
		if tcp {
			t.Cleanup(func() { l.Close() })
		} else {
			l.Close()
		}
		if udp {
			t.Cleanup(func() { u.Close() })
		} else {
			u.Close()
		}
		return port
	}
	t.Fatal("no free port")
	return 0
}

// freeDNSPort finds a port free for both UDP and TCP on 127.0.0.1.
func freeDNSPort(t *testing.T) int {
	t.Helper()
	return occupy(t, false, false)
}
