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

// An Importer reaches other nodes by key, for the import command.
type Importer interface {
	// Import returns the root of the tree rpath (a path, "" for the
	// whole of what the node exports to us) of the node holding key
	// (z-base-32). With wait, it returns only once the node has been
	// reached, or the reason it cannot be; without, at once. The root
	// holds the connection until it is clunked.
	Import(ctx context.Context, key, rpath string, wait bool) (styx.File, error)
	// State describes the connection to key in one line of words:
	// state, address, and why it is down.
	State(key string) string
}

// WithImporter sets how the import command reaches other nodes.
func WithImporter(im Importer) Option { return func(m *Manager) { m.importer = im } }

// Import mounts the tree rpath of the node holding key on old, as Plan 9's
// import(4) does; it is recorded as an import command. rpath is a path
// of what the node shows the key, or a service it offers keys
// ("#requests", to ask its owner for something). With wait the node
// must be reachable now; without (a namespace being restored), the
// import is made at once and reaches the node when first used.
func (ns *Namespace) Import(ctx context.Context, key, rpath, old string, flags int, wait bool) error {
	if ns.mgr.importer == nil {
		return fmt.Errorf("import: %w: this node imports nothing", plan9.ErrNotSupported)
	}
	switch {
	case strings.HasPrefix(rpath, "#"):
		// A service of the remote node for keys (#requests, #msg: see
		// WithKeyService), with the rest a path in it.
		if svc, rest, ok := strings.Cut(rpath, "/"); ok {
			rpath = strings.TrimSuffix(svc+path.Clean("/"+rest), "/")
		}
	case rpath != "":
		if !strings.HasPrefix(rpath, "/") {
			return fmt.Errorf("ns: import: remote path %q is not absolute (or a #service)", rpath)
		}
		rpath = path.Clean(rpath)
	}
	root, err := ns.mgr.importer.Import(ctx, key, rpath, wait)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	dev := ns.newDevice(key, rpath, root)
	dev.imported = true
	src := &chn{dev: dev, file: root, qid: root.Qid(), path: path.Clean(old), dpath: "/"}
	args := []string{key}
	if rpath != "" && rpath != "/" {
		args = append(args, rpath)
	}
	args = append(args, path.Clean(old))
	cmd := plan9.NSCmd{Op: "import", Flags: flagLetters(flags), Args: args}
	if err := ns.attachAt(ctx, src, old, flags, cmd); err != nil {
		root.Clunk()
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// applyImport runs an import command: import [-abc] KEY [REMOTEPATH] MOUNTPOINT.
func (ns *Namespace) applyImport(ctx context.Context, c plan9.NSCmd, wait bool) error {
	switch len(c.Args) {
	case 2:
		return ns.Import(ctx, c.Args[0], "", c.Args[1], FlagsOf(c.Flags), wait)
	case 3:
		return ns.Import(ctx, c.Args[0], c.Args[1], c.Args[2], FlagsOf(c.Flags), wait)
	}
	return errors.New("ns: import: usage: import [-abc] KEY [REMOTEPATH] MOUNTPOINT")
}

// importsText lists the namespace's imports, one per line: the import
// command, then the state of its connection.
func (ns *Namespace) importsText() string {
	var b strings.Builder
	for _, c := range ns.Commands() {
		if c.Op != "import" {
			continue
		}
		b.WriteString(c.String())
		if ns.mgr.importer != nil {
			b.WriteString(" # " + ns.mgr.importer.State(c.Args[0]))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
