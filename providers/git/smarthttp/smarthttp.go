// Package smarthttp serves git repositories over git's smart HTTP
// protocol, versions 0, 1 and 2 (gitprotocol-http(5)): a client may clone,
// fetch, pull and push with the git command. For each repository REPO
// the handler serves
//
//	PREFIX/REPO[.git]/info/refs?service=git-upload-pack   (advertisement)
//	PREFIX/REPO[.git]/info/refs?service=git-receive-pack
//	PREFIX/REPO[.git]/git-upload-pack                     (POST: fetch)
//	PREFIX/REPO[.git]/git-receive-pack                    (POST: push)
//
// A client asking for protocol version 2 (the Git-Protocol header) is
// answered in version 2 for fetches (ls-refs and fetch, v2.go) and in
// version 0 for pushes, as git's own server does; the dumb protocol is
// not served.
//
// The protocol itself (pkt-lines, negotiation, shallow boundaries,
// report-status, the side band) is written here. Of go-git it relies
// on the object and reference storage of the repository
// (storer.Storer), on packfile.Encoder to build the packs a fetch
// receives, on packfile.Parser to check a pushed pack, on
// packfile.UpdateObjectStorage to store it, and on sideband.Muxer.
// go-git's own server (plumbing/transport/server) is not used: it
// refuses shallow requests, answers every fetch request with a pack
// (no multi-round negotiation, no ACKs), and applies a push's commands
// one by one without checking their old hashes.
//
// A push is atomic: its pack is spooled to a temporary file and checked
// before anything is stored, and then, under a lock per repository,
// every command's old hash is compared with the reference before any
// reference is set; Options.Receive, if set, may still refuse the push
// at that point. Like git's receive-pack by default, the handler
// accepts non-fast-forward updates; refusing them without --force is
// the client's part.
package smarthttp

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"cheshire/plan9"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Default limits on request bodies, after any gzip is undone.
const (
	DefaultMaxPack    = 1 << 30  // a push: its commands and pack
	DefaultMaxRequest = 16 << 20 // a fetch's negotiation
)

// Options configure a Handler.
type Options struct {
	// Open returns the repository named name (the URL path segment
	// after the prefix, without ".git"), or an error saying why not:
	// plan9.ErrNotFound (or an error wrapping it) for none, which the
	// client sees as 404. Open is called once per request, after
	// Authorize; the repository is only used for that request, so Open
	// may make a new one each time (an in-memory repository generated
	// for the request, say). If its Storer is an io.Closer, it is closed
	// when the request ends.
	Open func(name string) (*gogit.Repository, error)

	// Authorize decides whether the request may read (clone, fetch)
	// or write (push) the repository repo, and returns the name of the
	// user, which is logged. It is called for every request, before
	// Open. An error wrapping plan9.ErrPerm is answered 403; any other
	// error 401 with a Basic challenge, so that git asks for
	// credentials. A nil Authorize allows reads and refuses writes.
	Authorize func(r *http.Request, repo string, write bool) (user string, err error)

	// Updated, if set, is called after a push with the reference
	// updates it applied, in the order the client sent them; it is not
	// called when nothing changed.
	Updated func(repo string, updates []RefUpdate)

	// Stream, if set, is called as a push's commands are read, before
	// its pack; the PushListener it returns (nil: none) hears the
	// paths the push changes while the pack streams in, then the fate
	// of each command.
	Stream func(repo string) PushListener

	// Receive, if set, is called during a push after its pack is
	// stored in r and every command's old hash has been checked, and
	// before any reference is set, with the updates about to be made,
	// in the order the client sent them; the repository's lock is held.
	// An error refuses the whole push: no reference is set, and each
	// command is reported refused with the error's text, which the git
	// client prints ("! [remote rejected] main -> main (git: …)").
	// ctx is the request's.
	Receive func(ctx context.Context, repo string, r *gogit.Repository, updates []RefUpdate) error

	// Nested allows repository names of several path elements
	// ("dns/zones", served at PREFIX/dns/zones), as when each
	// repository is a directory of a tree; by default a name is one
	// element.
	Nested bool

	// MaxPack bounds the body of a push, and MaxRequest that of a
	// fetch request; zero means DefaultMaxPack and DefaultMaxRequest.
	MaxPack, MaxRequest int64

	// TempDir is where a pushed pack is spooled before it is checked,
	// and where built packs are cached (TempDir/packs, emptied when the
	// handler is made); "" means os.TempDir() and a new temporary
	// directory for the cache.
	TempDir string

	// MaxObject bounds the inflated size of each object of a pushed
	// pack, and of each delta's result; MaxInflated bounds their sum.
	// Both are checked from the object and delta headers before go-git
	// inflates anything. go-git holds each object whole while it
	// stores a pack, so MaxObject bounds the memory a push takes (to
	// a few times itself). Zero means DefaultMaxObject and
	// DefaultMaxInflated.
	MaxObject, MaxInflated int64

	// NoDeltas builds the packs a fetch receives without searching for
	// deltas: for repositories made on the fly (nsrepo), whose packs
	// are seldom built twice, where go-git's delta search costs far
	// more time (20 times the clone, measured) than the bytes it saves.
	// By default it looks 10 objects back, as git's --window does.
	NoDeltas bool

	// Log receives a line per push and per failed request; nil
	// discards them.
	Log *slog.Logger
}

