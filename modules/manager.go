package modules

import (
	"cheshire/module"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/atomicfile"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// A State is where a module is in its life.
type State int

const (
	Stopped State = iota
	Starting
	Running
	Stopping
	Failed
)

func (s State) String() string {
	return [...]string{"stopped", "starting", "running", "stopping", "failed"}[s]
}

// Timeouts of the life cycle.
const (
	drainTimeout        = 10 * time.Second // longest wait for operations in flight before a stop
	defaultStartTimeout = 60 * time.Second // longest start of an instance, unless configured
	defaultResetAfter   = 5 * time.Minute  // a run this long forgets earlier failures
)

// validName is what a module may be called: it is a directory name in
// /modules and the data dir, and the spec "#NAME".
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// A Manager keeps the node's modules: it starts them in dependency order,
// routes their files' operations through a gate, and serves /modules.
//
// Lock order: Manager.tx (the life-cycle lock: one start, stop, reload,
// load, unload or configuration decided at a time; never held while a
// module's code starts, see start.go), then Manager.mu, then a module's
// mu.
type Manager struct {
	dir    string // DIR/modules
	owner  string
	nsm    *ns.Manager
	log    *slog.Logger
	loader module.Loader
	now    func() time.Time
	ctx    context.Context // ends when the manager closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // watchers, restarters and starts

	startTimeout time.Duration // longest start of an instance
	resetAfter   time.Duration // a run this long resets the restart back-off
	gens         atomic.Uint64 // instance generations, never reused
	booted       chan struct{} // closed when Boot's starts have ended

	tx chan struct{} // the life-cycle lock, a channel so waits can be cancelled

	mu      sync.Mutex
	mods    map[string]*managed // guarded by mu
	trusted []string           // guarded by mu: author keys allowed to sign packages (DIR/modules/trusted)
	always  []string           // author keys trusted whatever the file says (the node's own)

	saveMu sync.Mutex // serialises writes of the files kept in dir

	root *synth.Dir
}

// Options configure a Manager.
type Options struct {
	Dir       string       // where module state is kept (DIR/modules)
	Owner     string       // the node's owner: the only user who may control modules
	Namespace *ns.Manager  // where modules are registered as #NAME
	Log       *slog.Logger // the node log
	Loader    module.Loader       // turns package files into Modules; nil: packages cannot be loaded
	Trusted   []string     // author keys always trusted, besides those in DIR/modules/trusted
	Now       func() time.Time

	// StartTimeout bounds the start of one instance (default 1 min): a
	// module whose start takes longer is marked failed.
	StartTimeout time.Duration
	// RestartReset is how long a module must run for its earlier
	// failures to be forgotten by the restart back-off (default 5 min).
	RestartReset time.Duration
}

// NewManager returns a Manager with no modules.
func NewManager(o Options) (*Manager, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = defaultStartTimeout
	}
	if o.RestartReset <= 0 {
		o.RestartReset = defaultResetAfter
	}
	if err := os.MkdirAll(o.Dir, 0700); err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{dir: o.Dir, owner: o.Owner, nsm: o.Namespace, log: o.Log, loader: o.Loader, now: o.Now,
		ctx: ctx, cancel: cancel, tx: make(chan struct{}, 1), mods: map[string]*managed{},
		startTimeout: o.StartTimeout, resetAfter: o.RestartReset, booted: make(chan struct{})}
	m.always = o.Trusted
	if err := m.loadTrusted(); err != nil {
		cancel()
		return nil, err
	}
	m.root = m.tree()
	if m.nsm != nil {
		m.nsm.OnMade(m.mountIn)
	}
	return m, nil
}

// lock takes the life-cycle lock, or gives up when ctx ends.
func (m *Manager) lock(ctx context.Context) error {
	select {
	case m.tx <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("modules: waiting for another module operation: %w", ctx.Err())
	}
}

func (m *Manager) unlock() { <-m.tx }

