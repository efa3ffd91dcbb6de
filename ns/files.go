package ns

import (
	"context"
	"fmt"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// Files returns the file server of ns, mounted at /ns:
//
//	/ns/ns   the namespace in namespace(6) form, like Plan 9's ns(1)
//	/ns/ctl  write bind, mount, unmount and import lines to change it; the
//	         lines of one write apply all or none, export and unexport
//	         lines included
//	/ns/exports  what this user exports to other nodes
//	/ns/imports  the imports, each with the state of its connection
//	/ns/watch  write "watch PATH [recursive]" on an open of it, then read
//	         the changes at PATH as lines, as they happen (watch.go)
//
// Every change is saved to the user's namespace file.
func Files(ns *Namespace) styx.Attacher {
	root := synth.NewDir("ns", 0555)
	root.Add(synth.String("ns", 0444, func(ctx context.Context) string { return ns.String() }))
	root.Add(synth.String("exports", 0444, func(ctx context.Context) string {
		es, err := ns.mgr.Exports()
		if err != nil {
			return "# " + err.Error() + "\n"
		}
		var b strings.Builder
		for _, e := range es {
			if e.User == ns.user {
				b.WriteString(e.String() + "\n")
			}
		}
		return b.String()
	}))
	root.Add(synth.String("imports", 0444, func(ctx context.Context) string { return ns.importsText() }))
	root.Add(watchFile(ns))
	run := func(verb string) func(ctx context.Context, args []string) error {
		return func(ctx context.Context, args []string) error {
			line := plan9.Join(append([]string{verb}, args...))
			c, ok, err := plan9.ParseNSLine(line)
			if err != nil {
				return err
			}
			if !ok {
				return plan9.ErrEmptyCtl
			}
			if err := ns.Apply(ctx, c); err != nil {
				return err
			}
			ns.mgr.log.Info("namespace changed", "user", ns.user, "cmd", c.String())
			return nil
		}
	}
	// A write's lines change the namespace together or not at all, and
	// the file is saved once, after the last.
	batch := func(ctx context.Context, run func(context.Context) error) error {
		before := ns.String()
		tx := new(exportTx)
		err := ns.Batch(ctx, func(ctx context.Context) error {
			ns.exportTx = tx
			defer func() { ns.exportTx = nil }()
			return run(ctx)
		})
		if err != nil {
			return err
		}
		if ns.String() != before {
			if err := ns.mgr.Save(ns); err != nil {
				return fmt.Errorf("applied, but %w", err)
			}
		}
		if err := tx.commit(ns.mgr); err != nil {
			return fmt.Errorf("applied, but %w", err)
		}
		return nil
	}
	cmds := []synth.Cmd{
		{Name: "bind", Max: -1, Usage: "bind [-abc] new old", Run: run("bind")},
		{Name: "mount", Max: -1, Usage: "mount [-abc] server old [spec]", Run: run("mount")},
		{Name: "unmount", Max: -1, Usage: "unmount [new] old", Run: run("unmount")},
		{Name: "import", Max: -1, Usage: "import [-abc] KEY [REMOTEPATH] MOUNTPOINT", Run: run("import")},
		{Name: "export", Max: -1, Usage: "export PATH [ro|rw] to KEY|*", Run: func(ctx context.Context, args []string) error {
			if err := exportCmd(ctx, ns, args); err != nil {
				return err
			}
			ns.mgr.log.Info("exported", "user", ns.user, "args", strings.Join(args, " "))
			return nil
		}},
		{Name: "unexport", Min: 1, Max: 1, Usage: "unexport PATH", Run: func(ctx context.Context, args []string) error {
			return unexportCmd(ns, args[0])
		}},
	}
	root.Add(synth.CtlBatch("ctl", 0600, cmds, nil, batch))
	return synth.NewServer(root, synth.WithOwner(ns.user))
}
