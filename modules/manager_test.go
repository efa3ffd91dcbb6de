package modules_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// recorder notes the order of starts and stops.
type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.evs = append(r.evs, s)
	r.mu.Unlock()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

// store is a test module: a key-value store whose instance keeps writes
// in memory and hands them to the module only when it stops. A write
// answered after that hand-over would be lost, so it tests the drain.
type store struct {
	name string
	deps []string
	rec  *recorder
	lazy bool

	mu      sync.Mutex
	saved   map[string]string
	fail    atomic.Pointer[func(error)]
	changed atomic.Pointer[func(op, path, newPath string)] // the instance's env.Changed
}

func newStore(name string, rec *recorder, deps ...string) *store {
	return &store{name: name, deps: deps, rec: rec, saved: map[string]string{}}
}

func (s *store) Manifest() module.Manifest {
	return module.Manifest{Name: s.name, Version: "1.0", Deps: s.deps, Lazy: s.lazy}
}

func (s *store) CheckConfig(cfg module.Config) error {
	for _, e := range cfg.Entries {
		if e.Key != "greeting" || len(e.Args) != 1 {
			return e.Errorf("want greeting WORD")
		}
	}
	return nil
}

func (s *store) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	s.rec.add("start " + s.name)
	s.mu.Lock()
	inst := &storeInst{s: s, kv: map[string]string{}}
	for k, v := range s.saved {
		inst.kv[k] = v
	}
	s.mu.Unlock()
	f := env.Fail
	s.fail.Store(&f)
	c := env.Changed
	s.changed.Store(&c)
	greeting := "hello"
	if a, ok := env.Config.Get("greeting"); ok {
		greeting = a[0]
	}
	if greeting == "fail" {
		return nil, errors.New("listen 127.0.0.1:1: address already in use")
	}
	root := synth.NewDir("/", 0777)
	root.Add(synth.Static("greeting", 0444, []byte(greeting)))
	root.Add(synth.Ctl("put", 0666, []synth.Cmd{{Name: "put", Min: 2, Max: 2, Run: func(ctx context.Context, a []string) error {
		time.Sleep(500 * time.Microsecond) // a write takes a while, so reloads catch some in flight
		inst.mu.Lock()
		inst.kv[a[0]] = a[1]
		inst.mu.Unlock()
		return nil
	}}}, nil))
	root.Add(synth.String("all", 0444, func(ctx context.Context) string {
		inst.mu.Lock()
		defer inst.mu.Unlock()
		var b strings.Builder
		for k, v := range inst.kv {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
		return b.String()
	}))
	inst.srv = synth.NewServer(root, synth.WithOwner("glenda"))
	return inst, nil
}

type storeInst struct {
	s   *store
	srv *synth.Server
	mu  sync.Mutex
	kv  map[string]string
}

func (i *storeInst) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.srv.Attach(ctx, uname, aname, auth)
}

func (i *storeInst) Stop(ctx context.Context) error {
	i.s.rec.add("stop " + i.s.name)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.s.mu.Lock()
	defer i.s.mu.Unlock()
	i.s.saved = i.kv
	i.kv = map[string]string{} // a late write lands here and is lost
	return nil
}

type env struct {
	t    *testing.T
	ctx  context.Context
	mgr  *modules.Manager
	nsm  *ns.Manager
	rec  *recorder
	dir  string
	mods map[string]*store
}

func newEnv(t *testing.T, stores ...*store) *env {
	t.Helper()
	mods := make([]module.Module, len(stores))
	for i, s := range stores {
		mods[i] = s
	}
	e := newManager(t, modules.Options{}, mods...)
	e.mods = map[string]*store{}
	for _, s := range stores {
		e.mods[s.name] = s
	}
	e.wait(e.mgr.Booted(), "the boot")
	return e
}

