package tests

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestListenersSurviveFlood: with its open-file limit at 256, a node
// held 600 idle connections on its 9P-over-TLS port and 300 on its
// HTTPS port, from twelve loopback hosts, none of which ever starts a
// TLS handshake. Before connection limits, the node ran out of
// descriptors and its listeners, the owner's unix socket included,
// stopped. Now the owner, a node with a key mapped to a user, and an
// HTTPS client are all served during the flood and after it.
func TestListenersSurviveFlood(t *testing.T) {
	t.Parallel()
	a := startNode(t, shortTemp(t))
	b := startNodeUnder(t, []string{"prlimit", "--nofile=256:256", "--"}, shortTemp(t), "--listen", "tls!127.0.0.1!0")
	aKey := strings.TrimSpace(must9p(t, a, "read", "/node/id"))
	bKey := strings.TrimSpace(must9p(t, b, "read", "/node/id"))
	if err := os.WriteFile(filepath.Join(b.dir, "users"), []byte("alice "+aKey+"\n"), 0600); err != nil {
		t.Fatal(err)
	}
	tlsHostPort := strings.ReplaceAll(strings.TrimPrefix(b.tlsAddr(), "tls!"), "!", ":")
	var httpsHostPort string
	for _, f := range strings.Fields(must9p(t, b, "read", "/node/addrs")) {
		if rest, ok := strings.CutPrefix(f, "https!"); ok {
			httpsHostPort = strings.Replace(rest, "!", ":", 1)
		}
	}
	if httpsHostPort == "" {
		t.Fatal("no https address in /node/addrs")
	}

	works := func(when string) {
		t.Helper()
		if got := must9p(t, b, "read", "/node/id"); strings.TrimSpace(got) != bKey {
			t.Errorf("%s: owner over the unix socket read %q", when, got)
		}
		got, err := a.run("", "9p", "-a", b.tlsAddr(), "-k", bKey, "read", "/node/id")
		if err != nil || strings.TrimSpace(got) != bKey {
			t.Errorf("%s: alice over TLS: %q, %v", when, got, err)
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", httpsHostPort, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Errorf("%s: HTTPS handshake: %v", when, err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
			t.Errorf("%s: HTTPS answered %q", when, buf[:n])
		}
	}
	works("before the flood")

	// The flood: 50 connections from each of 12 hosts to the 9P port,
	// 25 from each to the HTTPS port, held open and silent.
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	for h := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+h))}, Timeout: 10 * time.Second}
			for i := range 75 {
				addr := tlsHostPort
				if i%3 == 2 {
					addr = httpsHostPort
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue // the backlog may be full: the flood goes on
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if len(held) < 600 {
		t.Logf("%d flood connections opened", len(held))
	}
	works("during the flood")
	if logs := b.logs.String(); !strings.Contains(logs, "9p connection closed to make room") || !strings.Contains(logs, "https connection closed to make room") {
		t.Errorf("the node logged no refusal during the flood; log:\n%s", b.logs)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	works("after the flood")
}
