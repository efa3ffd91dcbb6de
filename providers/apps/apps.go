// Package apps serves /apps: applications run each under its own Xvfb
// display, their screens captured and encoded to H.264 by ffmpeg and
// streamed to browsers over WebRTC (pion), with input sent back.
//
//	/apps/ctl                      register NAME CMD [ARGS...], unregister NAME
//	/apps/NAME/ctl                 start, stop, resize W H
//	/apps/NAME/status              state, display, pid, uptime, size, sessions, error
//	/apps/NAME/log                 the app's stdout and stderr
//	/apps/NAME/sessions/clone      opening it makes a session N
//	/apps/NAME/sessions/N/offer    write the browser's SDP offer (taken at clunk)
//	/apps/NAME/sessions/N/answer   read the node's SDP answer
//	/apps/NAME/sessions/N/input    write input events, one a line
//	/apps/NAME/sessions/N/clipboard  the display's clipboard
//	/apps/NAME/sessions/N/stats    frames, bitrate, RTT, loss
//	/apps/NAME/sessions/N/ctl      close, control
//
// Lock order: Apps.mu before app.mu; session.mu before app.mu (an offer
// starts the encoder while it holds its session).
package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"

	"cheshire/atomicfile"
	"cheshire/synth"

	"github.com/pion/webrtc/v4"
)

// Options configure Apps.
type Options struct {
	Owner       string
	Log         *slog.Logger
	MaxSessions int // sessions per app (default 4)
	MaxApps     int // registered apps (default 32)
}

// Apps is the /apps file server and the apps it runs.
type Apps struct {
	*synth.Server
	dir  string
	opts Options
	log  *slog.Logger
	root *synth.Dir

	fps     atomic.Int32 // the capture rate of encoders started from now on
	playout playout      // the playout delay asked of browsers (playout.go)
	audioOK bool         // pulseaudio and pactl are installed: apps have sound (audio.go)

	mu   sync.Mutex
	apps map[string]*app    // guarded by mu
	ice  []webrtc.ICEServer // guarded by mu: STUN/TURN servers for new sessions

	apiOnce sync.Once
	api     *webrtc.API // made once, by webrtcAPI
	apiErr  error
}

// spec is an app as registered, the unit of the registry file.
type spec struct {
	Name string   `json:"name"`
	Cmd  []string `json:"cmd"`
	W    int      `json:"w"`
	H    int      `json:"h"`
}

const (
	defaultW, defaultH = 1280, 720
	maxDim             = 4096
	minDim             = 64
)

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// New opens the registry in dir (made if need be) and serves its apps,
// none of them running.
func New(dir string, o Options) (*Apps, error) {
	if o.MaxSessions <= 0 {
		o.MaxSessions = 4
	}
	if o.MaxApps <= 0 {
		o.MaxApps = 32
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Owner == "" {
		o.Owner = "none"
	}
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, fmt.Errorf("apps: data directory: %w", err)
	}
	a := &Apps{dir: dir, opts: o, log: o.Log, apps: map[string]*app{}}
	_, err := exec.LookPath("pulseaudio")
	_, err2 := exec.LookPath("pactl")
	a.audioOK = err == nil && err2 == nil
	a.fps.Store(DefaultFPS)
	a.playout.set(0, 0)
	a.root = synth.NewDir("apps", 0555)
	a.root.Add(synth.Ctl("ctl", 0660, a.cmds(), a.ctlStatus))
	specs, err := a.load()
	if err != nil {
		return nil, err
	}
	for _, s := range specs {
		a.addApp(s)
	}
	a.Server = synth.NewServer(a.root, synth.WithOwner(o.Owner))
	return a, nil
}

func (a *Apps) registryPath() string { return filepath.Join(a.dir, "registry.json") }

func (a *Apps) load() ([]spec, error) {
	b, err := os.ReadFile(a.registryPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("apps: registry: %w", err)
	}
	var specs []spec
	if err := json.Unmarshal(b, &specs); err != nil {
		return nil, fmt.Errorf("apps: bad registry %s: %w", a.registryPath(), err)
	}
	return specs, nil
}

// saveLocked writes the registry; a.mu is held.
func (a *Apps) saveLocked() error {
	specs := make([]spec, 0, len(a.apps))
	for _, ap := range a.apps {
		specs = append(specs, ap.spec())
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	b, err := json.MarshalIndent(specs, "", "\t")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(a.registryPath(), append(b, '\n'), 0600); err != nil {
		return fmt.Errorf("apps: registry: %w", err)
	}
	return nil
}

func (a *Apps) addApp(s spec) *app {
	ap := newApp(a, s)
	a.apps[s.Name] = ap
	a.root.Add(ap.dir)
	return ap
}

func (a *Apps) cmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "register", Min: 2, Max: 64, Usage: "register NAME CMD [ARGS...]", Run: func(ctx context.Context, args []string) error {
			return a.Register(args[0], args[1:])
		}},
		{Name: "unregister", Min: 1, Max: 1, Usage: "unregister NAME", Run: func(ctx context.Context, args []string) error {
			return a.Unregister(args[0])
		}},
	}
}

// Register adds an app named name that runs argv, and saves the registry.
func (a *Apps) Register(name string, argv []string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("apps: bad app name %q: want [a-z0-9-], at most 63", name)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.apps[name]; ok {
		return fmt.Errorf("apps: %s already registered", name)
	}
	if len(a.apps) >= a.opts.MaxApps {
		return fmt.Errorf("apps: too many apps (%d)", a.opts.MaxApps)
	}
	a.addApp(spec{Name: name, Cmd: argv, W: defaultW, H: defaultH})
	if err := a.saveLocked(); err != nil {
		delete(a.apps, name)
		a.root.Remove(name)
		return err
	}
	return nil
}

// Unregister stops and removes the app named name.
func (a *Apps) Unregister(name string) error {
	a.mu.Lock()
	ap, ok := a.apps[name]
	if ok {
		delete(a.apps, name)
		a.root.Remove(name)
	}
	err := a.saveLocked()
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("apps: no app %q", name)
	}
	ap.stop(errors.New("apps: unregistered: no such app"))
	return err
}

// Registered reports whether an app named name is registered here.
func (a *Apps) Registered(name string) bool {
	_, err := a.lookup(name)
	return err == nil
}

// lookup returns the app named name.
func (a *Apps) lookup(name string) (*app, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ap, ok := a.apps[name]
	if !ok {
		return nil, fmt.Errorf("apps: no app %q", name)
	}
	return ap, nil
}

func (a *Apps) ctlStatus(ctx context.Context) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := make([]string, 0, len(a.apps))
	for n := range a.apps {
		names = append(names, n)
	}
	sort.Strings(names)
	var s string
	for _, n := range names {
		s += fmt.Sprintf("app %s %s\n", n, quoteArgs(a.apps[n].spec().Cmd))
	}
	return s
}

// setICEServers sets the STUN/TURN servers of sessions made from now on.
func (a *Apps) setICEServers(servers []webrtc.ICEServer) {
	a.mu.Lock()
	a.ice = servers
	a.mu.Unlock()
}

func (a *Apps) iceServers() []webrtc.ICEServer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ice
}

// StopAll stops every running app: their processes are killed and their
// sessions closed.
func (a *Apps) StopAll() {
	a.mu.Lock()
	all := make([]*app, 0, len(a.apps))
	for _, ap := range a.apps {
		all = append(all, ap)
	}
	a.mu.Unlock()
	for _, ap := range all {
		ap.stop(nil)
	}
}