func (e *env) root(name string) styx.File {
	e.t.Helper()
	a, err := e.mgr.Attacher(name)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := a.Attach(e.ctx, "glenda", "", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// ctl writes a line to /modules/ctl or /modules/NAME/ctl through the
// namespace, as a user would.
func (e *env) ctl(p, line string) error {
	root, err := e.nsm.Attach(e.ctx, "glenda", "", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer root.Clunk()
	return testutil.WriteFile(e.ctx, root, p, line)
}

func (e *env) read(p string) string {
	e.t.Helper()
	root, err := e.nsm.Attach(e.ctx, "glenda", "", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer root.Clunk()
	s, err := testutil.ReadFile(e.ctx, root, p)
	if err != nil {
		e.t.Fatalf("read %s: %v", p, err)
	}
	return s
}

func (e *env) state(name string) string {
	e.t.Helper()
	for _, l := range strings.Split(e.read("/modules/"+name+"/status"), "\n") {
		if v, ok := strings.CutPrefix(l, "state "); ok {
			return v
		}
	}
	e.t.Fatalf("no state in %s/status", name)
	return ""
}

func TestDependencyOrder(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, newStore("a", rec), newStore("b", rec, "a"), newStore("c", rec, "b"), newStore("d", rec))
	got := rec.take()
	if ia, ib, ic := slices.Index(got, "start a"), slices.Index(got, "start b"), slices.Index(got, "start c"); ia < 0 || ib < ia || ic < ib {
		t.Fatalf("boot order %q: want a before b before c", got)
	}
	if err := e.ctl("/modules/ctl", "stop a"); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); !slices.Equal(got, []string{"stop c", "stop b", "stop a"}) {
		t.Errorf("stop a: order %q, want [stop c stop b stop a]", got)
	}
	for _, n := range []string{"a", "b", "c"} {
		if s := e.state(n); s != "stopped" {
			t.Errorf("%s: state %s, want stopped", n, s)
		}
	}
	if s := e.state("d"); s != "running" {
		t.Errorf("d: state %s, want running (it needs nothing stopped)", s)
	}
	if deps := e.read("/modules/b/deps"); deps != "needs a stopped\nneededby c stopped\n" {
		t.Errorf("b/deps = %q", deps)
	}
	// Operations on a stopped module fail at once.
	_, err := testutil.ReadFile(e.ctx, e.root("d"), "greeting")
	if err != nil {
		t.Fatal(err)
	}
	c := e.root("c")
	start := time.Now()
	if _, err := testutil.ReadFile(e.ctx, c, "greeting"); !errors.Is(err, plan9.ErrModuleStopped) {
		t.Errorf("read of a stopped module: %v, want %q", err, plan9.ErrModuleStopped)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failing took %v", d)
	}
	if err := e.ctl("/modules/ctl", "start a"); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); !slices.Equal(got, []string{"start a", "start b", "start c"}) {
		t.Errorf("start a: order %q, want a then the suspended b and c", got)
	}
	// Starting c starts what it needs.
	e.ctl("/modules/ctl", "stop a")
	rec.take()
	if err := e.ctl("/modules/c/ctl", "start"); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); !slices.Equal(got, []string{"start a", "start b", "start c"}) {
		t.Errorf("start c: order %q, want its needs first", got)
	}
	if err := e.ctl("/modules/ctl", "frob a"); err == nil || !strings.Contains(err.Error(), "unknown control message") {
		t.Errorf("frob: %v", err)
	}
	if err := e.ctl("/modules/ctl", "stop nosuch"); err == nil || !strings.Contains(err.Error(), "no such module") {
		t.Errorf("stop nosuch: %v", err)
	}
	if err := e.ctl("/modules/ctl", "unload a"); err == nil || !strings.Contains(err.Error(), "built in") {
		t.Errorf("unload a: %v", err)
	}
}

