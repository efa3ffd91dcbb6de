package modules_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/module"
	"cheshire/modules"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// gated is a test module whose Start waits until block is closed
// (ignoring its context, as a module that sleeps in its init would), and
// whose file "wait" blocks an open until the call's context ends.
type gated struct {
	name  string
	deps  []string
	block chan struct{} // nil: start at once

	started chan struct{} // a Start was called
	stopped chan struct{} // an instance was stopped
	waiting chan struct{} // an open of "wait" is waiting
	ended   chan error    // an open of "wait" ended, with why
}

func newGated(name string, block bool, deps ...string) *gated {
	g := &gated{name: name, deps: deps, started: make(chan struct{}, 16), stopped: make(chan struct{}, 16),
		waiting: make(chan struct{}, 16), ended: make(chan error, 16)}
	if block {
		g.block = make(chan struct{})
	}
	return g
}

func (g *gated) Manifest() module.Manifest {
	return module.Manifest{Name: g.name, Version: "1.0", Deps: g.deps}
}

func (g *gated) CheckConfig(cfg module.Config) error { return nil }

func (g *gated) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	g.started <- struct{}{}
	if g.block != nil {
		<-g.block
	}
	root := synth.NewDir("/", 0777)
	root.Add(synth.Static("hello", 0444, []byte("hello")))
	root.Add(synth.Snapshot("wait", 0444, func(ctx context.Context) ([]byte, error) {
		g.waiting <- struct{}{}
		<-ctx.Done()
		g.ended <- context.Cause(ctx)
		return nil, context.Cause(ctx)
	}))
	return &gatedInst{g: g, srv: synth.NewServer(root, synth.WithOwner("glenda"))}, nil
}

type gatedInst struct {
	g   *gated
	srv *synth.Server
}

func (i *gatedInst) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.srv.Attach(ctx, uname, aname, auth)
}

func (i *gatedInst) Stop(ctx context.Context) error {
	i.g.stopped <- struct{}{}
	return nil
}

// newManager is newEnv for modules of any kind, with options, without
// waiting for the boot's starts of packages.
func newManager(t *testing.T, o modules.Options, mods ...module.Module) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	defaults, err := plan9.ParseNS(strings.NewReader("mount '#modules' /modules\n"))
	if err != nil {
		t.Fatal(err)
	}
	nsm := ns.NewManager(ns.WithDefaults(defaults))
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	e := &env{t: t, ctx: ctx, nsm: nsm, dir: o.Dir}
	o.Owner, o.Namespace = "glenda", nsm
	mgr, err := modules.NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	e.mgr = mgr
	t.Cleanup(func() { mgr.Close(context.Background()) })
	for _, mod := range mods {
		if err := mgr.Add(mod, ""); err != nil {
			t.Fatal(err)
		}
	}
	nsm.Register("#modules", mgr.Files())
	if err := mgr.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitFor waits until cond holds, or fails the test when its context
// ends: for what happens in the manager's background (a restart's
// bookkeeping, a hot reload).
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	for !cond() {
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("waiting for %s: %v", what, e.ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// wait waits for ch, or fails the test when its context ends.
func (e *env) wait(ch <-chan struct{}, what string) {
	e.t.Helper()
	select {
	case <-ch:
	case <-e.ctx.Done():
		e.t.Fatalf("waiting for %s: %v", what, e.ctx.Err())
	}
}

// status returns key's value in name's status.
func (e *env) status(name, key string) string {
	e.t.Helper()
	for _, l := range strings.Split(e.read("/modules/"+name+"/status"), "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			return v
		}
	}
	return ""
}

// keep makes dir hold the packages of names, as loads in an earlier run
// would have left them.
func keep(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dir, n), 0700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n, "package"), []byte(n), 0600); err != nil {
			t.Fatal(err)
		}
	}
}

// loaderOf loads a package whose content is the name of one of mods.
func loaderOf(mods ...*gated) module.Loader {
	return func(ctx context.Context, name string, data []byte, source string) (module.Module, error) {
		for _, m := range mods {
			if m.name == string(data) {
				return m, nil
			}
		}
		return nil, errors.New("no such test package")
	}
}

