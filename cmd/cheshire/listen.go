package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"cheshire/httpsd"
	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/styx"
)

// listeners are the node's bound listeners and the goroutines serving
// them.
type listeners struct {
	ctx context.Context
	log *slog.Logger
	wg  sync.WaitGroup
	end sync.Once

	mu     sync.Mutex
	names  []string // guarded by mu: bound dial strings
	closes []func() // guarded by mu: what close stops
}

func newListeners(ctx context.Context, log *slog.Logger) *listeners {
	return &listeners{ctx: ctx, log: log}
}

// bound returns the dial strings bound so far (the port actually bound
// for …!0).
func (ls *listeners) bound() []string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]string(nil), ls.names...)
}

// start serves l with serveOn under name until the node stops.
func (ls *listeners) start(name string, l net.Listener, serveOn func(context.Context, net.Listener) error) {
	ls.mu.Lock()
	ls.names = append(ls.names, name)
	ls.mu.Unlock()
	ls.wg.Go(func() {
		if err := serveOn(ls.ctx, l); err != nil {
			ls.log.Error("listener failed", "addr", name, "err", err)
		}
	})
}

// serve9P serves srv on every address: tls!HOST!PORT with the node's key,
// anything else as plan9.Listen announces it. Any failure is the node's.
func (ls *listeners) serve9P(srv *styx.Server, id *nodekey.Identity, addrs []string) error {
	ls.onClose(func() { srv.Close() })
	for _, a := range addrs {
		var l net.Listener
		var err error
		if strings.HasPrefix(a, "tls!") {
			l, err = listenTLS(a, id)
		} else {
			l, err = plan9.Listen(a)
		}
		if err != nil {
			return err
		}
		name := a
		if network, _, _ := strings.Cut(a, "!"); network != "unix" {
			name = boundName(network+"!", l)
		}
		ls.start(name, l, srv.Serve)
	}
	return nil
}

// serveHTTPS serves web on every tcp!HOST!PORT of addrs; one that cannot
// be bound is reported and left out.
func (ls *listeners) serveHTTPS(web *httpsd.Server, addrs []string) error {
	ls.onClose(web.Close)
	for _, a := range addrs {
		if d, err := plan9.ParseDial(a); err != nil || d.Net != "tcp" {
			return fmt.Errorf("--https %s: want tcp!HOST!PORT", a)
		}
		l, err := plan9.Listen(a)
		if err != nil {
			notStarted("https", err, "--https tcp!HOST!PORT, or --https none")
			continue
		}
		ls.start(boundName("https!", l), l, web.Serve)
	}
	return nil
}

func (ls *listeners) onClose(f func()) {
	ls.mu.Lock()
	ls.closes = append(ls.closes, f)
	ls.mu.Unlock()
}

// close stops the servers and waits for their goroutines; later calls
// do nothing.
func (ls *listeners) close() {
	ls.end.Do(func() {
		ls.mu.Lock()
		closes := ls.closes
		ls.mu.Unlock()
		for _, f := range closes {
			f()
		}
		ls.wg.Wait()
	})
}

// boundName is the dial string of the address l actually bound (for
// tcp!…!0).
func boundName(prefix string, l net.Listener) string {
	host, port := l.Addr().String(), ""
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host, port = host[:i], host[i+1:]
	}
	return prefix + strings.Trim(host, "[]") + "!" + port
}