// TestStoppedDisappears: a stopped module's mount point leaves the
// namespace's listings, and walks into it fail with "module stopped".
func TestStoppedDisappears(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, newStore("a", rec))
	n, err := e.nsm.Namespace(e.ctx, "glenda")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Mount(e.ctx, "#a", "/a", "", 0); err != nil {
		t.Fatal(err)
	}
	ls := func(p string) []string {
		root, _ := e.nsm.Attach(e.ctx, "glenda", "", nil)
		defer root.Clunk()
		f, err := testutil.WalkOpen(e.ctx, root, p, styx.OREAD)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Clunk()
		ds, err := f.ReadDir(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range ds {
			names = append(names, d.Name)
		}
		slices.Sort(names)
		return names
	}
	if got := ls("/"); !slices.Contains(got, "a") {
		t.Fatalf("ls / = %q, want a", got)
	}
	if got := ls("/modules/a"); !slices.Contains(got, "fs") {
		t.Errorf("ls /modules/a = %q, want fs", got)
	}
	if got := e.read("/a/greeting"); got != "hello" {
		t.Errorf("/a/greeting = %q", got)
	}
	if got := e.read("/modules/a/fs/greeting"); got != "hello" {
		t.Errorf("/modules/a/fs/greeting = %q", got)
	}
	e.ctl("/modules/ctl", "stop a")
	if got := ls("/"); slices.Contains(got, "a") {
		t.Errorf("ls / = %q with a stopped", got)
	}
	root, _ := e.nsm.Attach(e.ctx, "glenda", "", nil)
	defer root.Clunk()
	for _, p := range []string{"/a/greeting", "/modules/a/fs/greeting"} {
		if _, err := testutil.ReadFile(e.ctx, root, p); err == nil || !strings.Contains(err.Error(), "module stopped") {
			t.Errorf("read %s while stopped: %v, want module stopped", p, err)
		}
	}
	e.ctl("/modules/ctl", "start a")
	if got := e.read("/a/greeting"); got != "hello" {
		t.Errorf("/a/greeting after start = %q", got)
	}
}

// TestReloadKeepsOpenFilesAndWrites: files held open across reloads
// keep working, and no answered write is lost while reloads happen under
// a write load.
func TestReloadKeepsOpenFilesAndWrites(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, newStore("kv", rec))
	root := e.root("kv")
	held, err := testutil.WalkOpen(e.ctx, root, "greeting", styx.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Clunk()

	var acked sync.Map
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, _ := e.mgr.Attacher("kv")
			r, err := a.Attach(e.ctx, "glenda", "", nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Clunk()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%d", w, i)
				if err := testutil.WriteFile(e.ctx, r, "put", "put "+k+" v"); err == nil {
					acked.Store(k, true)
				}
			}
		}()
	}
	for range 5 {
		time.Sleep(20 * time.Millisecond)
		if err := e.ctl("/modules/ctl", "reload kv"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		n, err := held.Read(e.ctx, buf, 0)
		if err != nil || string(buf[:n]) != "hello" {
			t.Fatalf("read of a file held open across reload: %q, %v", buf[:n], err)
		}
	}
	close(stop)
	wg.Wait()
	all, err := testutil.ReadFile(e.ctx, root, "all")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(all, "\n") {
		k, _, _ := strings.Cut(l, "=")
		have[k] = true
	}
	count, lost := 0, 0
	acked.Range(func(k, _ any) bool {
		count++
		if !have[k.(string)] {
			lost++
		}
		return true
	})
	if count == 0 || lost > 0 {
		t.Errorf("%d answered writes, %d lost across 5 reloads", count, lost)
	}
	if st := e.read("/modules/kv/status"); !strings.Contains(st, "restarts 5\n") {
		t.Errorf("status after 5 reloads:\n%s", st)
	}
	t.Logf("%d answered writes across 5 reloads, none lost", count)
}

