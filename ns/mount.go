// Changes to a namespace's mount table: bind, mount, unmount, and the
// commands that rebuild it.

package ns

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"
)

// Bind makes the file at new (as it resolves now) appear at old, with
// flags MREPL, MBEFORE or MAFTER, optionally MCREATE.
func (ns *Namespace) Bind(ctx context.Context, new, old string, flags int) error {
	src, err := ns.resolve(ctx, new, true)
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	cmd := plan9.NSCmd{Op: "bind", Flags: flagLetters(flags), Args: []string{path.Clean(new), path.Clean(old)}}
	if err := ns.attachAt(ctx, src, old, flags, cmd); err != nil {
		src.clunk()
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// Mount attaches the server spec (an in-process server such as #tmp, or a
// dial string) with aname at old.
func (ns *Namespace) Mount(ctx context.Context, spec, old, aname string, flags int) error {
	dev, err := ns.attachServer(ctx, spec, aname)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	src := &chn{dev: dev, file: dev.root, qid: dev.root.Qid(), path: path.Clean(old), dpath: "/"}
	args := []string{spec, path.Clean(old)}
	if aname != "" {
		args = append(args, aname)
	}
	cmd := plan9.NSCmd{Op: "mount", Flags: flagLetters(flags), Args: args}
	if err := ns.attachAt(ctx, src, old, flags, cmd); err != nil {
		dev.root.Clunk()
		return fmt.Errorf("mount: %w", err)
	}
	return nil
}

func (ns *Namespace) attachServer(ctx context.Context, spec, aname string) (*device, error) {
	a, err := ns.mgr.server(ctx, ns, spec)
	if err != nil {
		return nil, err
	}
	root, err := a.Attach(ctx, ns.user, aname, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return ns.newDevice(spec, aname, root), nil
}

// newDevice numbers a newly attached server.
func (ns *Namespace) newDevice(spec, aname string, root styx.File) *device {
	ns.mu.Lock()
	id := ns.nextDev
	ns.nextDev++
	if ns.nextDev == 0 {
		ns.nextDev = 1
	}
	ns.mu.Unlock()
	return &device{id: id, spec: spec, aname: aname, root: root}
}

func flagLetters(flags int) string {
	s := ""
	if flags&MBEFORE != 0 {
		s += "b"
	}
	if flags&MAFTER != 0 {
		s += "a"
	}
	if flags&MCREATE != 0 {
		s += "c"
	}
	return s
}

func (ns *Namespace) attachAt(ctx context.Context, src *chn, old string, flags int, cmd plan9.NSCmd) error {
	pt, err := ns.mountPoint(ctx, old, src.isDir())
	if err != nil {
		return err
	}
	defer pt.clunk()
	if pt.union != nil {
		return fmt.Errorf("%s: mount point is a union", old)
	}
	if pt.isDir() != src.isDir() {
		return fmt.Errorf("%s: %w", old, errors.New("ns: mount point and source must both be directories or both files"))
	}
	key := mountKey{pt.dev, pt.qid.Path}
	e := &entry{src: src, create: flags&MCREATE != 0, cmd: cmd, point: key}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	es := ns.table[key]
	switch {
	case flags&MBEFORE != 0:
		es = append([]*entry{e}, es...)
	case flags&MAFTER != 0:
		es = append(es, e)
	default:
		for _, o := range es {
			ns.dropEntryLocked(o)
		}
		es = []*entry{e}
	}
	ns.table[key] = es
	ns.entries = append(ns.entries, e)
	return nil
}

// dropEntryLocked removes e from the ordered list; the caller fixes the table.
func (ns *Namespace) dropEntryLocked(e *entry) {
	for i, o := range ns.entries {
		if o == e {
			ns.entries = append(ns.entries[:i], ns.entries[i+1:]...)
			break
		}
	}
	if ns.batch != nil {
		ns.batch.dropped = append(ns.batch.dropped, e) // it may come back
		return
	}
	e.src.clunk()
}

// Unmount removes from old what new put there (a bind source path or a
// mount's server spec), or everything when new is empty.
func (ns *Namespace) Unmount(ctx context.Context, new, old string) error {
	pt, err := ns.resolve(ctx, old, false)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	key := mountKey{pt.dev, pt.qid.Path}
	pt.clunk()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	es := ns.table[key]
	if len(es) == 0 {
		return fmt.Errorf("ns: unmount: %s: not mounted", old)
	}
	var keep []*entry
	removed := 0
	for _, e := range es {
		if new == "" || e.cmd.Args[0] == new || (e.cmd.Op == "bind" && e.cmd.Args[0] == path.Clean(new)) {
			ns.dropEntryLocked(e)
			removed++
			continue
		}
		keep = append(keep, e)
	}
	if removed == 0 {
		return fmt.Errorf("ns: unmount: %s is not mounted on %s", new, old)
	}
	if len(keep) == 0 {
		delete(ns.table, key)
	} else {
		ns.table[key] = keep
	}
	return nil
}

// Commands returns the bind and mount commands in effect, in order: the
// namespace in namespace(6) form, as /ns/ns shows it.
func (ns *Namespace) Commands() []plan9.NSCmd {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	cmds := make([]plan9.NSCmd, len(ns.entries))
	for i, e := range ns.entries {
		cmds[i] = e.cmd
	}
	return cmds
}

// String formats the namespace like Plan 9's ns(1).
func (ns *Namespace) String() string {
	var b strings.Builder
	for _, c := range ns.Commands() {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Apply runs one namespace-file command. An import waits until the
// node is reached.
func (ns *Namespace) Apply(ctx context.Context, c plan9.NSCmd) error { return ns.apply(ctx, c, true) }

// apply runs c; wait says whether an import waits for its node.
func (ns *Namespace) apply(ctx context.Context, c plan9.NSCmd, wait bool) error {
	switch c.Op {
	case "import":
		return ns.applyImport(ctx, c, wait)
	case "bind":
		return ns.Bind(ctx, c.Args[0], c.Args[1], FlagsOf(c.Flags))
	case "mount":
		aname := ""
		if len(c.Args) > 2 {
			aname = c.Args[2]
		}
		return ns.Mount(ctx, c.Args[0], c.Args[1], aname, FlagsOf(c.Flags))
	case "unmount":
		if len(c.Args) == 1 {
			return ns.Unmount(ctx, "", c.Args[0])
		}
		return ns.Unmount(ctx, c.Args[0], c.Args[1])
	}
	return fmt.Errorf("%s: not supported in this namespace", c.Op)
}
