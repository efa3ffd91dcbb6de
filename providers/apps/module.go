package apps

import (
	"context"
	"strconv"
	"strings"

	"cheshire/module"
	"cheshire/styx"

	"github.com/pion/webrtc/v4"
)

// Module is the apps module: an Apps's files at /apps. Its configuration
// takes, any number of times:
//
//	ice-servers URL...          STUN servers (stun:HOST:PORT) for the
//	                            sessions' ICE
//	turn URL USER CREDENTIAL    a TURN server (turn:HOST:PORT?transport=udp,
//	                            turns:...) and its long-term credential
//	fps N                       the capture rate, 1 to 60 (DefaultFPS)
//	playout-delay MIN MAX | off the least and most time, in ms (0 to
//	                            40950, multiples of 10), a browser may hold
//	                            a frame before showing it; 0 0 by default
//	                            (show at once: the least latency), off to
//	                            let the browser smooth as it sees fit
//
// No ICE servers by default: peers on one host or one LAN need none.
//
// The registry belongs to the Apps and outlives the module's instances;
// a stop of the module stops every app.
type Module struct {
	a       *Apps
	version string
}

var (
	_ module.Module       = (*Module)(nil)
	_ module.Reconfigurer = instance{}
)

// NewModule returns the module serving a.
func NewModule(a *Apps, version string) *Module { return &Module{a: a, version: version} }

// Manifest describes the module.
func (m *Module) Manifest() module.Manifest {
	return module.Manifest{Name: "apps", Version: m.version, Mount: "/apps",
		Description: "applications under Xvfb, streamed to browsers over WebRTC with input back"}
}

// CheckConfig accepts ice-servers, turn, fps and playout-delay lines.
func (m *Module) CheckConfig(cfg module.Config) error {
	_, err := parseConfig(cfg)
	return err
}

// config is a parsed configuration of the module.
type config struct {
	servers  []webrtc.ICEServer
	fps      int
	min, max int // playout delay in ms; min < 0: off
}

// apply makes c the configuration of a's sessions and encoders from now on.
func (c config) apply(a *Apps) {
	a.setICEServers(c.servers)
	a.fps.Store(int32(c.fps))
	if c.min < 0 {
		a.playout.off()
	} else {
		a.playout.set(c.min, c.max)
	}
}

// parseConfig parses cfg.
func parseConfig(cfg module.Config) (config, error) {
	var servers []webrtc.ICEServer
	fps := DefaultFPS
	min, max := 0, 0
	for _, e := range cfg.Entries {
		switch e.Key {
		case "fps":
			n := 0
			if len(e.Args) == 1 {
				n, _ = strconv.Atoi(e.Args[0])
			}
			if n < 1 || n > 60 {
				return config{}, e.Errorf("want fps N, N from 1 to 60")
			}
			fps = n
		case "playout-delay":
			if len(e.Args) == 1 && e.Args[0] == "off" {
				min, max = -1, -1
				break
			}
			ok := len(e.Args) == 2
			if ok {
				var err1, err2 error
				min, err1 = strconv.Atoi(e.Args[0])
				max, err2 = strconv.Atoi(e.Args[1])
				ok = err1 == nil && err2 == nil && min >= 0 && min <= max && max <= 40950 && min%10 == 0 && max%10 == 0
			}
			if !ok {
				return config{}, e.Errorf("want playout-delay MIN MAX (ms, multiples of 10, 0 <= MIN <= MAX <= 40950) or playout-delay off")
			}
		case "ice-servers":
			for _, u := range e.Args {
				if !strings.HasPrefix(u, "stun:") {
					return config{}, e.Errorf("bad stun server %q: want stun:HOST:PORT (a TURN server goes on a turn line)", u)
				}
			}
			if len(e.Args) > 0 {
				servers = append(servers, webrtc.ICEServer{URLs: e.Args})
			}
		case "turn":
			if len(e.Args) != 3 {
				return config{}, e.Errorf("want turn URL USER CREDENTIAL")
			}
			if !strings.HasPrefix(e.Args[0], "turn:") && !strings.HasPrefix(e.Args[0], "turns:") {
				return config{}, e.Errorf("bad turn server %q: want turn: or turns:", e.Args[0])
			}
			servers = append(servers, webrtc.ICEServer{URLs: e.Args[:1], Username: e.Args[1], Credential: e.Args[2]})
		default:
			return config{}, e.Errorf("unknown setting (apps has ice-servers, turn, fps and playout-delay)")
		}
	}
	return config{servers: servers, fps: fps, min: min, max: max}, nil
}

// Start serves the files with the configured ICE servers.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	c, err := parseConfig(env.Config)
	if err != nil {
		return nil, err
	}
	c.apply(m.a)
	return instance{m.a}, nil
}

// instance is a running apps module.
type instance struct{ a *Apps }

// Attach serves the Apps's files.
func (i instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.a.Attach(ctx, uname, aname, auth)
}

// Stop stops every running app.
func (i instance) Stop(ctx context.Context) error {
	i.a.StopAll()
	return nil
}

// Reconfigure takes new settings without stopping the apps: the ICE
// servers for sessions made from now on, the capture rate for encoders
// started from now on, the playout delay at once.
func (i instance) Reconfigure(ctx context.Context, cfg module.Config) error {
	c, err := parseConfig(cfg)
	if err != nil {
		return err
	}
	c.apply(i.a)
	return nil
}
