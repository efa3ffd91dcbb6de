// Package module is the vocabulary of the node's module framework: a
// Module (a capability the node can start, stop and reconfigure), its
// Instance, the Env it starts in, its Manifest and Config, and Native,
// which makes a Module of a provider compiled into the node. Providers
// import it to be modules; the manager that runs them is package
// modules. It imports only plan9 and styx.
package module

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"
)

// A Module is a capability the node can start, stop and reconfigure. Its
// value outlives its instances: state that must survive a stop or a
// reload (the files of /tmp, say) belongs to the Module, not the Instance.
type Module interface {
	// Manifest describes the module. It does not change for the life of
	// the value; a reload with new code makes a new Module.
	Manifest() Manifest
	// CheckConfig reports whether cfg is a configuration the module can
	// run with, naming the offending line if not. It changes nothing.
	CheckConfig(cfg Config) error
	// Start starts an instance under env.Config. The manager calls Start
	// only after CheckConfig accepted the configuration and every
	// dependency is running, and never while another instance of the
	// same Module runs.
	Start(ctx context.Context, env Env) (Instance, error)
}

// Env is what the manager hands a starting instance.
type Env struct {
	Name   string       // the module's name
	Config Config       // its configuration, without the manager's own keys
	Dir    string       // a private data directory, DIR/modules/NAME/data, made on demand
	Log    *slog.Logger // goes to NAME/log and the node log
	// Fail reports that the instance can no longer serve (a trap, a
	// budget overrun). The manager marks the module failed, stops
	// routing requests to it and calls Stop.
	Fail func(err error)
	// Namespace attaches to the node owner's namespace as the module,
	// for instances that call back into it; nil if there is none.
	Namespace styx.Attacher
	// Changed tells those watching the module's files (/ns/watch) of a
	// change the instance made by itself, not through a request (a
	// zone replaced by a DNS update, a ref moved by a push): op is
	// create, write, remove, rename (newPath the new path) or wstat,
	// path a path of its tree as attached with aname "". Changes made
	// by requests are told by the framework. For a write it stats the
	// file (as the node's owner) to tell its version, so call it with
	// no lock held that the file's stat takes. Nil outside a manager.
	Changed func(op, path, newPath string)
}

// An Instance is a running module: the file server of its files until
// Stop. Requests reach it only through the manager, which drains them
// before calling Stop, so Stop need not wait for requests.
type Instance interface {
	styx.Attacher
	// Stop releases what the instance holds. It is called once.
	Stop(ctx context.Context) error
}

// A Reconfigurer is an Instance that applies a new configuration in
// place, without a restart. Without it a config change restarts the
// instance (drained first, so no acknowledged write is lost).
type Reconfigurer interface {
	Reconfigure(ctx context.Context, cfg Config) error
}

// A Manifest describes a module.
type Manifest struct {
	Name        string
	Version     string
	Description string
	Author      string   // the author's key (z-base-32 ed25519) for packages; "" for built-ins
	Deps        []string // modules that must run for this one to run
	Mount       string   // where namespaces mount it by default ("/node"); "" for nowhere
	Lazy        bool     // start at the first walk into its files, not at node start
	Requires    []Perm   // permissions a package asks for
	Source      string   // where it was loaded from; "" for built-ins
	// NoTree says the module has no tree of its own to serve: it serves
	// only a tree named by a mount's spec (#host) or one per namespace
	// (#ns). NAME/fs is then left out of /modules, since nothing could
	// be walked to through it.
	NoTree bool
}

// Text is the manifest as NAME/manifest shows it: "key value" lines.
func (m Manifest) Text() string {
	var b strings.Builder
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s %s\n", k, plan9.Quote(v))
		}
	}
	kv("name", m.Name)
	kv("version", m.Version)
	kv("description", m.Description)
	kv("author", m.Author)
	for _, d := range m.Deps {
		kv("dep", d)
	}
	kv("mount", m.Mount)
	if m.Lazy {
		kv("lazy", "on")
	}
	for _, p := range m.Requires {
		fmt.Fprintf(&b, "requires %s\n", p)
	}
	kv("source", m.Source)
	return b.String()
}

// A Perm is one permission a package requests or an owner allows.
type Perm struct {
	Kind string // "read" or "write" (a namespace path and what is under it), "http" (host:port, or *)
	Arg  string
}

func (p Perm) String() string { return p.Kind + " " + plan9.Quote(p.Arg) }

