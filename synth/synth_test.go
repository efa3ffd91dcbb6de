package synth_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/styx"
	"cheshire/synth"
)

// epoch is the pinned clock of the tests.
var epoch = time.Unix(123456789, 0)

func pinned() time.Time { return epoch }

// env is a synth.Server served by a styx.Server on 127.0.0.1 with a
// client connected to it.
type env struct {
	t   *testing.T
	ctx context.Context
	c   *styx.Client
}

func newEnv(t *testing.T, s *synth.Server) *env {
	t.Helper()
	// The test's own context: a budget of seconds here failed a
	// loaded machine's run of the whole suite (TestCtlAllOrNone).
	ctx := t.Context()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &styx.Server{Attacher: s}
	go srv.Serve(ctx, ln)
	t.Cleanup(func() { srv.Close() })
	c, err := styx.Dial(ctx, "tcp!127.0.0.1!"+testutil.PortOf(ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &env{t: t, ctx: ctx, c: c}
}

// attach attaches as user.
func (e *env) attach(user string) *styx.Fid {
	e.t.Helper()
	f, err := e.c.Attach(e.ctx, nil, user, "")
	if err != nil {
		e.t.Fatalf("attach as %s: %v", user, err)
	}
	return f
}

// open walks from root to p and opens it with mode.
func (e *env) open(root *styx.Fid, p string, mode uint8) (*styx.Fid, error) {
	_, f, err := root.Walk(e.ctx, styx.SplitPath(p)...)
	if err != nil {
		return nil, err
	}
	if err := f.Open(e.ctx, mode); err != nil {
		f.Clunk(e.ctx)
		return nil, err
	}
	return f, nil
}

// read reads the whole of p.
func (e *env) read(root *styx.Fid, p string) (string, error) {
	f, err := e.open(root, p, styx.OREAD)
	if err != nil {
		return "", err
	}
	defer f.Clunk(e.ctx)
	b, err := f.ReadAll(e.ctx)
	return string(b), err
}

// write opens p with mode, writes data at 0 and clunks; the first error,
// the clunk's included, is returned.
func (e *env) write(root *styx.Fid, p string, mode uint8, data string) error {
	f, err := e.open(root, p, mode)
	if err != nil {
		return err
	}
	_, werr := f.WriteAt(e.ctx, []byte(data), 0)
	cerr := e.clunk(f)
	return errors.Join(werr, cerr)
}

// clunk clunks f, whose commit at clunk the caller checks.
//
// clunk clunks f; styx drops a request's fid reference before replying,
// so the Tclunk holds the last one and returns the commit's error.
func (e *env) clunk(f *styx.Fid) error {
	return f.Clunk(e.ctx)
}

// stat stats p.
func (e *env) stat(root *styx.Fid, p string) (styx.Dir, error) {
	_, f, err := root.Walk(e.ctx, styx.SplitPath(p)...)
	if err != nil {
		return styx.Dir{}, err
	}
	defer f.Clunk(e.ctx)
	return f.Stat(e.ctx)
}

// errText is err's text, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
