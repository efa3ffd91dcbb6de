// Package synth builds synthetic file servers: a tree of Dirs and Files,
// each File's behaviour given by a Handler, served through styx with Plan 9
// permission checks, stable qids and the usual kinds of file ready-made
// (static, snapshot, read-write committed at clunk, ctl, query, clone,
// events).
//
// A provider builds a tree with NewDir, NewFile and the ready-made files,
// gives its root to NewServer and hands the Server, an styx.Attacher, to the
// engine. The tree may change while it is served: Add and Remove take effect
// at once, and a Dir with a generator (SetGen) lists fresh children at every
// walk and directory read.
//
// Handlers get a context that is cancelled when the request is flushed;
// User returns the attaching user from it.
package synth

import (
	"context"
	"sync/atomic"
	"time"

	"cheshire/styx"
)

// A Server is a synthetic file tree served to attaching users. It
// implements styx.Attacher. Every attach walks from the same root; the
// user named in the attach is the user of all requests on its fids.
type Server struct {
	root   *Dir
	owner  string
	member func(user, group string) bool
	clock  func() time.Time
	paths  atomic.Uint64 // next qid.path
}

var _ styx.Attacher = (*Server)(nil)

// An Option configures a Server.
type Option func(*Server)

// WithOwner sets the owner and group of nodes that have none of their own
// (default "none").
func WithOwner(uid string) Option { return func(s *Server) { s.owner = uid } }

// WithMember sets the group membership test of permission checks. The
// default counts a user as a member of the group of its own name only.
func WithMember(member func(user, group string) bool) Option {
	return func(s *Server) { s.member = member }
}

// WithClock sets the clock of modification times (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.clock = now } }

// NewServer returns a Server of the tree at root. Nodes get their qid
// paths, and their mtimes if they have none, when they join the served
// tree: now for the nodes already under root, at Add for later ones. A
// tree is served by one Server only.
func NewServer(root *Dir, opts ...Option) *Server {
	s := &Server{root: root, owner: "none", clock: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.adopt(root)
	return s
}

// Root returns the root of the tree.
func (s *Server) Root() *Dir { return s.root }

// Attach gives uname the root of the tree. aname and auth are not
// checked: authentication, if any, is the engine's business.
func (s *Server) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return &fid{srv: s, user: uname, n: s.root}, nil
}

func (s *Server) now() time.Time { return s.clock() }

func (s *Server) nextPath() uint64 { return s.paths.Add(1) - 1 }

// allowed reports whether user may use n in open mode want.
func (s *Server) allowed(n Node, user string, want uint8) bool {
	a := n.base().attrs(s)
	return allowedAttrs(s, a, user, want)
}

// reqKey is the context key of a request's reqInfo.
type reqKey struct{}

// reqInfo is what synth puts in the context of every handler call.
type reqInfo struct {
	srv  *Server
	user string
}

func withReq(ctx context.Context, s *Server, user string) context.Context {
	return context.WithValue(ctx, reqKey{}, &reqInfo{srv: s, user: user})
}

func reqFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(reqKey{}).(*reqInfo)
	return ri
}

// User returns the attaching user of a request's context, or "" outside
// a request.
func User(ctx context.Context) string {
	if ri := reqFrom(ctx); ri != nil {
		return ri.user
	}
	return ""
}
