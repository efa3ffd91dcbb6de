package modules

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
	if r := g.m.tryAcquire(); r != nil {
		defer r.release()
		f.mu.Lock()
		err := f.bindLocked(ctx, r.inst, r.gen)
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// An incarnation is one running instance, as the gate admits operations
// into it. Admission takes no lock: an operation counts itself in flight
// (inflight) and then checks that the incarnation is still d.live; a
// stop first clears d.live (with d.mu held) and then drains, waiting for
// inflight to drop to 0. An operation that counted itself after the
// clear fails its check and leaves without touching the instance; one
// that passed its check is counted before the drain looks, so the drain
// waits for it.
type incarnation struct {
	inst   module.Instance
	gen    uint64
	ctx    context.Context // its calls' context: ends when it stops
	cancel context.CancelCauseFunc

	inflight atomic.Int64  // operations admitted and not yet released
	draining atomic.Bool   // set by drain before it looks at inflight
	drained  chan struct{} // closed (once) when inflight drops to 0 while draining
	once     sync.Once
}

func newIncarnation(inst module.Instance, gen uint64) *incarnation {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &incarnation{inst: inst, gen: gen, ctx: ctx, cancel: cancel, drained: make(chan struct{})}
}

// release ends an operation admitted by acquire or tryAcquire.
func (r *incarnation) release() {
	if r.inflight.Add(-1) == 0 && r.draining.Load() {
		r.once.Do(func() { close(r.drained) })
	}
}

// drain waits until no operation is in flight in r or the drain timeout
// passes. r must no longer be live, so that no operation is admitted.
func (r *incarnation) drain(log *slog.Logger) {
	r.draining.Store(true)
	if r.inflight.Load() == 0 {
		return
	}
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-r.drained:
	case <-t.C:
		log.Warn("stopping with operations still in flight", "after", drainTimeout)
	}
}

// tryAcquire returns the running instance, counting the caller in flight
// until it calls release, or nil if d does not run. It takes no lock.
func (d *managed) tryAcquire() *incarnation {
	r := d.live.Load()
	if r == nil {
		return nil
	}
	r.inflight.Add(1)
	if d.live.Load() != r {
		r.release() // stopping: the drain may have looked already
		return nil
	}
	return r
}

// acquire is tryAcquire that, when d does not run, waits through a start
// or a reload, starts a lazy module, and fails at once with "module
// stopped" otherwise.
func (d *managed) acquire(ctx context.Context) (*incarnation, error) {
	if r := d.tryAcquire(); r != nil {
		return r, nil
	}
	d.mu.Lock()
	for {
		switch {
		case d.state == Running:
			// No drain has begun: it would have set the state first.
			r := d.run
			r.inflight.Add(1)
			d.mu.Unlock()
			return r, nil
		case d.state == Starting || d.state == Stopping && d.reloading:
			ch := d.changed
			d.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			d.mu.Lock()
		case d.state == Stopped && d.mc.lazy && !d.userStop && !d.suspended:
			d.mu.Unlock()
			if err := d.mgr.Start(ctx, d.name); err != nil {
				return nil, fmt.Errorf("module %s: lazy start: %w", d.name, err)
			}
			d.mu.Lock()
		case d.state == Failed:
			err := d.failedErrLocked()
			d.mu.Unlock()
			return nil, err
		default:
			d.mu.Unlock()
			return nil, plan9.ErrModuleStopped
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
func (d *managed) readLimit() int64 { return d.maxRead.Load() }
