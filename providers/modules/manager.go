package modules

import (
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
	drainTimeout = 10 * time.Second // longest wait for operations in flight before a stop
	startTimeout = 60 * time.Second // longest start of an instance
)

// validName is what a module may be called: it is a directory name in
// /modules and the data dir, and the spec "#NAME".
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// A Manager keeps the node's modules: it starts them in dependency order,
// routes their files' operations through a gate, and serves /modules.
//
// Lock order: Manager.tx (the life-cycle lock: one start, stop, reload,
// load, unload or configuration at a time), then Manager.mu, then a
// module's mu.
type Manager struct {
	dir    string // DIR/modules
	owner  string
	nsm    *ns.Manager
	log    *slog.Logger
	loader Loader
	now    func() time.Time
	ctx    context.Context // ends when the manager closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // watchers and restarters

	tx chan struct{} // the life-cycle lock, a channel so waits can be cancelled

	mu      sync.Mutex
	mods    map[string]*module // guarded by mu
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
	Loader    Loader       // turns package files into Modules; nil: packages cannot be loaded
	Trusted   []string     // author keys always trusted, besides those in DIR/modules/trusted
	Now       func() time.Time
}

// NewManager returns a Manager with no modules.
func NewManager(o Options) (*Manager, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0700); err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{dir: o.Dir, owner: o.Owner, nsm: o.Namespace, log: o.Log, loader: o.Loader, now: o.Now,
		ctx: ctx, cancel: cancel, tx: make(chan struct{}, 1), mods: map[string]*module{}}
	m.always = o.Trusted
	if err := m.loadTrusted(); err != nil {
		cancel()
		return nil, err
	}
	m.root = m.tree()
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
type module struct {
	mgr     *Manager
	name    string
	builtin bool
	log     *synth.Log
	slog    *slog.Logger
	dir     *synth.Dir // its directory in /modules

	mu        sync.Mutex
	mod       Module                 // guarded by mu
	pkg       []byte                 // guarded by mu: the package file, for loaded modules
	source    string                 // guarded by mu
	cfg       Config                 // guarded by mu: the whole config, manager keys too
	mc        managerConfig          // guarded by mu
	state     State                  // guarded by mu
	reloading bool                   // guarded by mu: waiters wait instead of failing
	inst      Instance               // guarded by mu
	gen       uint64                 // guarded by mu: bumped at every start
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
func (d *module) setStateLocked(s State) {
	d.state = s
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *module) manifest() Manifest {
	d.mu.Lock()
	defer d.mu.Unlock()
	mf := d.mod.Manifest()
	mf.Source = d.source
	return mf
}

// available reports whether the module's files are there: running, or
// about to be (starting, reloading, lazy).
func (d *module) available() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case Running, Starting:
		return true
	case Stopping:
		return d.reloading
	case Stopped:
		return d.mc.lazy && !d.userStop && !d.suspended
	}
	return false
}

func (d *module) isLazyStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state == Stopped && d.mc.lazy
}

// acquire returns the running instance, counting the caller in flight
// until release. It waits through a start or a reload, starts a lazy
// module, and fails at once with "module stopped" otherwise.
func (d *module) acquire(ctx context.Context) (Instance, uint64, error) {
	d.mu.Lock()
	for {
		switch {
		case d.state == Running:
			d.inflight++
			inst, gen := d.inst, d.gen
			d.mu.Unlock()
			return inst, gen, nil
		case d.state == Starting || d.state == Stopping && d.reloading:
			ch := d.changed
			d.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
			d.mu.Lock()
		case d.state == Stopped && d.mc.lazy && !d.userStop && !d.suspended:
			d.mu.Unlock()
			if err := d.mgr.Start(ctx, d.name); err != nil {
				return nil, 0, fmt.Errorf("module %s: lazy start: %w", d.name, err)
			}
			d.mu.Lock()
		case d.state == Failed:
			err := fmt.Errorf("%w: module %s failed: %s", plan9.ErrModuleStopped, d.name, d.lastErr)
			d.mu.Unlock()
			return nil, 0, err
		default:
			d.mu.Unlock()
			return nil, 0, plan9.ErrModuleStopped
		}
	}
}

// tryAcquire is acquire without waiting or starting.
func (d *module) tryAcquire() (Instance, uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != Running {
		return nil, 0, false
	}
	d.inflight++
	return d.inst, d.gen, true
}