// Covers reports whether p grants q: the same kind, and q's path at or
// under p's path (read and write; write implies read), or q's host:port
// matched by p's pattern (http; "*" matches all, "host:*" any port).
func (p Perm) Covers(q Perm) bool {
	switch {
	case p.Kind == q.Kind, p.Kind == "write" && q.Kind == "read":
	default:
		return false
	}
	switch q.Kind {
	case "read", "write":
		if p.Arg == "/" {
			return strings.HasPrefix(q.Arg, "/")
		}
		return q.Arg == p.Arg || strings.HasPrefix(q.Arg, p.Arg+"/")
	case "http":
		if p.Arg == "*" || p.Arg == q.Arg {
			return true
		}
		if host, ok := strings.CutSuffix(p.Arg, ":*"); ok {
			qh, _, _ := strings.Cut(q.Arg, ":")
			return qh == host
		}
	}
	return false
}

// ParsePerm parses "read PATH", "write PATH" or "http HOST:PORT".
func ParsePerm(args []string) (Perm, error) {
	if len(args) != 2 {
		return Perm{}, fmt.Errorf("permission %q: want read PATH, write PATH or http HOST:PORT", strings.Join(args, " "))
	}
	p := Perm{Kind: args[0], Arg: args[1]}
	switch p.Kind {
	case "read", "write":
		if !strings.HasPrefix(p.Arg, "/") || strings.Contains("/"+p.Arg+"/", "/../") {
			return Perm{}, fmt.Errorf("permission %q: path must be absolute and without ..", p.String())
		}
		if len(p.Arg) > 1 {
			p.Arg = strings.TrimRight(p.Arg, "/")
		}
	case "http":
		if p.Arg != "*" && !strings.Contains(p.Arg, ":") {
			return Perm{}, fmt.Errorf("permission %q: want HOST:PORT, HOST:* or *", p.String())
		}
	default:
		return Perm{}, fmt.Errorf("permission %q: unknown kind %q (want read, write or http)", strings.Join(args, " "), p.Kind)
	}
	return p, nil
}

// Config is a module configuration: lines of "key args...", in rc
// quoting, with # comments. The manager's own keys (lazy, hotreload,
// mount, restart) are taken out before a Module sees it.
type Config struct {
	Text    string
	Entries []ConfigEntry
}

// A ConfigEntry is one line of a Config.
type ConfigEntry struct {
	Key  string
	Args []string
	Line int // 1-based
}

// ParseConfig parses text, naming the line of any quoting error.
func ParseConfig(text string) (Config, error) {
	c := Config{Text: text}
	for i, line := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		w, err := plan9.Tokenize(line)
		if err != nil {
			return Config{}, &LineError{Line: i + 1, Err: err}
		}
		if len(w) == 0 {
			continue
		}
		if w[0] == "" {
			return Config{}, &LineError{Line: i + 1, Err: errors.New("empty key")}
		}
		c.Entries = append(c.Entries, ConfigEntry{Key: w[0], Args: w[1:], Line: i + 1})
	}
	return c, nil
}

// All returns the entries with key.
func (c Config) All(key string) []ConfigEntry {
	var out []ConfigEntry
	for _, e := range c.Entries {
		if e.Key == key {
			out = append(out, e)
		}
	}
	return out
}

// Get returns the args of the last entry with key.
func (c Config) Get(key string) ([]string, bool) {
	all := c.All(key)
	if len(all) == 0 {
		return nil, false
	}
	return all[len(all)-1].Args, true
}

// Errorf returns an error naming e's line, a *LineError.
func (e ConfigEntry) Errorf(format string, args ...any) error {
	return &LineError{Line: e.Line, Key: e.Key, Err: fmt.Errorf(format, args...)}
}

// A LineError is a configuration refused because of one of its lines,
// as opposed to one refused as a whole (a setting missing). A line so
// refused stays refused whatever follows it, so a write of the config
// file fails as soon as it carries the line.
type LineError struct {
	Line int    // 1-based
	Key  string // the line's key; "" if the line could not be parsed
	Err  error
}

func (e *LineError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("config line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("config line %d (%s): %v", e.Line, e.Key, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// A Namespace is the namespace a NamespaceInstance is mounted in: to the
// framework an opaque handle, which only the code that made the module
// (cmd's wiring, with package ns) knows the type of.
type Namespace any

// A NamespaceInstance is an Instance that serves each namespace a tree of
// its own (as #ns shows the namespace it is mounted in). Attach is used
// only outside namespaces.
type NamespaceInstance interface {
	Instance
	ForNamespace(n Namespace) styx.Attacher
}

// A Loader makes a Module of a package file's bytes, refusing packages
// that are not signed by a trusted author.
type Loader func(ctx context.Context, name string, data []byte, source string) (Module, error)
