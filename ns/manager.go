package ns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"cheshire/atomicfile"
	"cheshire/plan9"
	"cheshire/styx"
)

// A Manager gives each attaching user a namespace of their own, made from
// the user's namespace file if there is one, else from the default
// commands. It implements styx.Attacher.
type Manager struct {
	dir      string // namespace files live here, one per user; "" keeps none
	defaults []plan9.NSCmd
	dial     func(ctx context.Context, addr, user string) (styx.Attacher, error)
	importer Importer
	// onExports is called after each change of the exports.
	onExports func()
	refused   func(ctx context.Context, key, aname string) // WithRefused
	log       *slog.Logger
	idleDrop  time.Duration // a namespace no file uses is dropped this long after

	exportMu     sync.Mutex                                                                // serializes changes to the exports
	exports      []Export                                                                  // guarded by mu: the exports when there is no dir
	exportsCache exportsCache                                                              // guarded by mu: the exports file as last parsed
	usersFile    string                                                                    // maps keys to users (WithUsers)
	keyServices  map[string]func(ctx context.Context, key, rest string) (styx.File, error) // WithKeyService
	maxWatches   int                                                                       // WithMaxWatches

	watchMu sync.Mutex
	watches map[string]int // guarded by watchMu: watches held, by user

	madeMu sync.Mutex
	made   []func(ctx context.Context, ns *Namespace) // guarded by madeMu: see OnMade

	mu      sync.Mutex
	spaces  map[string]*Namespace                        // guarded by mu
	servers map[string]styx.Attacher                     // guarded by mu
	perNS   map[string]func(ns *Namespace) styx.Attacher // guarded by mu
}

// Option configures NewManager.
type Option func(*Manager)

// WithDir keeps each user's namespace file in dir/users/USER, read at the
// first attach and rewritten after every change made through /ns/ctl; the
// node's own files (exports) sit in dir, apart from the users'.
func WithDir(dir string) Option { return func(m *Manager) { m.dir = dir } }

// WithDefaults sets the namespace of a user who has no namespace file.
func WithDefaults(cmds []plan9.NSCmd) Option { return func(m *Manager) { m.defaults = cmds } }

// WithDialer sets how mount reaches a 9P server given by a dial string.
func WithDialer(d func(ctx context.Context, addr, user string) (styx.Attacher, error)) Option {
	return func(m *Manager) { m.dial = d }
}

// WithExportsChanged sets a function called after each change of the
// exports (the node advertises them); it must not block.
func WithExportsChanged(f func()) Option { return func(m *Manager) { m.onExports = f } }

// WithIdleDrop sets how long after its last file is clunked a user's
// namespace is dropped from memory (its file stays, and the next attach
// reads it again); negative keeps namespaces for the manager's life. The
// default is DefaultIdleDrop.
func WithIdleDrop(d time.Duration) Option { return func(m *Manager) { m.idleDrop = d } }

// DefaultIdleDrop is how long an unused namespace stays in memory.
const DefaultIdleDrop = 2 * time.Minute

// WithLog sets the logger.
func WithLog(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// NewManager returns a Manager with no servers registered.
func NewManager(opts ...Option) *Manager {
	m := &Manager{spaces: map[string]*Namespace{}, servers: map[string]styx.Attacher{},
		perNS: map[string]func(*Namespace) styx.Attacher{}, log: slog.New(slog.DiscardHandler),
		idleDrop: DefaultIdleDrop}
	for _, o := range opts {
		o(m)
	}
	m.perNS["#export"] = func(ns *Namespace) styx.Attacher { return exportServer{m: m, ns: ns} }
	return m
}

// Register makes an in-process server mountable by spec (e.g. "#tmp").
func (m *Manager) Register(spec string, a styx.Attacher) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.servers[spec] = a
}

// RegisterPerNS registers a server made anew for each namespace (such as
// #ns, which shows the namespace it is mounted in).
func (m *Manager) RegisterPerNS(spec string, mk func(ns *Namespace) styx.Attacher) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.perNS[spec] = mk
}

// Unregister removes spec; existing mounts of it keep their attachments.
func (m *Manager) Unregister(spec string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.servers, spec)
	delete(m.perNS, spec)
}