// TestSlowStart: a package whose start blocks holds up neither the boot,
// nor /modules/ctl, nor the modules that do not need it; operations on
// its files wait for it; a stop cancels its start.
func TestSlowStart(t *testing.T) {
	t.Parallel()
	slow, fast := newGated("slow", true), newGated("fast", false)
	user := newGated("user", false, "slow")
	dir := t.TempDir()
	keep(t, dir, "slow", "user")
	e := newManager(t, modules.Options{Dir: dir, Loader: loaderOf(slow, user)}, fast)
	// Boot returned while slow's start is blocked.
	e.wait(slow.started, "slow started")
	e.wait(fast.started, "fast started")
	if s := e.state("slow"); s != "starting" {
		t.Errorf("slow after boot: %s, want starting", s)
	}
	// A namespace can mount it meanwhile: the attach does not wait.
	n, err := e.nsm.Namespace(e.ctx, "glenda")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Mount(e.ctx, "#slow", "/s", "", 0); err != nil {
		t.Errorf("mount of a starting module: %v", err)
	}
	// Other ctl writes go through while slow starts.
	for _, cmd := range []string{"stop fast", "start fast", "restart fast"} {
		if err := e.ctl("/modules/ctl", cmd); err != nil {
			t.Errorf("%s while slow starts: %v", cmd, err)
		}
	}
	// Those writes took the life-cycle lock, so the boot's pass that
	// marks the kept modules starting is over: slow's start may signal
	// before that pass reaches user.
	if s := e.state("user"); s != "starting" {
		t.Errorf("user (needs slow) after boot: %s, want starting", s)
	}
	for _, w := range [][2]string{{"/modules/slow/config", "lazy off\n"}, {"/modules/ctl", "reload slow"}} {
		if err := e.ctl(w[0], w[1]); err == nil || !strings.Contains(err.Error(), "is starting") {
			t.Errorf("write %q to %s while slow starts: %v, want a refusal", w[1], w[0], err)
		}
	}
	if got := e.read("/modules/fast/fs/hello"); got != "hello" {
		t.Errorf("fast/fs/hello = %q", got)
	}
	// A read of slow's files waits for its start.
	read := make(chan string, 1)
	go func() {
		root, _ := e.nsm.Attach(e.ctx, "glenda", "", nil)
		defer root.Clunk()
		var b strings.Builder
		for _, p := range []string{"/modules/slow/fs/hello", "/s/hello"} {
			s, err := testutil.ReadFile(e.ctx, root, p)
			if err != nil {
				s = err.Error()
			}
			b.WriteString(s)
		}
		read <- b.String()
	}()
	close(slow.block)
	if got := <-read; got != "hellohello" {
		t.Errorf("reads during the start: %q, want hello twice", got)
	}
	e.wait(e.mgr.Booted(), "the boot")
	for _, n := range []string{"slow", "user"} {
		if s := e.state(n); s != "running" {
			t.Errorf("%s after the start: %s", n, s)
		}
	}

	// A start under way is cancelled by a stop; the instance that comes
	// later is stopped.
	slow.block = make(chan struct{})
	if err := e.ctl("/modules/ctl", "stop slow"); err != nil {
		t.Fatal(err)
	}
	e.wait(slow.stopped, "slow stopped")
	e.wait(user.stopped, "user stopped")
	started := make(chan error, 1)
	go func() { started <- e.ctl("/modules/ctl", "start slow") }()
	e.wait(slow.started, "slow started")
	if err := e.ctl("/modules/ctl", "stop slow"); err != nil {
		t.Fatalf("stop during a start: %v", err)
	}
	if err := <-started; err == nil || !strings.Contains(err.Error(), "stopped while starting") {
		t.Errorf("start cancelled by a stop: %v", err)
	}
	if s := e.state("slow"); s != "stopped" {
		t.Errorf("after a stop during the start: %s", s)
	}
	close(slow.block)
	e.wait(slow.stopped, "slow stopped") // the late instance
}

// TestStartTimeout: a start that outlasts the start timeout fails the
// module, and the instance it makes later is stopped.
func TestStartTimeout(t *testing.T) {
	t.Parallel()
	slow := newGated("slow", true)
	e := newManager(t, modules.Options{StartTimeout: time.Millisecond}, slow)
	e.wait(e.mgr.Booted(), "the boot")
	if s := e.state("slow"); s != "failed" {
		t.Fatalf("state %s, want failed", s)
	}
	if got := e.status("slow", "error"); got != "module slow: start: not started within 1ms" {
		t.Errorf("error %q", got)
	}
	close(slow.block)
	e.wait(slow.stopped, "slow stopped")
}

