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

// CheckConfig accepts ice-servers, turn and fps lines.
func (m *Module) CheckConfig(cfg module.Config) error {
	_, _, err := parseConfig(cfg)
	return err
}

// parseConfig returns the ICE servers and the capture rate of cfg.
func parseConfig(cfg module.Config) ([]webrtc.ICEServer, int, error) {
	var servers []webrtc.ICEServer
	fps := DefaultFPS
	for _, e := range cfg.Entries {
		switch e.Key {
		case "fps":
			n := 0
			if len(e.Args) == 1 {
				n, _ = strconv.Atoi(e.Args[0])
			}
			if n < 1 || n > 60 {
				return nil, 0, e.Errorf("want fps N, N from 1 to 60")
			}
			fps = n
		case "ice-servers":
			for _, u := range e.Args {
				if !strings.HasPrefix(u, "stun:") {
					return nil, 0, e.Errorf("bad stun server %q: want stun:HOST:PORT (a TURN server goes on a turn line)", u)
				}
			}
			if len(e.Args) > 0 {
				servers = append(servers, webrtc.ICEServer{URLs: e.Args})
			}
		case "turn":
			if len(e.Args) != 3 {
				return nil, 0, e.Errorf("want turn URL USER CREDENTIAL")
			}
			if !strings.HasPrefix(e.Args[0], "turn:") && !strings.HasPrefix(e.Args[0], "turns:") {
				return nil, 0, e.Errorf("bad turn server %q: want turn: or turns:", e.Args[0])
			}
			servers = append(servers, webrtc.ICEServer{URLs: e.Args[:1], Username: e.Args[1], Credential: e.Args[2]})
		default:
			return nil, 0, e.Errorf("unknown setting (apps has ice-servers, turn and fps)")
		}
	}
	return servers, fps, nil
}

// Start serves the files with the configured ICE servers.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	urls, fps, err := parseConfig(env.Config)
	if err != nil {
		return nil, err
	}
	m.a.setICEServers(urls)
	m.a.fps.Store(int32(fps))
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

// Reconfigure takes new ICE servers without stopping the apps; sessions
// made from now on use them.
func (i instance) Reconfigure(ctx context.Context, cfg module.Config) error {
	urls, fps, err := parseConfig(cfg)
	if err != nil {
		return err
	}
	i.a.setICEServers(urls)
	i.a.fps.Store(int32(fps)) // for encoders started from now on
	return nil
}
