package modules

import (
	"fmt"
	"slices"
	"strings"
)

// Dependency order and suspension: which modules need which, the
// starts of what a module needs before it, and the resumption of
// modules suspended when something they need stopped.

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

// startLocked launches the start of name and of what it needs (or finds
// those under way), and returns name's op: nil if it runs already. path
// detects cycles.
func (m *Manager) startLocked(name string, path []string) (*startOp, error) {
	if slices.Contains(path, name) {
		return nil, fmt.Errorf("%w: dependency cycle: %s", errInvalid, strings.Join(append(path, name), " → "))
	}
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	state, op, mod := d.state, d.op, d.mod
	d.mu.Unlock()
	switch {
	case state == Running:
		return nil, nil
	case state == Starting && op != nil:
		return op, nil
	}
	var deps []*startOp
	for _, dep := range mod.Manifest().Deps {
		if _, err := m.get(dep); err != nil {
			return nil, fmt.Errorf("modules: module %s needs %s: no such module", name, dep)
		}
		dop, err := m.startLocked(dep, append(path, name))
		if err != nil {
			return nil, fmt.Errorf("module %s needs %s: %w", name, dep, err)
		}
		if dop != nil {
			deps = append(deps, dop)
		}
	}
	d.mu.Lock()
	v := d.currentLocked()
	d.mu.Unlock()
	return m.launchLocked(d, deps, []version{v}, "", nil), nil
}

// resumeLocked launches the starts of the suspended modules whose
// dependencies run or are starting, and returns them.
func (m *Manager) resumeLocked() []*startOp {
	var ops []*startOp
	for again := true; again; {
		again = false
		for _, d := range m.list() {
			d.mu.Lock()
			sus := d.suspended && d.state != Running && d.op == nil
			deps := d.mod.Manifest().Deps
			v := d.currentLocked()
			d.mu.Unlock()
			if !sus {
				continue
			}
			waits, ok := m.underway(deps)
			if !ok {
				continue
			}
			ops = append(ops, m.launchLocked(d, waits, []version{v}, "", nil))
			d.slog.Info("resuming: the modules it needs are back")
			again = true
		}
	}
	return ops
}

// underway returns the starts of names still under way, and whether
// every one of names runs or is starting.
func (m *Manager) underway(names []string) ([]*startOp, bool) {
	var ops []*startOp
	for _, n := range names {
		d, err := m.get(n)
		if err != nil {
			return nil, false
		}
		d.mu.Lock()
		state, op := d.state, d.op
		d.mu.Unlock()
		switch {
		case state == Running:
		case state == Starting && op != nil:
			ops = append(ops, op)
		default:
			return nil, false
		}
	}
	return ops, true
}
