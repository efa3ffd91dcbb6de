package ca

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/styx"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a CA served through styx over loopback, attached as its owner.
type env struct {
	t    *testing.T
	ctx  context.Context
	ca   *CA
	root *styx.Fid
	tmp  string // scratch directory for files given to commands
}

const owner = "glenda"

func openCA(t *testing.T, dir string, now func() time.Time) *CA {
	t.Helper()
	c, err := Open(dir, Options{Name: "test", Owner: owner, Now: now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return c
}

// serve serves c's files and attaches as the owner.
func serve(t *testing.T, c *CA) *env {
	t.Helper()
	// The test's own context: a budget of seconds here failed a
	// loaded machine's run of the whole suite (TestCtlAllOrNone).
	ctx := t.Context()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &styx.Server{Attacher: c.Files()}
	go srv.Serve(ctx, ln)
	t.Cleanup(func() { srv.Close() })
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := styx.NewClient(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	root, err := cl.Attach(ctx, nil, owner, "")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, ca: c, root: root, tmp: t.TempDir()}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return serve(t, openCA(t, t.TempDir(), nil))
}

// open walks to p and opens it.
func (e *env) open(p string, mode uint8) (*styx.Fid, error) {
	_, f, err := e.root.Walk(e.ctx, styx.SplitPath(p)...)
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
func (e *env) read(p string) (string, error) {
	f, err := e.open(p, styx.OREAD)
	if err != nil {
		return "", err
	}
	defer f.Clunk(e.ctx)
	b, err := f.ReadAll(e.ctx)
	return string(b), err
}

func (e *env) mustRead(p string) string {
	e.t.Helper()
	s, err := e.read(p)
	if err != nil {
		e.t.Fatalf("read %s: %v", p, err)
	}
	return s
}

// write writes data to p in one open, truncating it, and clunks.
func (e *env) write(p string, data string) error {
	f, err := e.open(p, styx.OWRITE|styx.OTRUNC)
	if err != nil {
		return err
	}
	_, werr := f.WriteAt(e.ctx, []byte(data), 0)
	cerr := f.Clunk(e.ctx)
	return errors.Join(werr, cerr)
}

// ctl writes a line to ctl.
func (e *env) ctl(line string) error { return e.write("ctl", line) }

func (e *env) mustCtl(line string) {
	e.t.Helper()
	if err := e.ctl(line); err != nil {
		e.t.Fatalf("ctl %q: %v", line, err)
	}
}

// save copies the file p of the tree to the scratch directory under name.
func (e *env) save(p, name string) string {
	e.t.Helper()
	out := filepath.Join(e.tmp, name)
	if err := os.WriteFile(out, []byte(e.mustRead(p)), 0600); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// info returns the value of key in certs/NAME/info.
func (e *env) info(name, key string) string {
	e.t.Helper()
	for line := range strings.SplitSeq(e.mustRead("certs/"+name+"/info"), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			return v
		}
	}
	e.t.Fatalf("certs/%s/info has no %s", name, key)
	return ""
}

// run runs a program with a deadline and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}