// module is one module and its life.
type managed struct {
	mgr     *Manager
	name    string
	builtin bool
	log     *synth.Log
	slog    *slog.Logger
	dir     *synth.Dir // its directory in /modules

	mu        sync.Mutex
	mod       module.Module          // guarded by mu
	pkg       []byte          // guarded by mu: the package file, for loaded modules
	source    string          // guarded by mu
	cfg       module.Config          // guarded by mu: the whole config, manager keys too
	mc        managerConfig   // guarded by mu
	state     State           // guarded by mu
	reloading bool            // guarded by mu: waiters wait instead of failing
	inst      module.Instance        // guarded by mu
	gen       uint64          // guarded by mu: inst's generation
	ictx      context.Context // guarded by mu: inst's calls; ends when it stops
	icancel   context.CancelCauseFunc
	op        *startOp               // guarded by mu: the start under way, while starting
	inflight  int                    // guarded by mu
	drained   chan struct{}          // guarded by mu: closed when inflight drops to 0
	changed   chan struct{}          // guarded by mu: closed at every state change
	userStop  bool                   // guarded by mu: stopped by its owner; lazy starts don't undo it
	suspended bool                   // guarded by mu: stopped because a dependency stopped
	started   time.Time              // guarded by mu
	starts    int                    // guarded by mu
	lastErr   string                 // guarded by mu
	mounted   map[*ns.Namespace]bool // guarded by mu: namespaces given the module's mount
	watchStop context.CancelFunc     // guarded by mu: ends the hot-reload watcher
}

// setState changes the state and wakes whoever waits for a change.
// Called with mu held.
func (d *managed) setStateLocked(s State) {
	d.state = s
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *managed) manifest() module.Manifest {
	d.mu.Lock()
	defer d.mu.Unlock()
	mf := d.mod.Manifest()
	mf.Source = d.source
	return mf
}

// available reports whether the module's mount points are listed:
// running, about to be (starting, reloading, lazy), or failed (so that
// what failed stays in sight, its files answering with the reason).
func (d *managed) available() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case Running, Starting, Failed:
		return true
	case Stopping:
		return d.reloading
	case Stopped:
		return d.mc.lazy && !d.userStop && !d.suspended
	}
	return false
}

// acquire returns the running instance, counting the caller in flight
// until release. It waits through a start or a reload, starts a lazy
// module, and fails at once with "module stopped" otherwise.
func (d *managed) acquire(ctx context.Context) (module.Instance, uint64, context.Context, error) {
	d.mu.Lock()
	for {
		switch {
		case d.state == Running:
			d.inflight++
			inst, gen, ictx := d.inst, d.gen, d.ictx
			d.mu.Unlock()
			return inst, gen, ictx, nil
		case d.state == Starting || d.state == Stopping && d.reloading:
			ch := d.changed
			d.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, 0, nil, ctx.Err()
			}
			d.mu.Lock()
		case d.state == Stopped && d.mc.lazy && !d.userStop && !d.suspended:
			d.mu.Unlock()
			if err := d.mgr.Start(ctx, d.name); err != nil {
				return nil, 0, nil, fmt.Errorf("module %s: lazy start: %w", d.name, err)
			}
			d.mu.Lock()
		case d.state == Failed:
			err := d.failedErrLocked()
			d.mu.Unlock()
			return nil, 0, nil, err
		default:
			d.mu.Unlock()
			return nil, 0, nil, plan9.ErrModuleStopped
		}
	}
}

// failedErrLocked is the error of an operation on a failed module.
func (d *managed) failedErrLocked() error {
	return fmt.Errorf("%w: module %s failed: %s", plan9.ErrModuleStopped, d.name, d.lastErr)
}

// stoppedErr is the error of an operation on d while it does not run.
func (d *managed) stoppedErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == Failed {
		return d.failedErrLocked()
	}
	return plan9.ErrModuleStopped
}

// readLimit is the most a read of one of d's files may serve, through
// one fid; 0 for no limit.
func (d *managed) readLimit() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mc.maxRead
}

// tryAcquire is acquire without waiting or starting.
func (d *managed) tryAcquire() (module.Instance, uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != Running {
		return nil, 0, false
	}
	d.inflight++
	return d.inst, d.gen, true
}