// TestStopEndsCalls: a stop ends the calls in flight at once, with
// "module stopped", instead of waiting for them.
func TestStopEndsCalls(t *testing.T) {
	t.Parallel()
	g := newGated("g", false)
	e := newManager(t, modules.Options{}, g)
	e.wait(e.mgr.Booted(), "the boot")
	got := make(chan error, 1)
	go func() {
		_, err := testutil.WalkOpen(e.ctx, e.root("g"), "wait", styx.OREAD)
		got <- err
	}()
	e.wait(g.waiting, "g waiting")
	if err := e.ctl("/modules/ctl", "stop g"); err != nil {
		t.Fatal(err)
	}
	// The call ended before the stop returned.
	select {
	case err := <-g.ended:
		if !errors.Is(err, plan9.ErrModuleStopped) {
			t.Errorf("the call's context ended with %v", err)
		}
	default:
		t.Error("stop returned with the call still in flight")
	}
	if err := <-got; !errors.Is(err, plan9.ErrModuleStopped) {
		t.Errorf("open during a stop: %v, want module stopped", err)
	}
}

// TestBackoffReset: failures in a row count up, a run of RestartReset
// forgets them, and so does a new configuration.
func TestBackoffReset(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	rec := &recorder{}
	s := newStore("kv", rec)
	e := newManager(t, modules.Options{Now: clock, RestartReset: 5 * time.Minute}, s)
	e.wait(e.mgr.Booted(), "the boot")
	fail := func(want string) {
		t.Helper()
		(*s.fail.Load())(errors.New("boom"))
		e.waitFor("failures "+want, func() bool { return e.status("kv", "failures") == want })
		if err := e.ctl("/modules/ctl", "restart kv"); err != nil {
			t.Fatal(err)
		}
	}
	fail("1")
	advance(time.Minute)
	fail("2")
	advance(5 * time.Minute)
	fail("1")
	if err := e.ctl("/modules/kv/config", "greeting bonjour\n"); err != nil {
		t.Fatal(err)
	}
	if got := e.status("kv", "failures"); got != "0" {
		t.Errorf("failures after a new config: %s, want 0", got)
	}
}

// endless is a test module with files that declare one length and serve
// another: "liar" declares 100 bytes and serves one byte at any offset;
// "huge" declares 1 TiB; "stream" declares 0 and ignores offsets.
type endless struct{}

func (endless) Manifest() module.Manifest { return module.Manifest{Name: "endless", Version: "1"} }

func (endless) CheckConfig(cfg module.Config) error { return nil }

func (endless) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	return endlessInst{}, nil
}

type endlessInst struct{}

func (endlessInst) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return &endFile{}, nil
}

func (endlessInst) Stop(ctx context.Context) error { return nil }

// endFile is the root (name "") or one of the files.
type endFile struct{ name string }

var endLengths = map[string]uint64{"liar": 100, "huge": 1 << 40, "stream": 0}

func (f *endFile) Qid() styx.Qid {
	if f.name == "" {
		return styx.Qid{Type: styx.QTDIR}
	}
	return styx.Qid{Path: uint64(len(f.name))}
}

func (f *endFile) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	if len(names) == 0 {
		return nil, &endFile{name: f.name}, nil
	}
	if _, ok := endLengths[names[0]]; !ok || f.name != "" || len(names) > 1 {
		return nil, nil, plan9.ErrNotFound
	}
	nf := &endFile{name: names[0]}
	return []styx.Qid{nf.Qid()}, nf, nil
}

func (f *endFile) Open(ctx context.Context, mode uint8) (uint32, error) { return 0, nil }

func (f *endFile) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	return nil, 0, plan9.ErrPerm
}

func (f *endFile) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if f.name == "liar" {
		return copy(p, "x"), nil
	}
	return len(p), nil
}

func (f *endFile) ReadDir(ctx context.Context) ([]styx.Dir, error) { return nil, nil }

func (f *endFile) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrPerm
}

func (f *endFile) Stat(ctx context.Context) (styx.Dir, error) {
	return styx.Dir{Qid: f.Qid(), Name: f.name, Length: endLengths[f.name], Mode: 0444}, nil
}

func (f *endFile) Wstat(ctx context.Context, d styx.Dir) error { return plan9.ErrPerm }
func (f *endFile) Remove(ctx context.Context) error            { return plan9.ErrPerm }
func (f *endFile) Clunk() error                                { return nil }

