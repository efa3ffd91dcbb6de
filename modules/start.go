package modules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"cheshire/module"
	"cheshire/plan9"
	"cheshire/styx"
)

// Starting modules: the start of one instance in the background (a
// startOp), Start, and Boot, which starts the node's modules.
//
// Starting a module runs its code (a package's init), which may take as
// long as the module likes. So no lock is held while an instance starts:
// under the life-cycle lock the manager only decides what to start and
// marks it starting; each start then runs in the background as a
// startOp, bounded by the start timeout, after the starts of what it
// needs. Whoever asked for the start (a ctl write, a lazy walk) waits
// for the op without the lock, so other ctl writes go on meanwhile.
// Operations on a starting module's files wait for the start; a stop
// cancels it.

// A startOp is one start of a module's instance in the background.
type startOp struct {
	name   string
	done   chan struct{} // closed when the start has ended
	err    error         // why it failed; set before done is closed
	cancel context.CancelCauseFunc
}

// wait waits for op to end, or for ctx, and returns why it failed. A nil
// op is a start that was not needed.
func (op *startOp) wait(ctx context.Context) error {
	if op == nil {
		return nil
	}
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
		return fmt.Errorf("module %s is still starting: %w", op.name, ctx.Err())
	}
}

// A version is what an instance is started from.
type version struct {
	mod module.Module
	pkg []byte
	cfg module.Config
	mc  managerConfig
}

var (
	errStoppedStarting = fmt.Errorf("%w while starting", plan9.ErrModuleStopped)
	errClosing         = errors.New("the node is shutting down")
)

// current is d's version now. Called with d.mu held.
func (d *managed) currentLocked() version {
	return version{mod: d.mod, pkg: d.pkg, cfg: d.cfg, mc: d.mc}
}

// launchLocked marks d starting and starts an instance of the first of
// tries that starts, in the background, once every op in deps has
// succeeded. The tries after the first are fallbacks (the old version
// of a reload). after, if not nil, runs once an instance of tries[i] is
// installed. Called with the life-cycle lock held.
func (m *Manager) launchLocked(d *managed, deps []*startOp, tries []version, why string, after func(i int)) *startOp {
	ctx, cancel := context.WithCancelCause(m.ctx)
	op := &startOp{name: d.name, done: make(chan struct{}), cancel: cancel}
	d.mu.Lock()
	d.op = op
	d.reloading = false
	d.setStateLocked(Starting)
	d.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel(nil)
		op.err = m.runStart(ctx, d, op, deps, tries, why, after)
		close(op.done)
	}()
	return op
}