func (d *managed) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	if d.inflight == 0 && d.drained != nil {
		close(d.drained)
		d.drained = nil
	}
}

// drainLocked waits, with mu held on entry and exit, until no operation
// is in flight or the drain timeout passes.
func (d *managed) drainLocked() {
	if d.inflight == 0 {
		return
	}
	ch := make(chan struct{})
	d.drained = ch
	d.mu.Unlock()
	t := time.NewTimer(drainTimeout)
	select {
	case <-ch:
	case <-t.C:
		d.slog.Warn("stopping with operations still in flight", "after", drainTimeout)
	}
	t.Stop()
	d.mu.Lock()
	if d.drained == ch {
		d.drained = nil
	}
}

// Add adds a built-in module. Its configuration is read from
// DIR/modules/NAME/config if that exists, else cfg.
func (m *Manager) Add(mod module.Module, cfg string) error {
	_, err := m.add(mod.Manifest().Name, mod, nil, "", cfg, true)
	return err
}

func (m *Manager) add(name string, mod module.Module, pkg []byte, source, defCfg string, builtin bool) (*managed, error) {
	if !validName.MatchString(name) {
		return nil, badName(name)
	}
	text := defCfg
	if b, err := os.ReadFile(filepath.Join(m.dir, name, "config")); err == nil {
		text = string(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("module %s: config: %w", name, err)
	}
	cfg, mc, _, err := m.checkConfig(mod, text, builtin)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", name, err)
	}
	d := &managed{mgr: m, name: name, builtin: builtin, mod: mod, pkg: pkg, source: source,
		cfg: cfg, mc: mc, changed: make(chan struct{}), log: synth.NewLog(0), mounted: map[*ns.Namespace]bool{}}
	d.slog = slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug}),
		m.log.Handler().WithAttrs([]slog.Attr{slog.String("module", name)})))
	if st, err := os.ReadFile(filepath.Join(m.dir, name, "state")); err == nil && strings.TrimSpace(string(st)) == "stopped" {
		d.userStop = true
	}
	m.mu.Lock()
	if _, dup := m.mods[name]; dup {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: module %s is already loaded (reload it, or unload it first)", plan9.ErrExist, name)
	}
	for _, dep := range mod.Manifest().Deps {
		if dep == name || m.dependsLocked(dep, name) {
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: module %s: dependency on %s would make a cycle", errInvalid, name, dep)
		}
	}
	m.mods[name] = d
	m.mu.Unlock()
	d.dir = m.moduleDir(d)
	if m.nsm != nil {
		m.nsm.RegisterPerNS("#"+name, func(n *ns.Namespace) styx.Attacher { return gate{m: d, ns: n} })
	}
	return d, nil
}

// dependsLocked reports whether a (transitively) depends on b.
func (m *Manager) dependsLocked(a, b string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(x string) bool {
		if seen[x] {
			return false
		}
		seen[x] = true
		d := m.mods[x]
		if d == nil {
			return false
		}
		for _, dep := range d.mod.Manifest().Deps {
			if dep == b || walk(dep) {
				return true
			}
		}
		return false
	}
	return walk(a)
}

func (m *Manager) get(name string) (*managed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.mods[name]
	if d == nil {
		return nil, fmt.Errorf("no such module %q", name)
	}
	return d, nil
}

// list returns the modules, sorted by name.
func (m *Manager) list() []*managed {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*managed, 0, len(m.mods))
	for _, d := range m.mods {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *managed) int { return strings.Compare(a.name, b.name) })
	return out
}

// Attacher returns module name's files as an Attacher for use outside a
// namespace (tests, or serving a module alone).
func (m *Manager) Attacher(name string) (styx.Attacher, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return gate{m: d}, nil
}

func (m *Manager) allRunning(names []string) bool {
	for _, n := range names {
		if !m.Running(n) {
			return false
		}
	}
	return true
}

// usersOf returns the modules that need name directly, sorted by name.
func (m *Manager) usersOf(name string) []*managed {
	var out []*managed
	for _, o := range m.list() {
		if slices.Contains(o.manifest().Deps, name) {
			out = append(out, o)
		}
	}
	return out
}

