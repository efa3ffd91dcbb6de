package modules

import (
	"context"
	"time"

	"cheshire/ns"
)

// Mounting modules in namespaces: where a running module is mounted,
// in live namespaces and in those made later, and whether its mount
// points are listed.

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
