package wasm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"cheshire/module"
	"cheshire/modules/abi"
	"cheshire/plan9"
	"cheshire/styx"
)

// Bounds of the calls a guest makes into the node.
const (
	MaxNSRead    = 16 << 20 // bytes of a namespace file read
	MaxHTTPBody  = 1 << 20  // bytes of an HTTP response body passed back
	HTTPTimeout  = 30 * time.Second
	maxRedirects = 5
	nsCreatePerm = 0664
)

// serveHost runs a guest→host request and returns its response.
func (in *instance) serveHost(ctx context.Context, req *abi.Request) *abi.Response {
	resp, err := in.host(ctx, req)
	if err != nil {
		return &abi.Response{Err: plan9.Errstr(err)}
	}
	return resp
}

func (in *instance) host(ctx context.Context, req *abi.Request) (*abi.Response, error) {
	switch req.Op {
	case abi.OpNSRead, abi.OpNSWrite, abi.OpNSStat, abi.OpNSReadDir:
		p, err := in.checkPath(req)
		if err != nil {
			return nil, err
		}
		switch req.Op {
		case abi.OpNSRead:
			return in.nsRead(ctx, p, req.Count)
		case abi.OpNSWrite:
			return in.nsWrite(ctx, p, req.Data)
		case abi.OpNSStat:
			return in.nsStat(ctx, p)
		default:
			return in.nsReadDir(ctx, p)
		}
	case abi.OpHTTP:
		return in.http.do(ctx, req)
	}
	return nil, fmt.Errorf("module %s: unknown request %d", in.name, req.Op)
}

// denied logs and returns the refusal of op on what.
func (in *instance) denied(op, what string) error {
	in.log.Warn("permission denied", "op", op, "arg", what)
	return fmt.Errorf("%w: module %s may not %s %s", plan9.ErrPerm, in.name, op, what)
}

// checkPath checks a namespace request's path against the grants and
// returns it cleaned.
func (in *instance) checkPath(req *abi.Request) (string, error) {
	kind := "read"
	if req.Op == abi.OpNSWrite {
		kind = "write"
	}
	if !strings.HasPrefix(req.Path, "/") {
		return "", fmt.Errorf("module %s: %s %q: path not absolute", in.name, kind, req.Path)
	}
	p := path.Clean(req.Path)
	if !allowed(in.grants, module.Perm{Kind: kind, Arg: p}) {
		return "", in.denied(kind, p)
	}
	return p, nil
}

// attach attaches to the namespace as the module. The caller clunks
// the root.
func (in *instance) attach(ctx context.Context) (styx.File, error) {
	if in.env.Namespace == nil {
		return nil, fmt.Errorf("module %s: no namespace", in.name)
	}
	root, err := in.env.Namespace.Attach(ctx, in.name, "", nil)
	if err != nil {
		return nil, fmt.Errorf("attach namespace: %w", err)
	}
	return root, nil
}

// walk attaches to the namespace and walks to p. The caller clunks the
// file.
func (in *instance) walk(ctx context.Context, p string) (styx.File, error) {
	root, err := in.attach(ctx)
	if err != nil {
		return nil, err
	}
	f, err := styx.WalkFile(ctx, root, styx.SplitPath(p))
	root.Clunk()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return f, nil
}

func (in *instance) nsRead(ctx context.Context, p string, limit uint32) (*abi.Response, error) {
	root, err := in.attach(ctx)
	if err != nil {
		return nil, err
	}
	defer root.Clunk()
	max := int64(MaxNSRead)
	if limit != 0 {
		max = min(max, int64(limit))
	}
	data, err := styx.ReadFile(ctx, root, p, max)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &abi.Response{Data: data, Count: uint32(len(data))}, nil
}

func (in *instance) nsWrite(ctx context.Context, p string, data []byte) (*abi.Response, error) {
	root, err := in.attach(ctx)
	if err != nil {
		return nil, err
	}
	defer root.Clunk()
	// A missing file is made, in its directory.
	if err := styx.WriteFile(ctx, root, p, data, nsCreatePerm); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &abi.Response{Count: uint32(len(data))}, nil
}