// dependents returns the modules that need name, directly or not,
// ordered so that each comes before anything it needs.
func (m *Manager) dependents(name string) []*managed {
	var order []*managed
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		// Users of n are visited (and listed) before n itself.
		for _, u := range m.usersOf(n) {
			if seen[u.name] {
				continue
			}
			seen[u.name] = true
			visit(u.name)
			order = append(order, u)
		}
	}
	visit(name)
	return order
}

// persist keeps d's package (if given) and config in DIR/modules/NAME:
// all of them or, if one cannot be written, none.
func (m *Manager) persist(d *managed, pkg []byte, cfgText string) {
	dir := filepath.Join(m.dir, d.name)
	files := map[string][]byte{"config": []byte(cfgText)}
	if pkg != nil {
		d.mu.Lock()
		src := d.source
		d.mu.Unlock()
		files["package"], files["source"] = pkg, []byte(src+"\n")
	}
	if err := m.save(dir, files); err != nil {
		d.slog.Error("keeping the module's package and config", "err", err)
	}
}

func (d *managed) saveStateLocked(s string) {
	if err := d.mgr.save(filepath.Join(d.mgr.dir, d.name), map[string][]byte{"state": []byte(s + "\n")}); err != nil {
		d.slog.Error("keeping the module's state", "err", err)
	}
}

// save writes files (name → content) into dir through atomicfile, as one
// unit: every file is staged before any replaces its old version.
func (m *Manager) save(dir string, files map[string][]byte) error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	var staged []*atomicfile.Staged
	for _, name := range slices.Sorted(maps.Keys(files)) {
		s, err := atomicfile.Stage(filepath.Join(dir, name), files[name], 0600)
		if err != nil {
			for _, s := range staged {
				s.Abort()
			}
			return err
		}
		staged = append(staged, s)
	}
	return atomicfile.CommitAll(staged)
}