// runStart is the body of a startOp.
func (m *Manager) runStart(ctx context.Context, d *managed, op *startOp, deps []*startOp, tries []version, why string, after func(int)) error {
	for _, dep := range deps {
		select {
		case <-dep.done:
		case <-ctx.Done():
			return m.endStart(d, op, nil, 0, -1, tries, why, after, []error{context.Cause(ctx)})
		}
		if dep.err != nil {
			err := fmt.Errorf("module %s needs %s: %w", d.name, dep.name, dep.err)
			return m.endStart(d, op, nil, 0, -1, tries, why, after, []error{err})
		}
	}
	var errs []error
	for i, v := range tries {
		inst, gen, err := m.startInstance(ctx, d, v.mod, v.cfg)
		if err == nil {
			return m.endStart(d, op, inst, gen, i, tries, why, after, errs)
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return m.endStart(d, op, nil, 0, -1, tries, why, after, errs)
}

// endStart installs inst, an instance of tries[i], unless op was
// cancelled meanwhile, or marks d failed if nothing started; it returns
// the op's error.
func (m *Manager) endStart(d *managed, op *startOp, inst module.Instance, gen uint64, i int, tries []version, why string, after func(int), errs []error) error {
	d.mu.Lock()
	if d.op != op {
		d.mu.Unlock()
		if inst != nil {
			m.stopLate(d, inst)
		}
		return fmt.Errorf("module %s: %w", d.name, errStoppedStarting)
	}
	d.op = nil
	if inst == nil {
		var err error
		switch {
		case why != "" && len(errs) > 1:
			err = fmt.Errorf("%s %s: %w; and the old version failed too: %v", why, d.name, errs[0], errs[1])
		case why != "":
			err = fmt.Errorf("%s %s: %w", why, d.name, errs[0])
		default:
			err = errs[0]
		}
		d.lastErr = err.Error()
		d.setStateLocked(Failed)
		d.mu.Unlock()
		d.slog.Error("start failed", "err", err)
		return err
	}
	v := tries[i]
	if why != "" { // a replacement: the version that started is d's now
		d.mod, d.pkg, d.cfg = v.mod, v.pkg, v.cfg
		d.setMCLocked(v.mc)
	}
	d.install(inst, gen)
	d.userStop, d.suspended = false, false
	d.saveStateLocked("running")
	d.mu.Unlock()
	// Mounted before the start is done, so that a load or start
	// written to ctl returns with the module in every namespace.
	m.applyMount(d)
	if after != nil {
		after(i)
	}
	if i > 0 {
		err := fmt.Errorf("%s %s refused: %w", why, d.name, errs[0])
		d.mu.Lock()
		d.lastErr = err.Error()
		d.mu.Unlock()
		return err
	}
	d.slog.Info("started", "version", v.mod.Manifest().Version)
	return nil
}

// stopLate stops an instance that finished starting after its start was
// cancelled.
func (m *Manager) stopLate(d *managed, inst module.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := inst.Stop(ctx); err != nil {
		d.slog.Warn("stopping an instance that started after its start was cancelled", "err", err)
	}
}

// install makes inst, of generation gen, the running instance. Called
// with mu held; the caller mounts it in the namespaces (applyMount) once
// mu is released.
func (d *managed) install(inst module.Instance, gen uint64) {
	d.run = newIncarnation(inst, gen)
	d.gen = gen
	if d.starts > 0 {
		d.starts++
	} else {
		d.starts = 1
	}
	d.started = d.mgr.now()
	d.lastErr = "" // it runs: an earlier failure is no longer the news
	d.setStateLocked(Running)
}

// startInstance starts an instance of mod under cfg. It returns when ctx
// ends even if mod.Start does not; an instance that comes later is
// stopped.
func (m *Manager) startInstance(ctx context.Context, d *managed, mod module.Module, cfg module.Config) (module.Instance, uint64, error) {
	modCfg, _ := splitConfig(cfg)
	ctx, cancel := context.WithTimeoutCause(ctx, m.startTimeout,
		fmt.Errorf("not started within %v", m.startTimeout))
	defer cancel()
	gen := m.gens.Add(1)
	env := module.Env{
		Name:    d.name,
		Config:  modCfg,
		Dir:     m.dataDir(d.name),
		Log:     d.slog,
		Fail:    func(err error) { m.fail(d, gen, err) },
		Changed: d.selfChanged,
	}
	if m.nsm != nil {
		owner := m.owner
		env.Namespace = styx.AttachFunc(func(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
			return m.nsm.Attach(ctx, owner, aname, nil)
		})
	}
	type result struct {
		inst module.Instance
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		inst, err := safeStart(ctx, mod, env)
		ch <- result{inst, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, 0, fmt.Errorf("module %s: start: %w", d.name, r.err)
		}
		return r.inst, gen, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.inst != nil {
				m.stopLate(d, r.inst)
			}
		}()
		return nil, 0, fmt.Errorf("module %s: start: %w", d.name, context.Cause(ctx))
	}
}

// safeStart runs mod.Start, turning a panic into an error.
func safeStart(ctx context.Context, mod module.Module, env module.Env) (inst module.Instance, err error) {
	defer func() {
		if r := recover(); r != nil {
			inst, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return mod.Start(ctx, env)
}

// Boot starts every module that is neither lazy nor stopped by its
// owner, dependencies first, each start bounded by the start timeout,
// and waits for the built-in modules (the node's own code, which the
// node's other parts expect running once Boot returns). The packages
// kept from earlier runs are loaded and started in the background, so
// that no package, however slow to compile or start, holds up the node:
// Booted says when every load and start has ended. A module that fails
// is marked failed; the others go on.
func (m *Manager) Boot(ctx context.Context) error {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	ops, builtins, err := m.startNamed(ctx, nil)
	if err != nil {
		return err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(m.booted)
		var loaded []string
		for _, e := range ents {
			data, err := m.kept(e.Name(), "package")
			if err != nil {
				continue
			}
			if _, err := m.get(e.Name()); err == nil {
				continue
			}
			src, _ := m.kept(e.Name(), "source")
			lctx, cancel := context.WithTimeout(m.ctx, m.startTimeout)
			err = m.loadBytes(lctx, e.Name(), data, strings.TrimSpace(string(src)))
			cancel()
			if err != nil {
				m.log.Error("module not reloaded from the data dir", "module", e.Name(), "err", err)
				continue
			}
			loaded = append(loaded, e.Name())
		}
		more, _, err := m.startNamed(m.ctx, loaded)
		if err != nil {
			m.log.Error("modules not started", "err", err)
		}
		for _, op := range append(ops, more...) {
			<-op.done
		}
	}()
	for _, op := range builtins {
		select {
		case <-op.done:
		case <-ctx.Done():
			return fmt.Errorf("modules: %w", ctx.Err())
		}
	}
	return nil
}

// startNamed starts the modules named (all, if names is nil) that are
// neither lazy, stopped by their owner, nor running, and returns the
// starts begun and, among them, those of built-ins.
func (m *Manager) startNamed(ctx context.Context, names []string) (ops, builtins []*startOp, err error) {
	if names != nil && len(names) == 0 {
		return nil, nil, nil
	}
	if err := m.lock(ctx); err != nil {
		return nil, nil, err
	}
	defer m.unlock()
	for _, d := range m.list() {
		if names != nil && !slices.Contains(names, d.name) {
			continue
		}
		d.mu.Lock()
		skip := d.userStop || d.mc.lazy || d.state == Running
		d.mu.Unlock()
		if skip {
			continue
		}
		op, err := m.startLocked(d.name, nil)
		if err != nil {
			m.log.Error("module not started", "module", d.name, "err", err)
		}
		if op != nil {
			ops = append(ops, op)
			if d.builtin {
				builtins = append(builtins, op)
			}
		}
	}
	return ops, builtins, nil
}

// Booted is closed when the starts Boot began have all ended.
func (m *Manager) Booted() <-chan struct{} { return m.booted }

// Start starts module name, starting its dependencies first, then brings
// back the modules that were suspended when a dependency stopped. It
// waits for those starts (not holding up other module operations
// meanwhile) and returns why name's failed; if ctx ends first, the
// starts go on in the background.
func (m *Manager) Start(ctx context.Context, name string) error {
	return m.do(ctx, func() (*startOp, error) {
		return m.startLocked(name, nil)
	})
}

// do runs f under the life-cycle lock, and then resumes the suspended
// modules that can be; it then waits, without the lock, for the starts
// launched, and returns the error of f's.
func (m *Manager) do(ctx context.Context, f func() (*startOp, error)) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	op, err := f()
	var resumed []*startOp
	if err == nil {
		resumed = m.resumeLocked()
	}
	m.unlock()
	if err != nil {
		return err
	}
	err = op.wait(ctx)
	for _, r := range resumed {
		if r.wait(ctx) != nil && ctx.Err() != nil {
			break
		}
	}
	return err
}
