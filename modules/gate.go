package modules

import (
	"context"
	"fmt"
	"time"

	"cheshire/module"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/styx"
)

// The request gate: the Attacher of a module's files, and the admission
// of each operation into the module's instance (acquire and release,
// counted in flight) that a stop drains. The files themselves are
// gfile.go.
//
// The gate stands between the namespace and a module's instance. Every
// file of a module that a namespace holds is a gfile: it remembers the
// path it was walked by and, if open, its mode, so that when the instance
// is replaced (restart, reload) the next operation walks and opens the
// same file in the new instance. Operations while the module is stopped
// or failed fail at once with "module stopped"; operations during a
// reload wait for it; an operation in flight keeps the instance from
// being stopped until it returns (the drain), so a write that was
// answered is never lost to a reload. Each operation's context also ends
// when its instance stops, so a stopped module's calls end at once.

// gate is the styx.Attacher registered as "#NAME" for one namespace.
type gate struct {
	m  *managed
	ns *ns.Namespace // nil when attached from outside a namespace
}

func (g gate) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	f := &gfile{m: g.m, ns: g.ns, uname: uname, aname: aname, length: -1}
	// Namespaces attach every mount when they are made, so an attach
	// neither starts a lazy module nor waits for a start under way: the
	// file is bound to an instance at its first real operation if it
	// cannot be now.
	if inst, gen, ok := g.m.tryAcquire(); ok {
		defer g.m.release()
		f.mu.Lock()
		err := f.bindLocked(ctx, inst, gen)
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return f, nil
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