func TestConfig(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, newStore("kv", rec))
	if err := e.ctl("/modules/kv/config", "# a comment\ngreeting\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad config: %v, want an error naming line 2", err)
	}
	if got := e.read("/modules/kv/fs/greeting"); got != "hello" {
		t.Errorf("after a refused config: %q", got)
	}
	if err := e.ctl("/modules/kv/config", "lazy maybe\n"); err == nil || !strings.Contains(err.Error(), "lazy on|off") {
		t.Errorf("bad manager key: %v", err)
	}
	if err := e.ctl("/modules/kv/config", "greeting bonjour\nrestart on-failure\n"); err != nil {
		t.Fatal(err)
	}
	if got := e.read("/modules/kv/fs/greeting"); got != "bonjour" {
		t.Errorf("after config: %q, want bonjour", got)
	}
	if got := e.read("/modules/kv/config"); got != "greeting bonjour\nrestart on-failure\n" {
		t.Errorf("config reads %q", got)
	}
	if st := e.read("/modules/kv/status"); !strings.Contains(st, "restart-policy on-failure") {
		t.Errorf("status:\n%s", st)
	}
}

func TestLazyAndFailure(t *testing.T) {
	rec := &recorder{}
	lazy := newStore("lazy", rec)
	lazy.lazy = true
	e := newEnv(t, lazy)
	if s := e.state("lazy"); s != "stopped" {
		t.Fatalf("lazy module after boot: %s", s)
	}
	if got := e.read("/modules/lazy/fs/greeting"); got != "hello" {
		t.Errorf("first read of a lazy module: %q", got)
	}
	if s := e.state("lazy"); s != "running" {
		t.Errorf("lazy module after a walk into it: %s", s)
	}
	(*lazy.fail.Load())(errors.New("boom"))
	if s := e.state("lazy"); s != "failed" {
		t.Errorf("after Fail: %s", s)
	}
	if st := e.read("/modules/lazy/status"); !strings.Contains(st, "error boom") {
		t.Errorf("status:\n%s", st)
	}
	root, _ := e.nsm.Attach(e.ctx, "glenda", "", nil)
	defer root.Clunk()
	if _, err := testutil.ReadFile(e.ctx, root, "/modules/lazy/fs/greeting"); err == nil || err.Error() != "module stopped: module lazy failed: boom" {
		t.Errorf("read of a failed module: %v, want module stopped: module lazy failed: boom", err)
	}
	if err := e.ctl("/modules/ctl", "restart lazy"); err != nil {
		t.Fatal(err)
	}
	if got := e.read("/modules/lazy/fs/greeting"); got != "hello" {
		t.Errorf("after restart: %q", got)
	}
}

// TestConfigRefusedAtWrite: the write that carries a bad config line
// fails (a shell's echo sees it; it ignores close), with an error that
// names the line and maps to EINVAL; a line not yet ended is judged at
// the write that ends it, and the fid's clunk applies nothing.
func TestConfigRefusedAtWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newStore("kv", &recorder{}))
	root, err := e.nsm.Attach(e.ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Clunk()
	f, err := testutil.WalkOpen(e.ctx, root, "/modules/kv/config", styx.OWRITE|styx.OTRUNC)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(0)
	for _, w := range []string{"greeting bonjour\n", "bogus"} {
		n, err := f.Write(e.ctx, []byte(w), off)
		if err != nil {
			t.Fatalf("write %q: %v", w, err)
		}
		off += int64(n)
	}
	_, err = f.Write(e.ctx, []byte(" key\n"), off)
	if err == nil || !strings.Contains(err.Error(), "config line 2 (bogus)") {
		t.Fatalf("write ending a bad line: %v, want config line 2 refused", err)
	}
	if e := plan9.Errno(plan9.Errstr(err)); e != syscall.EINVAL {
		t.Errorf("errno of %q: %v, want EINVAL", err, e)
	}
	if _, err2 := f.Write(e.ctx, []byte("greeting salut\n"), off); err2 == nil {
		t.Errorf("write after a refused one succeeded")
	}
	if err2 := f.Clunk(); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("clunk after a refused write: %v, want %v", err2, err)
	}
	if got := e.read("/modules/kv/config"); got != "" {
		t.Errorf("config after a refused write: %q", got)
	}
	// A configuration judged whole passes its writes and applies at clunk.
	if err := e.ctl("/modules/kv/config", "greeting bonjour\n"); err != nil {
		t.Fatal(err)
	}
	if got := e.read("/modules/kv/fs/greeting"); got != "bonjour" {
		t.Errorf("after config: %q, want bonjour", got)
	}
}

