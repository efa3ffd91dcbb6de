package modules

import (
	"context"
	"fmt"
	"strings"

	"cheshire/module"
	"cheshire/plan9"
)

// Loading packages as modules (from a source, or from the bytes kept
// in the data dir) and unloading them. Reading sources is source.go.

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
	m.unkeep(name)
	d.log.Write([]byte("unloaded\n"))
	m.log.Info("module unloaded", "module", name)
	return nil
}
