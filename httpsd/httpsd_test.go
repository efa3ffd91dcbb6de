package httpsd_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cheshire/connlimit"
	"cheshire/httpsd"
)

// newServer is a Server with httptest's certificate.
func newServer() *httpsd.Server {
	ts := httptest.NewTLSServer(nil) // for its certificate
	cfg := &tls.Config{Certificates: ts.TLS.Certificates}
	ts.Close()
	return httpsd.New(cfg, slog.New(slog.DiscardHandler))
}

// serve serves h on a loopback port until the test ends and returns
// the port's HOST:PORT.
func serve(t *testing.T, h *httpsd.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}

// TestHTTPSSlowloris: connections that finish TLS and then trickle a
// request header, from five hosts, fill the listener; a real client
// still gets its answer, the oldest trickler making room, and the
// listener serves on after.
func TestHTTPSSlowloris(t *testing.T) {
	t.Parallel()
	h := newServer()
	lim := &connlimit.Limits{Total: 16, PerHost: 8}
	h.Limit(lim)
	addr := serve(t, h)

	dial := func(src string) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err == nil {
			c.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
		}
		return c, err
	}
	get := func(when string) {
		t.Helper()
		c, err := dial("127.0.0.1")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.1 200") || !strings.Contains(string(b), "cheshire node") {
			t.Fatalf("%s: answer %q", when, b)
		}
	}
	get("before")
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 40 {
		c, err := dial(fmt.Sprintf("127.0.0.%d", 2+i%5))
		if err != nil {
			continue // refused past a host's cap, or evicted during the handshake
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: node\r\n") // and never the blank line
		held = append(held, c)
	}
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for lim.Stats().Held < 16 {                  // the listener full of tricklers
		if time.Now().After(deadline) {
			t.Fatalf("listener not full: %+v", lim.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	get("during")
	if st := lim.Stats(); st.Evicted == 0 {
		t.Errorf("stats %+v: want evictions", st)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	get("after")
}

// TestRoute: a request the route takes is served by its handler, by
// Host; others go to the paths.
func TestRoute(t *testing.T) {
	t.Parallel()
	h := newServer()
	h.Handle("/x", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "path") }))
	h.Route(func(r *http.Request) http.Handler {
		if r.Host != "app.test" {
			return nil
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "routed "+r.URL.Path) })
	})
	addr := serve(t, h)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for host, want := range map[string]string{"app.test": "routed /x", "other.test": "path"} {
		req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("Host %s: %q, want %q", host, b, want)
		}
	}
	if h.Requests() != 2 {
		t.Errorf("requests %d, want 2", h.Requests())
	}
}
