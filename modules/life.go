package modules

import (
	"context"
	"time"

	"cheshire/plan9"
)

// The life cycle besides starting (start.go) and replacing
// (reload.go): failure and restart after it, stop and restart.

// fail marks d failed when its instance of generation gen reports it can
// no longer serve, ends the calls in flight, and stops that instance once
// they have returned.
func (m *Manager) fail(d *managed, gen uint64, err error) {
	d.mu.Lock()
	if d.gen != gen || d.state != Running {
		d.mu.Unlock()
		return
	}
	r := d.run
	d.lastErr = err.Error()
	d.run = nil
	r.cancel(plan9.ErrModuleStopped)
	d.setStateLocked(Failed)
	d.mu.Unlock()
	d.slog.Error("module failed", "err", err)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, drainTimeout)
		defer cancel()
		r.drain(d.slog)
		if err := r.inst.Stop(ctx); err != nil {
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
	err := d.stopInstance(ctx, now)
	d.mu.Lock()
	d.setStateLocked(Stopped)
	d.mu.Unlock()
	if err != nil {
		d.slog.Warn("stop", "err", err)
	}
	d.slog.Info("stopped")
	return nil
}

// stopInstance stops d's running instance: d is marked stopping, the
// calls in flight are drained (with now, cancelled first) and the
// instance is taken out and stopped. Called with mu held; it returns
// with mu released and d still stopping, for the caller to say what
// comes next.
func (d *managed) stopInstance(ctx context.Context, now bool) error {
	d.setStateLocked(Stopping)
	r := d.run
	if now {
		r.cancel(plan9.ErrModuleStopped)
	}
	d.mu.Unlock()
	r.drain(d.slog)
	d.mu.Lock()
	d.run = nil
	r.cancel(plan9.ErrModuleStopped)
	d.mu.Unlock()
	return r.inst.Stop(ctx)
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
