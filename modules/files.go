package modules

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cheshire/module"
	"cheshire/synth"
)

// The files of /modules, the manager's control and status files:
//
//	ctl              load NAME SOURCE, unload, start, stop, restart, reload NAME
//	trusted          author keys whose packages this node runs, one a line
//	NAME/status      state, version, uptime, restarts, last error
//	NAME/config      the configuration; write a whole new one to change it
//	NAME/manifest    what the module says of itself
//	NAME/deps        what it needs and what needs it, with their states
//	NAME/log         its log (tail -f works)
//	NAME/ctl         start, stop, restart, reload
//	NAME/fs          its files (while it is stopped or failed, "module stopped")

// Attacher returns the server of /modules.
func (m *Manager) Files() *synth.Server {
	return synth.NewServer(m.root, synth.WithOwner(m.owner))
}

func (m *Manager) tree() *synth.Dir {
	root := synth.NewDir("modules", 0555)
	one := func(verb string, run func(ctx context.Context, name string) error) synth.Cmd {
		return synth.Cmd{Name: verb, Min: 1, Max: 1, Usage: verb + " NAME", Run: func(ctx context.Context, args []string) error {
			return run(ctx, args[0])
		}}
	}
	cmds := []synth.Cmd{
		{Name: "load", Min: 2, Max: 2, Usage: "load NAME SOURCE", Run: func(ctx context.Context, args []string) error {
			return m.Load(ctx, synth.User(ctx), args[0], args[1])
		}},
		one("unload", m.Unload),
		one("start", m.Start),
		one("stop", m.Stop),
		one("restart", m.Restart),
		one("reload", m.Reload),
	}
	// A refusal is logged too: through FUSE the writer sees only an errno.
	for i := range cmds {
		run, verb := cmds[i].Run, cmds[i].Name
		cmds[i].Run = func(ctx context.Context, args []string) error {
			err := run(ctx, args)
			if err != nil {
				m.log.Warn("module ctl refused", "cmd", verb+" "+strings.Join(args, " "), "user", synth.User(ctx), "err", err)
			}
			return err
		}
	}
	root.Add(synth.Ctl("ctl", 0600, cmds, func(ctx context.Context) string { return m.summary() }))
	root.Add(synth.CheckedReadWrite("trusted", 0600, func(ctx context.Context) ([]byte, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		var b strings.Builder
		for _, k := range m.always {
			fmt.Fprintf(&b, "# %s is always trusted (this node's key)\n", k)
		}
		for _, k := range m.trusted {
			b.WriteString(k + "\n")
		}
		return []byte(b.String()), nil
	}, func(ctx context.Context, data []byte) error { return m.setTrusted(data) },
		func(ctx context.Context, text string) error { _, err := parseKeys([]byte(text)); return err }))
	root.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		var out []synth.Node
		for _, d := range m.list() {
			out = append(out, d.dir)
		}
		return out, nil
	})
	return root
}

// summary is what reading /modules/ctl gives: a line per module, a
// failed one's ending with its error.
func (m *Manager) summary() string {
	var b strings.Builder
	for _, d := range m.list() {
		d.mu.Lock()
		fmt.Fprintf(&b, "%s %s %s", d.name, d.state, d.mod.Manifest().Version)
		if d.state == Failed {
			fmt.Fprintf(&b, " %s", quoteLine(d.lastErr))
		}
		b.WriteString("\n")
		d.mu.Unlock()
	}
	return b.String()
}

// moduleDir makes the directory /modules/NAME of d.
func (m *Manager) moduleDir(d *managed) *synth.Dir {
	dir := synth.NewDir(d.name, 0555)
	dir.Add(synth.String("status", 0444, func(ctx context.Context) string { return d.status() }))
	dir.Add(synth.String("manifest", 0444, func(ctx context.Context) string { return d.manifest().Text() }))
	dir.Add(synth.String("deps", 0444, func(ctx context.Context) string { return m.deps(d) }))
	// A write fails as soon as it carries a line the module refuses; a
	// configuration refused only as a whole (a setting missing) is
	// refused at clunk. Either way the refusal is logged too: through
	// FUSE the writer sees only an errno.
	dir.Add(synth.CheckedReadWrite("config", 0600, func(ctx context.Context) ([]byte, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return []byte(d.cfg.Text), nil
	}, func(ctx context.Context, data []byte) error {
		err := m.SetConfig(ctx, d.name, string(data))
		if err != nil {
			d.slog.Warn("config refused", "err", err)
		}
		return err
	}, func(ctx context.Context, text string) error {
		d.mu.Lock()
		mod, builtin := d.mod, d.builtin
		d.mu.Unlock()
		_, _, _, err := m.checkConfig(mod, text, builtin)
		if _, ok := errors.AsType[*module.LineError](err); !ok {
			return nil
		}
		d.slog.Warn("config refused", "err", err)
		return err
	}))
	dir.Add(d.log.File("log", 0444))
	verb := func(v string, run func(ctx context.Context, name string) error) synth.Cmd {
		return synth.Cmd{Name: v, Usage: v, Run: func(ctx context.Context, args []string) error { return run(ctx, d.name) }}
	}
	dir.Add(synth.Ctl("ctl", 0600, []synth.Cmd{
		verb("start", m.Start), verb("stop", m.Stop), verb("restart", m.Restart), verb("reload", m.Reload),
	}, func(ctx context.Context) string { return d.status() }))
	// fs is there whatever the state: while the module is stopped or
	// failed, walks into it fail with "module stopped…" (the gate's
	// error), not "file not found".
	if !d.mod.Manifest().NoTree {
		dir.Add(synth.NewMount("fs", 0555, gate{m: d}))
	}
	return dir
}

// status is NAME/status: "key value" lines.
func (d *managed) status() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	mf := d.mod.Manifest()
	var b strings.Builder
	fmt.Fprintf(&b, "name %s\nstate %s\nversion %s\n", d.name, d.state, mf.Version)
	up := time.Duration(0)
	if d.state == Running {
		up = d.mgr.now().Sub(d.started).Truncate(time.Second)
	}
	fmt.Fprintf(&b, "uptime %s\nrestarts %d\nfailures %d\n", up, max(d.starts-1, 0), d.mc.failures)
	kind := "package"
	if d.builtin {
		kind = "builtin"
	}
	fmt.Fprintf(&b, "kind %s\n", kind)
	if d.source != "" {
		fmt.Fprintf(&b, "source %s\n", d.source)
	}
	onoff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(&b, "lazy %s\nhotreload %s\nrestart-policy %s\n", onoff[d.mc.lazy], onoff[d.mc.hotreload && d.source != ""], d.mc.restart)
	if d.suspended {
		b.WriteString("suspended yes\n")
	}
	if d.userStop {
		b.WriteString("stopped-by owner\n")
	}
	fmt.Fprintf(&b, "error %s\n", quoteLine(d.lastErr))
	return b.String()
}

func quoteLine(s string) string {
	if s == "" {
		return "none"
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// deps is NAME/deps: "needs NAME STATE" and "neededby NAME STATE" lines.
func (m *Manager) deps(d *managed) string {
	var b strings.Builder
	state := func(n string) string {
		o, err := m.get(n)
		if err != nil {
			return "missing"
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.state.String()
	}
	for _, n := range d.manifest().Deps {
		fmt.Fprintf(&b, "needs %s %s\n", n, state(n))
	}
	for _, o := range m.usersOf(d.name) {
		fmt.Fprintf(&b, "neededby %s %s\n", o.name, state(o.name))
	}
	return b.String()
}