func (in *instance) nsStat(ctx context.Context, p string) (*abi.Response, error) {
	f, err := in.walk(ctx, p)
	if err != nil {
		return nil, err
	}
	defer f.Clunk()
	d, err := f.Stat(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &abi.Response{Infos: []abi.Info{infoOf(d)}}, nil
}

func (in *instance) nsReadDir(ctx context.Context, p string) (*abi.Response, error) {
	f, err := in.walk(ctx, p)
	if err != nil {
		return nil, err
	}
	defer f.Clunk()
	if f.Qid().Type&styx.QTDIR == 0 {
		return nil, fmt.Errorf("%s: %w", p, plan9.ErrNotDir)
	}
	if _, err := f.Open(ctx, plan9.OREAD); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	ds, err := f.ReadDir(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	infos := make([]abi.Info, len(ds))
	for i, d := range ds {
		infos[i] = infoOf(d)
	}
	return &abi.Response{Infos: infos}, nil
}

func infoOf(d styx.Dir) abi.Info {
	return abi.Info{Name: d.Name, Mode: d.Mode, Size: d.Length, Mtime: d.Mtime, Version: d.Qid.Vers}
}

// httpClient makes a module's HTTP requests, to granted hosts only.
type httpClient struct {
	in *instance
	c  *http.Client
}

func newHTTPClient(in *instance, rt http.RoundTripper) *httpClient {
	h := &httpClient{in: in}
	h.c = &http.Client{
		Transport: rt,
		Timeout:   HTTPTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			_, err := h.check(req.URL)
			return err
		},
	}
	return h
}

// check checks that the module may reach u, returning its host:port.
func (h *httpClient) check(u *url.URL) (string, error) {
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
	default:
		return "", fmt.Errorf("module %s: http: scheme %q not supported", h.in.name, u.Scheme)
	}
	hp := u.Hostname() + ":" + port
	if u.Hostname() == "" {
		return "", fmt.Errorf("module %s: http: no host in url", h.in.name)
	}
	if !allowed(h.in.grants, module.Perm{Kind: "http", Arg: hp}) {
		return "", h.in.denied("http", hp)
	}
	return hp, nil
}

func (h *httpClient) do(ctx context.Context, r *abi.Request) (*abi.Response, error) {
	u, err := url.Parse(r.Path)
	if err != nil {
		return nil, fmt.Errorf("module %s: http: %w", h.in.name, err)
	}
	if _, err := h.check(u); err != nil {
		return nil, err
	}
	method := r.User
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if len(r.Data) > 0 {
		// r.Data is guest memory, stable while the guest waits for us.
		body = bytes.NewReader(r.Data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("module %s: http: %w", h.in.name, err)
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("module %s: http: %w", h.in.name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxHTTPBody+1))
	if err != nil {
		return nil, fmt.Errorf("module %s: http: reading body: %w", h.in.name, err)
	}
	if len(data) > MaxHTTPBody {
		return nil, fmt.Errorf("module %s: http: response body larger than %d bytes", h.in.name, MaxHTTPBody)
	}
	return &abi.Response{Count: uint32(resp.StatusCode), Data: data}, nil
}

// logWriter turns a guest's stdout or stderr into log lines.
type logWriter struct {
	log    *slog.Logger
	level  slog.Level
	stream string

	mu  sync.Mutex
	buf []byte
}

func newLogWriter(log *slog.Logger, level slog.Level, stream string) *logWriter {
	return &logWriter{log: log, level: level, stream: stream}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 && len(w.buf) < maxLogLine {
			break
		}
		if i < 0 || i > maxLogLine {
			i = min(len(w.buf), maxLogLine)
		}
		w.log.Log(context.Background(), w.level, string(w.buf[:i]), "stream", w.stream)
		if i < len(w.buf) && w.buf[i] == '\n' {
			i++
		}
		w.buf = w.buf[:copy(w.buf, w.buf[i:])]
	}
	return len(p), nil
}