// Load loads the package at source (a path in user's namespace, or on
// the host; "ns:" or "host:" in front says which) as module name and
// starts it unless it is lazy, waiting for the start without holding up
// other module operations.
func (m *Manager) Load(ctx context.Context, user, name, source string) error {
	if m.loader == nil {
		return fmt.Errorf("%w: this node cannot load packages", plan9.ErrNotSupported)
	}
	if !validName.MatchString(name) {
		return badName(name)
	}
	if _, err := m.get(name); err == nil {
		return fmt.Errorf("%w: module %s is already loaded (reload it, or unload it first)", plan9.ErrExist, name)
	}
	// Reading and compiling the package take no lock.
	source, err := m.resolveSource(ctx, user, source)
	if err != nil {
		return err
	}
	data, err := m.readSource(ctx, source)
	if err != nil {
		return err
	}
	mod, err := m.loader(ctx, name, data, source)
	if err != nil {
		return err
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	op, err := m.loadLocked(name, mod, data, source)
	m.unlock()
	if err != nil {
		return err
	}
	if err := op.wait(ctx); err != nil {
		return fmt.Errorf("loaded, but %w", err)
	}
	return nil
}

func (m *Manager) loadLocked(name string, mod module.Module, data []byte, source string) (*startOp, error) {
	d, err := m.addPackage(name, mod, data, source)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.userStop = false
	lazy := d.mc.lazy
	d.mu.Unlock()
	if lazy {
		return nil, nil
	}
	op, err := m.startLocked(name, nil)
	if err != nil {
		return nil, fmt.Errorf("loaded, but %w", err)
	}
	return op, nil
}

// loadBytes adds a package module without starting it.
func (m *Manager) loadBytes(ctx context.Context, name string, data []byte, source string) error {
	if !validName.MatchString(name) {
		return badName(name)
	}
	mod, err := m.loader(ctx, name, data, source)
	if err != nil {
		return err
	}
	_, err = m.addPackage(name, mod, data, source)
	return err
}

// addPackage adds mod, loaded from data, and keeps the package.
func (m *Manager) addPackage(name string, mod module.Module, data []byte, source string) (*managed, error) {
	d, err := m.add(name, mod, data, source, "", false)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	text := d.cfg.Text
	d.mu.Unlock()
	m.persist(d, data, text)
	m.watch(d)
	d.slog.Info("loaded", "source", source, "version", mod.Manifest().Version, "author", mod.Manifest().Author)
	return d, nil
}

// Unload stops name and forgets it. Built-in modules cannot be unloaded,
// nor modules that others need. Its config and data stay in the data
// dir, for a later load of the same name.
func (m *Manager) Unload(ctx context.Context, name string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	d, err := m.get(name)
	if err != nil {
		return err
	}
	if d.builtin {
		return fmt.Errorf("%w: module %s is built in: stop it instead", plan9.ErrPerm, name)
	}
	var users []string
	for _, u := range m.usersOf(name) {
		users = append(users, u.name)
	}
	if len(users) > 0 {
		return fmt.Errorf("%w: module %s is needed by %s: unload those first", errBusy, name, strings.Join(users, ", "))
	}
	if err := m.stopOne(ctx, d, true); err != nil {
		return err
	}
	d.mu.Lock()
	if d.watchStop != nil {
		d.watchStop()
		d.watchStop = nil
	}
	d.mu.Unlock()
	m.mu.Lock()
	delete(m.mods, name)
	m.mu.Unlock()
	if m.nsm != nil {
		m.nsm.Unregister("#" + name)
	}
	for _, f := range []string{"package", "source", "state"} {
		os.Remove(filepath.Join(m.dir, name, f))
	}
	d.log.Write([]byte("unloaded\n"))
	m.log.Info("module unloaded", "module", name)
	return nil
}

// Close stops every module, users before what they use (stopLocked
// stops a module's users first), and ends the watchers.
func (m *Manager) Close(ctx context.Context) {
	m.cancel()
	if err := m.lock(ctx); err == nil {
		for _, d := range m.list() {
			m.stopLocked(ctx, d.name, false)
		}
		m.unlock()
	}
	m.wg.Wait()
	for _, d := range m.list() {
		d.log.Close()
	}
}

// applyMount mounts a running module at its mount point in every live
// namespace that does not have it yet.
func (m *Manager) applyMount(d *managed) {
	if m.nsm == nil {
		return
	}
	for _, n := range m.nsm.Spaces() {
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		d.mountIn(ctx, n)
		cancel()
	}
}

// mountIn mounts every running module that has a mount point in the
// namespace n, just made.
func (m *Manager) mountIn(ctx context.Context, n *ns.Namespace) {
	for _, d := range m.list() {
		d.mu.Lock()
		running := d.state == Running
		d.mu.Unlock()
		if running {
			d.mountIn(ctx, n)
		}
	}
}

// mountIn mounts d at its mount point in n unless it is there already
// or d is a built-in (the default namespace names those).
func (d *managed) mountIn(ctx context.Context, n *ns.Namespace) {
	d.mu.Lock()
	point := d.mc.mount
	if point == "" && !d.builtin {
		point = d.mod.Manifest().Mount
	}
	d.mu.Unlock()
	spec := "#" + d.name
	if point == "" || d.builtin || hasMount(n, spec, point) {
		return
	}
	if err := n.Mount(ctx, spec, point, "", 0); err != nil {
		d.slog.Warn("mount", "user", n.User(), "at", point, "err", err)
	}
}

func hasMount(n *ns.Namespace, spec, point string) bool {
	for _, c := range n.Commands() {
		if c.Op == "mount" && len(c.Args) >= 2 && c.Args[0] == spec && c.Args[1] == point {
			return true
		}
	}
	return false
}

// Failure returns why module name failed, or nil if it is not failed.
func (m *Manager) Failure(name string) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != Failed {
		return nil
	}
	return errors.New(d.lastErr)
}

// Running reports whether module name runs.
func (m *Manager) Running(name string) bool {
	d, err := m.get(name)
	if err != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state == Running
}

// HTTP wraps a module's web handler so that it answers 503 Service
// Unavailable ("module stopped") while the module is not running, as its
// files fail while it is stopped.
func (m *Manager) HTTP(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.Running(name) {
			http.Error(w, "module "+name+" stopped", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}