// RefUpdate is a reference changed by a push. Old is plumbing.ZeroHash
// for a reference created, New for one deleted.
type RefUpdate struct {
	Name     plumbing.ReferenceName
	Old, New plumbing.Hash
}

type handler struct {
	prefix string
	o      Options
	locks  sync.Map // repository name → *sync.Mutex, held while refs are checked and set
	packs  packCache
}

// Handler returns a handler serving the repositories of o under prefix
// (say "/git/"; a missing final slash is added).
func Handler(prefix string, o Options) http.Handler {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if o.MaxPack <= 0 {
		o.MaxPack = DefaultMaxPack
	}
	if o.MaxRequest <= 0 {
		o.MaxRequest = DefaultMaxRequest
	}
	if o.MaxObject <= 0 {
		o.MaxObject = DefaultMaxObject
	}
	if o.MaxInflated <= 0 {
		o.MaxInflated = DefaultMaxInflated
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.TempDir != "" {
		os.MkdirAll(o.TempDir, 0700) // a failure shows at the first push or pack
	}
	return &handler{prefix: prefix, o: o, packs: packCache{base: o.TempDir}}
}

// window is how far back a pack built for a fetch looks for deltas.
func (h *handler) window() uint {
	if h.o.NoDeltas {
		return 0
	}
	return 10
}

const (
	svcUpload  = "git-upload-pack"
	svcReceive = "git-receive-pack"
)

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok {
		httpError(w, http.StatusNotFound, "git: not found")
		return
	}
	var name, svc string
	advert := false
	switch {
	case strings.HasSuffix(rest, "/info/refs"):
		name = strings.TrimSuffix(rest, "/info/refs")
		svc = r.URL.Query().Get("service")
		advert = true
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			httpError(w, http.StatusMethodNotAllowed, "git: method not allowed")
			return
		}
		if svc != svcUpload && svc != svcReceive {
			httpError(w, http.StatusForbidden, "git: dumb http not served")
			return
		}
	case strings.HasSuffix(rest, "/"+svcUpload), strings.HasSuffix(rest, "/"+svcReceive):
		i := strings.LastIndexByte(rest, '/')
		name, svc = rest[:i], rest[i+1:]
		if r.Method != http.MethodPost {
			httpError(w, http.StatusMethodNotAllowed, "git: method not allowed")
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-"+svc+"-request" {
			httpError(w, http.StatusUnsupportedMediaType, "git: bad content type")
			return
		}
	default:
		httpError(w, http.StatusNotFound, "git: not found")
		return
	}
	name = strings.TrimSuffix(name, ".git")
	if !h.validName(name) {
		httpError(w, http.StatusNotFound, "git: bad repository name")
		return
	}
	write := svc == svcReceive
	user, err := h.authorize(r, name, write)
	if err != nil {
		if errors.Is(err, plan9.ErrPerm) {
			httpError(w, http.StatusForbidden, errText(err))
		} else {
			w.Header().Set("WWW-Authenticate", `Basic realm="cheshire"`)
			httpError(w, http.StatusUnauthorized, errText(err))
		}
		h.o.Log.Info("git: refused", "repo", name, "user", user, "write", write, "err", err)
		return
	}
	repo, err := h.open(name)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, plan9.ErrNotFound) {
			code = http.StatusNotFound
		}
		httpError(w, code, errText(err))
		return
	}
	if c, ok := repo.Storer.(io.Closer); ok { // files it keeps open (Options.Open)
		defer c.Close()
	}
	w.Header().Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
	v2 := svc == svcUpload && wantsV2(r)
	if advert {
		w.Header().Set("Content-Type", "application/x-"+svc+"-advertisement")
		if v2 {
			advertiseV2(w)
			return
		}
		if err := advertise(w, repo, svc); err != nil {
			h.o.Log.Warn("git: advertisement", "repo", name, "err", err)
		}
		return
	}
	limit := h.o.MaxRequest
	if write {
		limit = h.o.MaxPack
	}
	body, err := requestBody(r, limit)
	if err != nil {
		httpError(w, http.StatusBadRequest, errText(err))
		return
	}
	defer body.Close()
	x := &exchange{ctx: r.Context(), h: h, w: w, body: newPktReader(body), repo: repo, name: name, user: user}
	switch {
	case write:
		err = x.receivePack()
	case v2:
		err = x.uploadPackV2()
	default:
		err = x.uploadPack()
	}
	if err != nil {
		h.o.Log.Info("git: "+svc[4:], "repo", name, "user", user, "err", err)
		if !x.wrote {
			httpError(w, http.StatusBadRequest, errText(err))
		}
	}
}