func (m *Manager) server(ctx context.Context, ns *Namespace, spec string) (styx.Attacher, error) {
	m.mu.Lock()
	a, ok := m.servers[spec]
	mk := m.perNS[spec]
	m.mu.Unlock()
	switch {
	case ok:
		return a, nil
	case mk != nil:
		return mk(ns), nil
	case strings.HasPrefix(spec, "#"):
		return nil, fmt.Errorf("%s: no such server", spec)
	case m.dial == nil:
		return nil, fmt.Errorf("%s: no dialer for 9P servers", spec)
	}
	if _, err := plan9.ParseDial(spec); err != nil {
		return nil, err
	}
	return m.dial(ctx, spec, ns.user)
}

// maxUserLen is the longest user name a namespace is made for.
const maxUserLen = 64

// ValidUser reports why name cannot name a user, or nil: user names are
// 1 to 64 bytes of printable UTF-8 without '/', ':' (the views of remote
// keys are "key:KEY") or a leading '.', since each names a file.
func ValidUser(name string) error {
	switch {
	case name == "":
		return errors.New("ns: empty user name")
	case len(name) > maxUserLen:
		return fmt.Errorf("ns: user name longer than %d bytes", maxUserLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("ns: user name %q is not UTF-8", name)
	case strings.HasPrefix(name, "."), strings.ContainsAny(name, "/:"):
		return fmt.Errorf("ns: bad user name %q: no leading '.', no '/' or ':'", name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || r == ' ' {
			return fmt.Errorf("ns: bad user name %q: control character or space", name)
		}
	}
	return nil
}

// usersDir holds the namespace files, one per user.
func (m *Manager) usersDir() string { return filepath.Join(m.dir, "users") }

// nsFile is user's namespace file. A file left in dir/USER by an older
// version is moved there on first use.
func (m *Manager) nsFile(user string) string {
	f := filepath.Join(m.usersDir(), user)
	old := filepath.Join(m.dir, user)
	if user != "exports" && user != "users" {
		if fi, err := os.Lstat(old); err == nil && fi.Mode().IsRegular() {
			if _, err := os.Lstat(f); errors.Is(err, os.ErrNotExist) {
				if os.MkdirAll(m.usersDir(), 0700) == nil && os.Rename(old, f) == nil {
					m.log.Info("namespace file moved", "user", user, "from", old, "to", f)
				}
			}
		}
	}
	return f
}

// readNSFile returns user's saved namespace, or ok false if there is none.
// A file that cannot be parsed is moved aside to .USER.bad (user names
// never begin with '.') and logged, so that the node comes up with the
// default namespace rather than an unusable one.
func (m *Manager) readNSFile(user string) (cmds []plan9.NSCmd, source string, ok bool) {
	f := m.nsFile(user)
	data, err := os.ReadFile(f)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", false
	}
	if err == nil {
		if cmds, err = plan9.ParseNS(bytes.NewReader(data)); err == nil {
			return cmds, f, true
		}
	}
	bad := filepath.Join(m.usersDir(), "."+user+".bad")
	if rerr := os.Rename(f, bad); rerr != nil {
		bad = "(not moved: " + rerr.Error() + ")"
	}
	m.log.Error("namespace file unusable; using the default namespace", "user", user, "file", f, "kept", bad, "err", err)
	return nil, "", false
}

// Namespace returns user's namespace, making it on first use. A
// namespace that no file uses is dropped from memory after the manager's
// idle time (WithIdleDrop), and made again from its file when next asked
// for.
func (m *Manager) Namespace(ctx context.Context, user string) (*Namespace, error) {
	ns, err := m.acquire(ctx, user)
	if err != nil {
		return nil, err
	}
	m.release(ns)
	return ns, nil
}

// acquire is Namespace with a reference held, for a file to give back
// at its Clunk.
func (m *Manager) acquire(ctx context.Context, user string) (*Namespace, error) {
	if err := ValidUser(user); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if ns := m.spaces[user]; ns != nil {
		m.holdLocked(ns)
		m.mu.Unlock()
		return ns, nil
	}
	m.mu.Unlock()
	ns, err := newNamespace(ctx, m, user)
	if err != nil {
		return nil, err
	}
	cmds := m.defaults
	source := "defaults"
	if m.dir != "" {
		if saved, f, ok := m.readNSFile(user); ok {
			cmds, source = saved, f
		}
	}
	for _, c := range cmds {
		// Imports do not wait for their nodes: a node that is down
		// must not hold up the namespace.
		if err := ns.apply(ctx, c, false); err != nil {
			m.log.Warn("namespace command failed", "user", user, "from", source, "line", c.Line, "cmd", c.String(), "err", err)
		}
	}
	m.madeMu.Lock()
	made := slices.Clone(m.made)
	m.madeMu.Unlock()
	for _, f := range made {
		f(ctx, ns)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if other := m.spaces[user]; other != nil {
		// Another attach made it first.
		ns.Close()
		m.holdLocked(other)
		return other, nil
	}
	m.spaces[user] = ns
	m.holdLocked(ns)
	return ns, nil
}

// OnMade adds f to what is run on each user's namespace once it is made
// (from its file or the defaults), before any attach sees it: modules
// loaded at run time mount themselves in namespaces made later, for
// instance, including ones made again after an idle drop.
func (m *Manager) OnMade(f func(ctx context.Context, ns *Namespace)) {
	m.madeMu.Lock()
	m.made = append(m.made, f)
	m.madeMu.Unlock()
}

// hold takes a reference to ns.
func (m *Manager) hold(ns *Namespace) {
	m.mu.Lock()
	m.holdLocked(ns)
	m.mu.Unlock()
}

func (m *Manager) holdLocked(ns *Namespace) {
	ns.refs++
	if ns.idle != nil {
		ns.idle.Stop()
		ns.idle = nil
	}
}

// release gives back a reference to ns. The last one starts the idle
// time of a user's namespace; a remote key's view, made per attach, is
// closed at once.
func (m *Manager) release(ns *Namespace) {
	m.mu.Lock()
	ns.refs--
	if ns.refs > 0 {
		m.mu.Unlock()
		return
	}
	if m.spaces[ns.user] != ns {
		m.mu.Unlock()
		if isView(ns.user) {
			ns.Close()
		}
		return
	}
	if m.idleDrop >= 0 {
		ns.idle = time.AfterFunc(m.idleDrop, func() { m.drop(ns) })
	}
	m.mu.Unlock()
}

// drop forgets ns if no file has taken it up again.
func (m *Manager) drop(ns *Namespace) {
	m.mu.Lock()
	if ns.refs > 0 || m.spaces[ns.user] != ns {
		m.mu.Unlock()
		return
	}
	delete(m.spaces, ns.user)
	ns.idle = nil
	m.mu.Unlock()
	ns.Close()
	m.log.Debug("namespace dropped from memory: unused", "user", ns.user)
}

// Save writes ns to its user's namespace file, atomically. Saves of one
// namespace are serialised, and each writes the namespace as it is when
// the save begins, so the file always ends as the last change left it.
func (m *Manager) Save(ns *Namespace) error {
	if m.dir == "" {
		return nil
	}
	ns.saveMu.Lock()
	defer ns.saveMu.Unlock()
	text := "# namespace of " + ns.user + ", rewritten by cheshire after each change through /ns/ctl\n" + ns.String()
	if err := atomicfile.Write(m.nsFile(ns.user), []byte(text), 0600); err != nil {
		return fmt.Errorf("saving namespace: %w", err)
	}
	return nil
}

// Attach implements styx.Attacher: the root of uname's namespace, or the
// directory aname within it.
func (m *Manager) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	ns, err := m.acquire(ctx, uname)
	if err != nil {
		return nil, err
	}
	var c *chn
	if aname == "" || aname == "/" {
		c, err = ns.rootChan(ctx)
	} else {
		c, err = ns.resolve(ctx, aname, true)
	}
	if err != nil {
		m.release(ns)
		return nil, err
	}
	return &file{ns: ns, c: c, held: true}, nil
}

// Close closes every namespace.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ns := range m.spaces {
		if ns.idle != nil {
			ns.idle.Stop()
		}
		ns.Close()
	}
	m.spaces = map[string]*Namespace{}
}

// Spaces returns the namespaces made so far.
func (m *Manager) Spaces() []*Namespace {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Namespace, 0, len(m.spaces))
	for _, ns := range m.spaces {
		out = append(out, ns)
	}
	return out
}
