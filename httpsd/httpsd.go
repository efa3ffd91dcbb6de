// Package httpsd is the node's HTTPS listener: one mux that every
// web-facing capability adds handlers to, on TLS with per-host and total
// connection caps and header deadlines (connlimit).
package httpsd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/connlimit"
)

// Server is the node's HTTPS listener, shared by every web-facing
// capability (DNS-over-HTTPS, ACME, and later git, apps and the web UI).
// Capabilities add handlers by path; the certificate comes from the
// node's CA through the tls.Config, which renews it without a restart.
type Server struct {
	mux *http.ServeMux
	tls *tls.Config
	log *slog.Logger
	lim *connlimit.Limits

	mu    sync.Mutex
	srv   []*http.Server                     // guarded by mu
	root  http.Handler                       // guarded by mu: the handler of "/", if any
	route func(r *http.Request) http.Handler // guarded by mu: see Route

	requests atomic.Uint64 // requests served, all listeners
}

// Requests is how many requests the server has begun to serve.
func (h *Server) Requests() uint64 { return h.requests.Load() }

// New returns a listener serving with cfg (TLS 1.2 at least).
func New(cfg *tls.Config, log *slog.Logger) *Server {
	cfg = cfg.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.NextProtos = []string{"h2", "http/1.1"}
	h := &Server{mux: http.NewServeMux(), tls: cfg, log: log}
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		root := h.root
		h.mu.Unlock()
		if root != nil { // the web UI's first page
			root.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("cheshire node\n"))
	})
	return h
}

// Limit bounds the connections Serve accepts (per host and in total);
// a connection is established once it has sent a whole request header.
// Call it before Serve.
func (h *Server) Limit(lim *connlimit.Limits) { h.lim = lim }

type connKey struct{}

// Handle adds a handler for pattern (http.ServeMux syntax). The handler
// of "/" also answers GET / (which, without one, is "cheshire node").
func (h *Server) Handle(pattern string, handler http.Handler) {
	if pattern == "/" {
		h.mu.Lock()
		h.root = handler
		h.mu.Unlock()
	}
	h.mux.Handle(pattern, handler)
}

// Route sets a function that may take a request before the paths do:
// the handler it returns serves the request, nil leaves it to the
// paths. The node routes the names of its apps this way (by Host).
func (h *Server) Route(f func(r *http.Request) http.Handler) {
	h.mu.Lock()
	h.route = f
	h.mu.Unlock()
}

func (h *Server) serve(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	h.mu.Lock()
	route := h.route
	h.mu.Unlock()
	if route != nil {
		if rh := route(r); rh != nil {
			rh.ServeHTTP(w, r)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// Serve serves HTTPS on l until ctx ends or Close.
func (h *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           http.HandlerFunc(h.serve),
		TLSConfig:         h.tls,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		// A connection is established once a whole request header has
		// arrived: one that trickles its header (slowloris) can still be
		// evicted to make room.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	if h.lim != nil {
		next := srv.Handler
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
				connlimit.MarkEstablished(c)
			}
			next.ServeHTTP(w, r)
		})
	}
	if h.lim != nil {
		l = connlimit.Listener(l, h.lim)
	}
	h.mu.Lock()
	h.srv = append(h.srv, srv)
	h.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(tls.NewListener(l, h.tls))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops every server.
func (h *Server) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.srv {
		s.Close()
	}
}
