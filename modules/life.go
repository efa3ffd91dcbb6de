package modules

import (
	"cheshire/module"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"cheshire/plan9"
)

// The life cycle besides starting (start.go): failure and restart,
// stop, restart, reload and reconfiguration.

// fail marks d failed when its instance of generation gen reports it can
// no longer serve, ends the calls in flight, and stops that instance once
// they have returned.
func (m *Manager) fail(d *managed, gen uint64, err error) {
	d.mu.Lock()
	if d.gen != gen || d.state != Running {
		d.mu.Unlock()
		return
	}
	inst := d.inst
	d.lastErr = err.Error()
	d.inst = nil
	d.icancel(plan9.ErrModuleStopped)
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
// a row (1 s to 1 min). A run of the restart-reset time (or a new
// configuration) forgets the earlier failures.
func (m *Manager) restartLater(d *managed, gen uint64) {
	d.mu.Lock()
	if m.now().Sub(d.started) >= m.resetAfter {
		d.mc.failures = 0
	}
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

// Stop stops module name: first the modules that need it (they are
// suspended, and come back when it starts again), then it. A start under
// way is cancelled; calls in flight are cancelled at once. A module
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
		up := u.state == Running || u.state == Starting
		u.mu.Unlock()
		if !up {
			continue
		}
		if err := m.stopOne(ctx, u, byUser); err != nil {
			return err
		}
		u.mu.Lock()
		u.suspended = true
		u.mu.Unlock()
		u.slog.Info("suspended: a module it needs is stopping", "needs", name)
	}
	if err := m.stopOne(ctx, d, byUser); err != nil {
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

// stopOne cancels d's start if one is under way, or drains and stops its
// instance. With now, calls in flight are cancelled at once; otherwise
// they may finish first (for at most the drain timeout).
func (m *Manager) stopOne(ctx context.Context, d *managed, now bool) error {
	d.mu.Lock()
	switch d.state {
	case Running:
	case Starting:
		op := d.op
		d.op = nil
		d.setStateLocked(Stopped)
		d.mu.Unlock()
		if op != nil {
			op.cancel(errStoppedStarting)
		}
		d.slog.Info("stopped while starting")
		return nil
	case Failed:
		d.setStateLocked(Stopped)
		fallthrough
	default:
		d.mu.Unlock()
		return nil
	}
	d.setStateLocked(Stopping)
	if now {
		d.icancel(plan9.ErrModuleStopped)
	}
	d.drainLocked()
	inst := d.inst
	d.inst = nil
	d.icancel(plan9.ErrModuleStopped)
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
	return m.do(ctx, func() (*startOp, error) {
		if err := m.stopLocked(ctx, name, false); err != nil {
			return nil, err
		}
		d, err := m.get(name)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.suspended = false
		d.mu.Unlock()
		return m.startLocked(name, nil)
	})
}

// Reload replaces name's instance by one of its current code and static
// config (read again from DIR/modules/NAME/config), or, for a loaded
// package, of the package read again from its source. Operations wait
// while it happens and those in flight finish first, so none that was
// answered is lost. If the new instance does not start, the old code
// and config are started again and the error is returned.
func (m *Manager) Reload(ctx context.Context, name string) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	// Reading and compiling the package take no lock.
	d.mu.Lock()
	pkg, source := d.pkg, d.source
	d.mu.Unlock()
	var newMod module.Module
	var newPkg []byte
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
	return m.do(ctx, func() (*startOp, error) {
		d, err := m.get(name)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		mod, pkg, cfgText := d.mod, d.pkg, d.cfg.Text
		d.mu.Unlock()
		if newMod == nil {
			newMod, newPkg = mod, pkg
		}
		if b, err := os.ReadFile(filepath.Join(m.dir, name, "config")); err == nil {
			cfgText = string(b)
		}
		return m.replaceLocked(ctx, d, newMod, newPkg, cfgText, "reload")
	})
}

// replaceLocked swaps d to newMod under config text, restarting its
// instance if it runs, with rollback on failure; it returns the start
// it launched, if any. A new configuration forgets earlier failures.
func (m *Manager) replaceLocked(ctx context.Context, d *managed, newMod module.Module, newPkg []byte, text, why string) (*startOp, error) {
	cfg, mc, _, err := m.checkConfig(newMod, text, d.builtin)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", why, d.name, err)
	}
	for _, dep := range newMod.Manifest().Deps {
		if _, err := m.get(dep); err != nil {
			return nil, fmt.Errorf("%s %s: needs %s: no such module", why, d.name, dep)
		}
	}
	d.mu.Lock()
	if cfg.Text == d.cfg.Text {
		mc = mergeMC(mc, d.mc)
	}
	next := version{mod: newMod, pkg: newPkg, cfg: cfg, mc: mc}
	switch d.state {
	case Starting:
		d.mu.Unlock()
		return nil, fmt.Errorf("%s %s: %w: the module is starting; try again once it runs", why, d.name, errAgain)
	case Running:
	default:
		d.mod, d.pkg, d.cfg, d.mc = next.mod, next.pkg, next.cfg, next.mc
		d.mu.Unlock()
		m.persist(d, newPkg, text)
		d.slog.Info(why+": applied; takes effect at the next start", "version", newMod.Manifest().Version)
		m.watch(d)
		return nil, nil
	}
	old := d.currentLocked()
	d.reloading = true
	d.setStateLocked(Stopping)
	d.drainLocked()
	inst := d.inst
	d.inst = nil
	d.icancel(plan9.ErrModuleStopped)
	d.mu.Unlock()
	if err := inst.Stop(ctx); err != nil {
		d.slog.Warn(why+": stopping the old instance", "err", err)
	}
	return m.launchLocked(d, nil, []version{next, old}, why, func(i int) {
		if i > 0 {
			d.slog.Error(why + ": new instance failed; the old one runs again")
			return
		}
		m.persist(d, newPkg, text)
		m.watch(d)
		d.slog.Info(why+": done", "version", newMod.Manifest().Version)
	}), nil
}

