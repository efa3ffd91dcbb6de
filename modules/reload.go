package modules

import (
	"context"
	"fmt"
	"slices"

	"cheshire/module"
)

// Replacing a module's version in place: reload (new code or static
// config) and reconfiguration, with rollback when the new version does
// not start.

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
		if b, err := m.kept(name, "config"); err == nil {
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
		d.mod, d.pkg, d.cfg = next.mod, next.pkg, next.cfg
		d.setMCLocked(next.mc)
		d.mu.Unlock()
		m.persist(d, newPkg, text)
		d.slog.Info(why+": applied; takes effect at the next start", "version", newMod.Manifest().Version)
		m.watch(d)
		return nil, nil
	}
	old := d.currentLocked()
	d.reloading = true
	if err := d.stopInstance(ctx, false); err != nil {
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
		mod, pkg, running, starting := d.mod, d.pkg, d.state == Running, d.state == Starting
		var inst module.Instance
		if running {
			inst = d.run.inst
		}
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
		d.cfg = cfg
		d.setMCLocked(mc)
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
