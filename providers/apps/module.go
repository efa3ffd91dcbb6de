package apps

import (
	"context"
	"strings"

	"cheshire/module"
	"cheshire/styx"
)

// Module is the apps module: an Apps's files at /apps. Its configuration
// takes one setting:
//
//	ice-servers URL...   STUN/TURN servers for the sessions' ICE
//	                     (stun:HOST:PORT, turn:HOST:PORT?transport=udp);
//	                     none by default: peers on one host or one LAN
//	                     need none.
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

// CheckConfig accepts ice-servers lines.
func (m *Module) CheckConfig(cfg module.Config) error {
	_, err := iceServers(cfg)
	return err
}

func iceServers(cfg module.Config) ([]string, error) {
	var urls []string
	for _, e := range cfg.Entries {
		if e.Key != "ice-servers" {
			return nil, e.Errorf("unknown setting (apps has ice-servers)")
		}
		for _, u := range e.Args {
			if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				return nil, e.Errorf("bad ice server %q: want stun:, turn: or turns:", u)
			}
			urls = append(urls, u)
		}
	}
	return urls, nil
}

// Start serves the files with the configured ICE servers.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	urls, err := iceServers(env.Config)
	if err != nil {
		return nil, err
	}
	m.a.SetICEServers(urls)
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
	urls, err := iceServers(cfg)
	if err != nil {
		return err
	}
	i.a.SetICEServers(urls)
	return nil
}