// validName reports whether name may name a repository: one path
// element, or, if o.Nested, several joined by slashes; none empty, "."
// or "..", nor holding a backslash or NUL.
func (h *handler) validName(name string) bool {
	elems := []string{name}
	if h.o.Nested {
		elems = strings.Split(name, "/")
	}
	for _, e := range elems {
		if e == "" || e == "." || e == ".." || strings.ContainsAny(e, "/\\\x00") {
			return false
		}
	}
	return true
}

// authorize applies o.Authorize, or its default when it is nil.
func (h *handler) authorize(r *http.Request, name string, write bool) (string, error) {
	if h.o.Authorize != nil {
		return h.o.Authorize(r, name, write)
	}
	if write {
		return "", fmt.Errorf("git: push not allowed: %w", plan9.ErrPerm)
	}
	return "", nil
}

func (h *handler) open(name string) (*gogit.Repository, error) {
	if h.o.Open == nil {
		return nil, fmt.Errorf("git: no repositories: %w", plan9.ErrNotFound)
	}
	repo, err := h.o.Open(name)
	if err == nil && repo == nil {
		err = fmt.Errorf("git: %s: %w", name, plan9.ErrNotFound)
	}
	return repo, err
}

// lock returns the mutex serializing reference updates to repository name.
func (h *handler) lock(name string) *sync.Mutex {
	m, _ := h.locks.LoadOrStore(name, new(sync.Mutex))
	return m.(*sync.Mutex)
}

// requestBody returns the body of r, decompressed if git sent it
// gzipped (it does so for large fetch requests), and failing with
// errTooBig once more than limit bytes have been read from it.
func requestBody(r *http.Request, limit int64) (io.ReadCloser, error) {
	var body io.ReadCloser = r.Body
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip", "x-gzip":
		z, err := gzip.NewReader(io.LimitReader(r.Body, limit+1))
		if err != nil {
			return nil, errors.New("git: bad gzip body")
		}
		body = z
	default:
		return nil, errors.New("git: unsupported content encoding")
	}
	return &limitedBody{r: body, n: limit}, nil
}

var errTooBig = errors.New("git: request body too large")

// limitedBody is an io.LimitReader that fails, rather than ends, at its limit.
type limitedBody struct {
	r io.ReadCloser
	n int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errTooBig
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.r.Close() }

// httpError answers with code and a one-line text body.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// errText is err's text on one line, starting with "git: ".
func errText(err error) string {
	s := strings.ReplaceAll(plan9.Errstr(err), "\n", " ")
	if !strings.HasPrefix(s, "git: ") {
		s = "git: " + s
	}
	return s
}