// TestReadBounds: a module file's reads end at its declared length and at
// the module's maxread, however the module answers.
func TestReadBounds(t *testing.T) {
	t.Parallel()
	e := newManager(t, modules.Options{})
	if err := e.mgr.Add(endless{}, "maxread 1M\n"); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl("/modules/ctl", "start endless"); err != nil {
		t.Fatal(err)
	}
	// readAll reads name until a read gives 0 bytes: at the end of
	// what it has, as a 9P client does, or always at offset 0.
	readAll := func(name string, atZero bool) int64 {
		f, err := testutil.WalkOpen(e.ctx, e.root("endless"), name, styx.OREAD)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Clunk()
		buf := make([]byte, 8192)
		var total int64
		for {
			off := total
			if atZero {
				off = 0
			}
			n, err := f.Read(e.ctx, buf, off)
			if err != nil {
				t.Fatalf("read %s at %d: %v", name, off, err)
			}
			if n == 0 {
				return total
			}
			total += int64(n)
		}
	}
	for _, c := range []struct {
		name   string
		atZero bool
		want   int64
	}{
		{"liar", false, 100},
		{"huge", false, 1 << 20},
		{"stream", false, 1 << 20},
		{"stream", true, 1 << 20}, // bounded in bytes read, too
	} {
		if got := readAll(c.name, c.atZero); got != c.want {
			t.Errorf("read %s to its end (always at 0: %v): %d bytes, want %d", c.name, c.atZero, got, c.want)
		}
	}
}

// TestHotReloadRefusal: a hot reload that is refused shows in the
// module's status, and the old version keeps running.
func TestHotReloadRefusal(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	pkgs := map[string]module.Module{"v1": newStore("kv", rec)}
	loader := func(ctx context.Context, name string, data []byte, source string) (module.Module, error) {
		if m, ok := pkgs[strings.TrimSpace(string(data))]; ok {
			return m, nil
		}
		return nil, errors.New("package refused: not signed")
	}
	e := newManager(t, modules.Options{Loader: loader})
	src := filepath.Join(t.TempDir(), "kv.pkg")
	if err := os.WriteFile(src, []byte("v1\n"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl("/modules/ctl", "load kv host:"+src); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl("/modules/kv/config", "hotreload on 10ms\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("v2, unsigned\n"), 0600); err != nil {
		t.Fatal(err)
	}
	want := "hot reload refused: reload kv: package refused: not signed"
	e.waitFor("the refusal in status", func() bool { return e.status("kv", "error") == want })
	if s := e.state("kv"); s != "running" {
		t.Errorf("after a refused hot reload: %s", s)
	}
}

// TestLoadSlow: a load of a module whose start blocks holds up no other
// ctl write.
func TestLoadSlow(t *testing.T) {
	t.Parallel()
	slow := newGated("slow", true)
	fast := newGated("fast", false)
	e := newManager(t, modules.Options{Loader: loaderOf(slow)}, fast)
	e.wait(e.mgr.Booted(), "the boot")
	src := filepath.Join(t.TempDir(), "slow.pkg")
	if err := os.WriteFile(src, []byte("slow"), 0600); err != nil {
		t.Fatal(err)
	}
	loaded := make(chan error, 1)
	go func() { loaded <- e.ctl("/modules/ctl", "load slow host:"+src) }()
	select {
	case <-slow.started:
	case err := <-loaded:
		t.Fatalf("load ended before the start: %v", err)
	}
	if err := e.ctl("/modules/ctl", "restart fast"); err != nil {
		t.Errorf("restart fast during a slow load: %v", err)
	}
	if got := e.read("/modules/ctl"); !strings.Contains(got, "slow starting") {
		t.Errorf("/modules/ctl during a slow load:\n%s", got)
	}
	close(slow.block)
	if err := <-loaded; err != nil {
		t.Errorf("load: %v", err)
	}
}

// TestBootDoesNotWaitForPackages: a package kept from an earlier run
// whose loading (compiling) hangs holds up neither Boot nor the
// built-ins; Booted says when it is done, and it then runs.
func TestBootDoesNotWaitForPackages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "slow"), 0700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "slow", "package"), []byte("slow"), 0600); err != nil {
		t.Fatal(err)
	}
	slow := newGated("slow", false)
	loading, release := make(chan struct{}), make(chan struct{})
	load := loaderOf(slow)
	loader := func(ctx context.Context, name string, data []byte, source string) (module.Module, error) {
		close(loading)
		<-release
		return load(ctx, name, data, source)
	}
	builtin := newGated("builtin", false)
	e := newManager(t, modules.Options{Dir: dir, Loader: loader}, builtin) // returns: Boot did not wait
	e.wait(loading, "the load of the kept package")
	if got := e.read("/modules/ctl"); !strings.Contains(got, "builtin running") {
		t.Errorf("/modules/ctl while a package loads:\n%s", got)
	}
	select {
	case <-e.mgr.Booted():
		t.Fatal("booted while a package was still loading")
	default:
	}
	close(release)
	e.wait(e.mgr.Booted(), "the boot")
	if got := e.read("/modules/ctl"); !strings.Contains(got, "slow running") {
		t.Errorf("/modules/ctl after the boot:\n%s", got)
	}
}