// TestFailedStaysInSight: a module that failed to start stays listed
// (its mount point, /modules/ctl with its error, its status); a new
// configuration starts it again by itself, and its status then drops
// the old error.
func TestFailedStaysInSight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newStore("kv", &recorder{}))
	if err := e.ctl("/modules/ctl", "stop kv"); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl("/modules/kv/config", "greeting fail\n"); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl("/modules/ctl", "start kv"); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("start that fails: %v", err)
	}
	if s := e.state("kv"); s != "failed" {
		t.Fatalf("state %s, want failed", s)
	}
	if got := e.read("/modules/ctl"); !strings.Contains(got, "kv failed 1.0 ") || !strings.Contains(got, "address already in use") {
		t.Errorf("/modules/ctl:\n%s", got)
	}
	n, err := e.nsm.Namespace(e.ctx, "glenda")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Mount(e.ctx, "#kv", "/kv", "", 0); err != nil {
		t.Fatal(err)
	}
	root, _ := e.nsm.Attach(e.ctx, "glenda", "", nil)
	defer root.Clunk()
	f, err := testutil.WalkOpen(e.ctx, root, "/", styx.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := f.ReadDir(e.ctx)
	f.Clunk()
	if err != nil || !slices.ContainsFunc(ds, func(d styx.Dir) bool { return d.Name == "kv" }) {
		t.Errorf("ls / with kv failed: %v %v, want kv listed", ds, err)
	}
	if _, err := testutil.ReadFile(e.ctx, root, "/kv/greeting"); err == nil || !strings.Contains(err.Error(), "module kv failed: ") {
		t.Errorf("read of a failed module: %v", err)
	}
	if err := e.ctl("/modules/kv/config", "greeting hi\n"); err != nil {
		t.Fatalf("config that mends it: %v", err)
	}
	if s := e.state("kv"); s != "running" {
		t.Fatalf("after a new config: %s, want running", s)
	}
	if st := e.read("/modules/kv/status"); !strings.Contains(st, "error none\n") {
		t.Errorf("status of the running module keeps an old error:\n%s", st)
	}
	if got := e.read("/kv/greeting"); got != "hi" {
		t.Errorf("greeting %q", got)
	}
}

// TestErrnos: the refusals a user meets at /modules arrive, through
// FUSE and v9fs, as the errno that says what went wrong, not EIO.
func TestErrnos(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newStore("a", &recorder{}), newStore("b", &recorder{}, "a"))
	for _, c := range []struct {
		file, line string
		want       syscall.Errno
	}{
		{"/modules/ctl", "stop nosuch", syscall.ENOENT},
		{"/modules/ctl", "unload a", syscall.EACCES},
		{"/modules/ctl", "load c /x.pkg", syscall.EOPNOTSUPP}, // this manager has no loader
		{"/modules/ctl", "frob a", syscall.EINVAL},
		{"/modules/a/config", "greeting\n", syscall.EINVAL},
		{"/modules/a/config", "lazy maybe\n", syscall.EINVAL},
		{"/modules/trusted", "notakey\n", syscall.EINVAL},
	} {
		err := e.ctl(c.file, c.line)
		if err == nil {
			t.Errorf("%s < %q: no error", c.file, c.line)
			continue
		}
		if got := plan9.Errno(plan9.Errstr(err)); got != c.want {
			t.Errorf("%s < %q: %q maps to %v, want %v", c.file, c.line, err, got, c.want)
		}
	}
}
