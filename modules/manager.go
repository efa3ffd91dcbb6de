// Package modules runs the node's modules (module.Module): the Manager
// starts them in dependency order, routes their files' operations
// through a gate, keeps their packages and configs in DIR/modules and
// serves /modules. Below it are the WebAssembly runtime of packages
// (wasm), the package format (pkg) and what a module is written with
// (sdk, abi).
package modules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/module"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// The manager and its record of each module: Manager, Options,
// NewManager, the life-cycle lock, the managed record of one module and
// the registry of modules (Add, get, list), with the queries on it.

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
	trusted []string            // guarded by mu: author keys allowed to sign packages (DIR/modules/trusted)
	always  []string            // author keys trusted whatever the file says (the node's own)

	saveMu sync.Mutex // serialises writes of the files kept in dir

	root *synth.Dir
}

// Options configure a Manager.
type Options struct {
	Dir       string        // where module state is kept (DIR/modules)
	Owner     string        // the node's owner: the only user who may control modules
	Namespace *ns.Manager   // where modules are registered as #NAME
	Log       *slog.Logger  // the node log
	Loader    module.Loader // turns package files into Modules; nil: packages cannot be loaded
	Trusted   []string      // author keys always trusted, besides those in DIR/modules/trusted
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
	mod       module.Module      // guarded by mu
	pkg       []byte             // guarded by mu: the package file, for loaded modules
	source    string             // guarded by mu
	cfg       module.Config      // guarded by mu: the whole config, manager keys too
	mc        managerConfig      // guarded by mu
	state     State              // guarded by mu
	reloading bool               // guarded by mu: waiters wait instead of failing
	run       *incarnation       // guarded by mu: the instance, until it is stopped
	gen       uint64             // guarded by mu: the generation of the last instance installed
	op        *startOp           // guarded by mu: the start under way, while starting
	changed   chan struct{}      // guarded by mu: closed at every state change
	userStop  bool               // guarded by mu: stopped by its owner; lazy starts don't undo it
	suspended bool               // guarded by mu: stopped because a dependency stopped
	started   time.Time          // guarded by mu
	starts    int                // guarded by mu
	lastErr   string             // guarded by mu
	watchStop context.CancelFunc // guarded by mu: ends the hot-reload watcher

	// live is run while d is Running, nil otherwise (both set with mu
	// held): the gate admits operations through it without taking mu.
	live atomic.Pointer[incarnation]
	// maxRead is mc.maxRead (set with mu held), for reads without mu.
	maxRead atomic.Int64

	watch   watchState   // the hubs of watches of its files (gwatch.go)
	watched atomic.Int32 // watches of its files
}

// setState changes the state and wakes whoever waits for a change.
// Called with mu held.
func (d *managed) setStateLocked(s State) {
	d.state = s
	if s == Running {
		d.live.Store(d.run)
	} else {
		d.live.Store(nil)
	}
	close(d.changed)
	d.changed = make(chan struct{})
}

// setMCLocked sets the manager's part of d's config. Called with mu
// held.
func (d *managed) setMCLocked(mc managerConfig) {
	d.mc = mc
	d.maxRead.Store(mc.maxRead)
}

func (d *managed) manifest() module.Manifest {
	d.mu.Lock()
	defer d.mu.Unlock()
	mf := d.mod.Manifest()
	mf.Source = d.source
	return mf
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
	if b, err := m.kept(name, "config"); err == nil {
		text = string(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("module %s: config: %w", name, err)
	}
	cfg, mc, _, err := m.checkConfig(mod, text, builtin)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", name, err)
	}
	d := &managed{mgr: m, name: name, builtin: builtin, mod: mod, pkg: pkg, source: source,
		cfg: cfg, changed: make(chan struct{}), log: synth.NewLog(0)}
	d.setMCLocked(mc) // d is not shared yet
	d.slog = slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug}),
		m.log.Handler().WithAttrs([]slog.Attr{slog.String("module", name)})))
	if st, err := m.kept(name, "state"); err == nil && strings.TrimSpace(string(st)) == "stopped" {
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

func (m *Manager) get(name string) (*managed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.mods[name]
	if d == nil {
		return nil, fmt.Errorf("modules: no such module %q", name)
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