func (d *module) release() {
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
func (d *module) drainLocked() {
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
func (m *Manager) Add(mod Module, cfg string) error {
	_, err := m.add(mod.Manifest().Name, mod, nil, "", cfg, true)
	return err
}

func (m *Manager) add(name string, mod Module, pkg []byte, source, defCfg string, builtin bool) (*module, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("module name %q: want lower-case letters, digits, . _ - (at most 64)", name)
	}
	text := defCfg
	if b, err := os.ReadFile(filepath.Join(m.dir, name, "config")); err == nil {
		text = string(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("module %s: config: %w", name, err)
	}
	cfg, mc, _, err := m.checkConfig(mod, text)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", name, err)
	}
	d := &module{mgr: m, name: name, builtin: builtin, mod: mod, pkg: pkg, source: source,
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
		return nil, fmt.Errorf("module %s is already loaded (reload it, or unload it first)", name)
	}
	for _, dep := range mod.Manifest().Deps {
		if dep == name || m.dependsLocked(dep, name) {
			m.mu.Unlock()
			return nil, fmt.Errorf("module %s: dependency on %s would make a cycle", name, dep)
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

func (m *Manager) get(name string) (*module, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.mods[name]
	if d == nil {
		return nil, fmt.Errorf("no module %q", name)
	}
	return d, nil
}

// list returns the modules, sorted by name.
func (m *Manager) list() []*module {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*module, 0, len(m.mods))
	for _, d := range m.mods {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *module) int { return strings.Compare(a.name, b.name) })
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

// Boot loads the packages kept from earlier runs and starts every module
// that is neither lazy nor stopped by its owner, dependencies first. A
// module that fails is marked failed; the others go on.
func (m *Manager) Boot(ctx context.Context) error {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	for _, e := range ents {
		pkgFile := filepath.Join(m.dir, e.Name(), "package")
		data, err := os.ReadFile(pkgFile)
		if err != nil {
			continue
		}
		if _, err := m.get(e.Name()); err == nil {
			continue
		}
		src, _ := os.ReadFile(filepath.Join(m.dir, e.Name(), "source"))
		if err := m.loadBytes(ctx, e.Name(), data, strings.TrimSpace(string(src))); err != nil {
			m.log.Error("module not reloaded from the data dir", "module", e.Name(), "err", err)
		}
	}
	for _, d := range m.list() {
		d.mu.Lock()
		skip := d.userStop || d.mc.lazy || d.state == Running
		d.mu.Unlock()
		if skip {
			continue
		}
		if err := m.Start(ctx, d.name); err != nil {
			m.log.Error("module failed to start", "module", d.name, "err", err)
		}
	}
	return nil
}

// Start starts module name, starting its dependencies first, then brings
// back the modules that were suspended when a dependency stopped.
func (m *Manager) Start(ctx context.Context, name string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	if err := m.startLocked(ctx, name, nil); err != nil {
		return err
	}
	m.resumeLocked(ctx)
	return nil
}

// startLocked starts name and what it needs; path detects cycles.
func (m *Manager) startLocked(ctx context.Context, name string, path []string) error {
	if slices.Contains(path, name) {
		return fmt.Errorf("dependency cycle: %s", strings.Join(append(path, name), " → "))
	}
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	state, mod := d.state, d.mod
	d.mu.Unlock()
	if state == Running {
		return nil
	}
	for _, dep := range mod.Manifest().Deps {
		if _, err := m.get(dep); err != nil {
			return fmt.Errorf("module %s needs %s, which is not loaded", name, dep)
		}
		if err := m.startLocked(ctx, dep, append(path, name)); err != nil {
			return fmt.Errorf("module %s needs %s: %w", name, dep, err)
		}
	}
	return m.startOne(ctx, d)
}

// startOne starts d's instance under its current code and config.
func (m *Manager) startOne(ctx context.Context, d *module) error {
	d.mu.Lock()
	if d.state == Running {
		d.mu.Unlock()
		return nil
	}
	mod, cfg := d.mod, d.cfg
	d.setStateLocked(Starting)
	d.mu.Unlock()

	inst, err := m.startInstance(ctx, d, mod, cfg)

	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.lastErr = err.Error()
		d.setStateLocked(Failed)
		d.slog.Error("start failed", "err", err)
		return err
	}
	d.install(inst)
	d.userStop, d.suspended = false, false
	d.saveStateLocked("running")
	d.slog.Info("started", "version", mod.Manifest().Version)
	return nil
}

// install makes inst the running instance. Called with mu held.
func (d *module) install(inst Instance) {
	d.inst = inst
	d.gen++
	if d.starts > 0 {
		d.starts++
	} else {
		d.starts = 1
	}
	d.started = d.mgr.now()
	d.setStateLocked(Running)
	go d.mgr.applyMount(d)
}

func (m *Manager) startInstance(ctx context.Context, d *module, mod Module, cfg Config) (Instance, error) {
	modCfg, _ := splitConfig(cfg)
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var gen uint64
	d.mu.Lock()
	gen = d.gen + 1
	d.mu.Unlock()
	env := Env{
		Name:   d.name,
		Config: modCfg,
		Dir:    filepath.Join(m.dir, d.name, "data"),
		Log:    d.slog,
		Fail:   func(err error) { m.fail(d, gen, err) },
	}
	if m.nsm != nil {
		owner := m.owner
		env.Namespace = styx.AttachFunc(func(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
			return m.nsm.Attach(ctx, owner, aname, nil)
		})
	}
	inst, err := safeStart(ctx, mod, env)
	if err != nil {
		return nil, fmt.Errorf("module %s: start: %w", d.name, err)
	}
	return inst, nil
}

// safeStart runs mod.Start, turning a panic into an error.
func safeStart(ctx context.Context, mod Module, env Env) (inst Instance, err error) {
	defer func() {
		if r := recover(); r != nil {
			inst, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return mod.Start(ctx, env)
}

// fail marks d failed when its instance of generation gen reports it can
// no longer serve, and stops that instance once its calls are done.
func (m *Manager) fail(d *module, gen uint64, err error) {
	d.mu.Lock()
	if d.gen != gen || d.state != Running {
		d.mu.Unlock()
		return
	}
	inst := d.inst
	d.lastErr = err.Error()
	d.inst = nil
	d.setStateLocked(Failed)
	d.mu.Unlock()
	d.slog.Error("module failed", "err", err)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, drainTimeout)
		defer cancel()
		d.mu.Lock()
		d.drainLocked()
		d.mu.Unlock()
		if err := inst.Stop(ctx); err != nil {
			d.slog.Warn("stop after failure", "err", err)
		}
		m.restartLater(d, gen)
	}()
}

// restartLater restarts a failed module whose config says
// "restart on-failure", after a delay that doubles with each failure in
// a row (1 s to 1 min).
func (m *Manager) restartLater(d *module, gen uint64) {
	d.mu.Lock()
	policy, n := d.mc.restart, d.mc.failures
	d.mc.failures++
	d.mu.Unlock()
	if policy != "on-failure" {
		return
	}
	delay := time.Second << min(n, 6)
	if delay > time.Minute {
		delay = time.Minute
	}
	select {
	case <-time.After(delay):
	case <-m.ctx.Done():
		return
	}
	d.mu.Lock()
	still := d.state == Failed && d.gen == gen
	d.mu.Unlock()
	if !still {
		return
	}
	if err := m.Start(m.ctx, d.name); err != nil {
		d.slog.Error("restart after failure", "err", err)
	}
}

// resumeLocked starts the suspended modules whose dependencies run.
func (m *Manager) resumeLocked(ctx context.Context) {
	for again := true; again; {
		again = false
		for _, d := range m.list() {
			d.mu.Lock()
			sus, deps := d.suspended && d.state != Running, d.mod.Manifest().Deps
			d.mu.Unlock()
			if !sus || !m.allRunning(deps) {
				continue
			}
			if err := m.startOne(ctx, d); err != nil {
				d.slog.Error("resume after dependency came back", "err", err)
				continue
			}
			again = true
		}
	}
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
func (m *Manager) usersOf(name string) []*module {
	var out []*module
	for _, o := range m.list() {
		if slices.Contains(o.manifest().Deps, name) {
			out = append(out, o)
		}
	}
	return out
}

// dependents returns the modules that need name, directly or not,
// ordered so that each comes before anything it needs.
func (m *Manager) dependents(name string) []*module {
	var order []*module
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

// Stop stops module name: first the modules that need it (they are
// suspended, and come back when it starts again), then it. A module
// stopped by its owner stays stopped across node restarts.
func (m *Manager) Stop(ctx context.Context, name string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	return m.stopLocked(ctx, name, true)
}

func (m *Manager) stopLocked(ctx context.Context, name string, byUser bool) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	for _, u := range m.dependents(name) {
		u.mu.Lock()
		running := u.state == Running
		u.mu.Unlock()
		if !running {
			continue
		}
		if err := m.stopOne(ctx, u); err != nil {
			return err
		}
		u.mu.Lock()
		u.suspended = true
		u.mu.Unlock()
		u.slog.Info("suspended: a module it needs is stopping", "needs", name)
	}
	if err := m.stopOne(ctx, d); err != nil {
		return err
	}
	d.mu.Lock()
	if byUser {
		d.userStop, d.suspended = true, false
		d.saveStateLocked("stopped")
	}
	d.mu.Unlock()
	return nil
}

// stopOne drains and stops d's instance.
func (m *Manager) stopOne(ctx context.Context, d *module) error {
	d.mu.Lock()
	if d.state != Running {
		if d.state == Failed {
			d.setStateLocked(Stopped)
		}
		d.mu.Unlock()
		return nil
	}
	d.setStateLocked(Stopping)
	d.drainLocked()
	inst := d.inst
	d.inst = nil
	d.mu.Unlock()
	err := inst.Stop(ctx)
	d.mu.Lock()
	d.setStateLocked(Stopped)
	d.mu.Unlock()
	if err != nil {
		d.slog.Warn("stop", "err", err)
	}
	d.slog.Info("stopped")
	return nil
}

// Restart stops and starts name (and what needed it).
func (m *Manager) Restart(ctx context.Context, name string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	if err := m.stopLocked(ctx, name, false); err != nil {
		return err
	}
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.suspended = false
	d.mu.Unlock()
	if err := m.startLocked(ctx, name, nil); err != nil {
		return err
	}
	m.resumeLocked(ctx)
	return nil
}

// Reload replaces name's instance by one of its current code and static
// config (read again from DIR/modules/NAME/config), or, for a loaded
// package, of the package read again from its source. Operations wait
// while it happens and those in flight finish first, so none that was
// answered is lost. If the new instance does not start, the old code
// and config are started again and the error is returned.
func (m *Manager) Reload(ctx context.Context, name string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	mod, pkg, source, cfgText := d.mod, d.pkg, d.source, d.cfg.Text
	d.mu.Unlock()
	newMod, newPkg := mod, pkg
	if source != "" {
		data, err := m.readSource(ctx, source)
		if err != nil {
			return fmt.Errorf("reload %s: %w", name, err)
		}
		if !slices.Equal(data, pkg) {
			if newMod, err = m.loader(ctx, name, data, source); err != nil {
				return fmt.Errorf("reload %s: %w", name, err)
			}
			newPkg = data
		}
	}
	if b, err := os.ReadFile(filepath.Join(m.dir, name, "config")); err == nil {
		cfgText = string(b)
	}
	return m.replaceLocked(ctx, d, newMod, newPkg, cfgText, "reload")
}

// replaceLocked swaps d to newMod under config text, restarting its
// instance if it runs, with rollback on failure.
func (m *Manager) replaceLocked(ctx context.Context, d *module, newMod Module, newPkg []byte, text, why string) error {
	cfg, mc, _, err := m.checkConfig(newMod, text)
	if err != nil {
		return fmt.Errorf("%s %s: %w", why, d.name, err)
	}
	for _, dep := range newMod.Manifest().Deps {
		if _, err := m.get(dep); err != nil {
			return fmt.Errorf("%s %s: needs %s, which is not loaded", why, d.name, dep)
		}
	}
	d.mu.Lock()
	oldMod, oldPkg, oldCfg, oldMC := d.mod, d.pkg, d.cfg, d.mc
	if d.state != Running {
		d.mod, d.pkg, d.cfg, d.mc = newMod, newPkg, cfg, mergeMC(mc, oldMC)
		d.mu.Unlock()
		m.persist(d, newPkg, text)
		d.slog.Info(why+": applied; takes effect at the next start", "version", newMod.Manifest().Version)
		m.watch(d)
		return nil
	}
	d.reloading = true
	d.setStateLocked(Stopping)
	d.drainLocked()
	old := d.inst
	d.inst = nil
	d.mu.Unlock()
	if err := old.Stop(ctx); err != nil {
		d.slog.Warn(why+": stopping the old instance", "err", err)
	}
	inst, err := m.startInstance(ctx, d, newMod, cfg)
	if err != nil {
		d.slog.Error(why+": new instance failed; starting the old one again", "err", err)
		back, berr := m.startInstance(ctx, d, oldMod, oldCfg)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.reloading = false
		if berr != nil {
			d.lastErr = berr.Error()
			d.setStateLocked(Failed)
			return fmt.Errorf("%s %s: %w; and the old version failed too: %v", why, d.name, err, berr)
		}
		d.mod, d.pkg, d.cfg, d.mc = oldMod, oldPkg, oldCfg, oldMC
		d.install(back)
		return fmt.Errorf("%s %s refused: %w", why, d.name, err)
	}
	d.mu.Lock()
	d.reloading = false
	d.mod, d.pkg, d.cfg, d.mc = newMod, newPkg, cfg, mergeMC(mc, oldMC)
	d.install(inst)
	d.mu.Unlock()
	m.persist(d, newPkg, text)
	m.watch(d)
	d.slog.Info(why+": done", "version", newMod.Manifest().Version)
	return nil
}

// SetConfig validates text as name's whole new configuration and applies
// it: in place if only the manager's keys changed or the instance can
// reconfigure itself, else by restarting the instance (drained first). A
// refused configuration changes nothing.
func (m *Manager) SetConfig(ctx context.Context, name, text string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	mod, pkg, inst, running, oldMC := d.mod, d.pkg, d.inst, d.state == Running, d.mc
	oldModCfg, _ := splitConfig(d.cfg)
	d.mu.Unlock()
	cfg, mc, _, err := m.checkConfig(mod, text)
	if err != nil {
		return err
	}
	modCfg, _ := splitConfig(cfg)
	same := slices.EqualFunc(oldModCfg.Entries, modCfg.Entries, func(a, b ConfigEntry) bool {
		return a.Key == b.Key && slices.Equal(a.Args, b.Args)
	})
	if running && !same {
		if r, ok := inst.(Reconfigurer); ok {
			if err := r.Reconfigure(ctx, modCfg); err != nil {
				return fmt.Errorf("config refused: %w", err)
			}
		} else {
			return m.replaceLocked(ctx, d, mod, pkg, text, "config")
		}
	}
	d.mu.Lock()
	d.cfg, d.mc = cfg, mergeMC(mc, oldMC)
	d.mu.Unlock()
	m.persist(d, nil, text)
	m.watch(d)
	if running {
		m.applyMount(d)
	}
	d.slog.Info("config applied")
	return nil
}

// persist keeps d's package (if given) and config in DIR/modules/NAME:
// all of them or, if one cannot be written, none.
func (m *Manager) persist(d *module, pkg []byte, cfgText string) {
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

func (d *module) saveStateLocked(s string) {
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
// starts it unless it is lazy.
func (m *Manager) Load(ctx context.Context, user, name, source string) error {
	if m.loader == nil {
		return errors.New("this node cannot load packages")
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	if _, err := m.get(name); err == nil {
		return fmt.Errorf("module %s is already loaded (reload it, or unload it first)", name)
	}
	source, err := m.resolveSource(ctx, user, source)
	if err != nil {
		return err
	}
	data, err := m.readSource(ctx, source)
	if err != nil {
		return err
	}
	if err := m.loadBytes(ctx, name, data, source); err != nil {
		return err
	}
	d, _ := m.get(name)
	d.mu.Lock()
	d.userStop = false
	lazy := d.mc.lazy
	d.mu.Unlock()
	if !lazy {
		if err := m.startLocked(ctx, name, nil); err != nil {
			return fmt.Errorf("loaded, but %w", err)
		}
	}
	return nil
}

// loadBytes adds a package module without starting it.
func (m *Manager) loadBytes(ctx context.Context, name string, data []byte, source string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("module name %q: want lower-case letters, digits, . _ - (at most 64)", name)
	}
	mod, err := m.loader(ctx, name, data, source)
	if err != nil {
		return err
	}
	d, err := m.add(name, mod, data, source, "", false)
	if err != nil {
		return err
	}
	d.mu.Lock()
	text := d.cfg.Text
	d.mu.Unlock()
	m.persist(d, data, text)
	m.watch(d)
	d.slog.Info("loaded", "source", source, "version", mod.Manifest().Version, "author", mod.Manifest().Author)
	return nil
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
		return fmt.Errorf("module %s is built in: stop it instead", name)
	}
	var users []string
	for _, u := range m.usersOf(name) {
		users = append(users, u.name)
	}
	if len(users) > 0 {
		return fmt.Errorf("module %s is needed by %s: unload those first", name, strings.Join(users, ", "))
	}
	if err := m.stopOne(ctx, d); err != nil {
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
func (m *Manager) applyMount(d *module) {
	d.mu.Lock()
	point := d.mc.mount
	if point == "" && !d.builtin {
		point = d.mod.Manifest().Mount
	}
	d.mu.Unlock()
	if point == "" || m.nsm == nil || d.builtin {
		return
	}
	spec := "#" + d.name
	for _, n := range m.nsm.Spaces() {
		if hasMount(n, spec, point) {
			continue
		}
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		if err := n.Mount(ctx, spec, point, "", 0); err != nil {
			d.slog.Warn("mount", "user", n.User(), "at", point, "err", err)
		}
		cancel()
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