// SetConfig validates text as name's whole new configuration and applies
// it: in place if only the manager's keys changed or the instance can
// reconfigure itself, else by restarting the instance (drained first). A
// refused configuration changes nothing. A new configuration forgets the
// module's earlier failures (the restart back-off starts again).
func (m *Manager) SetConfig(ctx context.Context, name, text string) error {
	return m.do(ctx, func() (*startOp, error) {
		d, err := m.get(name)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		mod, pkg, inst, running, starting := d.mod, d.pkg, d.inst, d.state == Running, d.state == Starting
		oldModCfg, _ := splitConfig(d.cfg)
		d.mu.Unlock()
		if starting {
			// Its start runs under the old configuration.
			return nil, fmt.Errorf("config %s: %w: the module is starting; try again once it runs", name, errAgain)
		}
		cfg, mc, _, err := m.checkConfig(mod, text, d.builtin)
		if err != nil {
			return nil, err
		}
		modCfg, _ := splitConfig(cfg)
		same := slices.EqualFunc(oldModCfg.Entries, modCfg.Entries, func(a, b module.ConfigEntry) bool {
			return a.Key == b.Key && slices.Equal(a.Args, b.Args)
		})
		if running && !same {
			if r, ok := inst.(module.Reconfigurer); ok {
				if err := r.Reconfigure(ctx, modCfg); err != nil {
					return nil, fmt.Errorf("config refused: %w", err)
				}
			} else {
				return m.replaceLocked(ctx, d, mod, pkg, text, "config")
			}
		}
		d.mu.Lock()
		d.cfg, d.mc = cfg, mc
		failed := d.state == Failed
		d.mu.Unlock()
		m.persist(d, nil, text)
		m.watch(d)
		if running {
			m.applyMount(d)
		}
		if failed && !same {
			// A failed module may have failed for want of this
			// change (an address in use): it starts again by itself.
			d.slog.Info("config applied; starting the failed module again")
			return m.startLocked(name, nil)
		}
		d.slog.Info("config applied")
		return nil, nil
	})
}
