package dht

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"cheshire/providers/modules"
	"cheshire/styx"
	"cheshire/synth"
)

// Module is the dht module: a Node's files at /dht and its UDP socket,
// opened by Start and closed by Stop. The key comes from the
// constructor; the records fetched, the highest seq seen for each key,
// the node's own record and its announced paths belong to the Module and
// so outlive its instances.
//
// Configuration:
//
//	listen udp!HOST!PORT	(or HOST:PORT; DefaultListen if none)
//	bootstrap HOST:PORT...	(any number of lines)
//	public-routers on|off	(off: never contact the public routers)
type Module struct {
	key     ed25519.PrivateKey
	owner   string
	version string
	mem     *memory
}

var _ modules.Module = (*Module)(nil)

// NewModule returns the module of a node with key, its files owned by
// owner.
func NewModule(key ed25519.PrivateKey, owner, version string) *Module {
	return &Module{key: key, owner: owner, version: version, mem: newMemory()}
}

// Manifest describes the module.
func (m *Module) Manifest() modules.Manifest {
	return modules.Manifest{Name: "dht", Version: m.version, Mount: "/dht",
		Description: "the BitTorrent mainline DHT: records signed by the node's key, paths announced and found"}
}

// parseConfig returns the Options cfg asks for (without key and log).
func parseConfig(cfg modules.Config) (Options, error) {
	var o Options
	listens := 0
	for _, e := range cfg.Entries {
		switch e.Key {
		case "listen":
			if len(e.Args) != 1 {
				return Options{}, e.Errorf("want listen udp!HOST!PORT or HOST:PORT")
			}
			if listens++; listens > 1 {
				return Options{}, e.Errorf("more than one listen line")
			}
			if _, err := parseListen(e.Args[0]); err != nil {
				return Options{}, e.Errorf("%v", err)
			}
			o.Listen = e.Args[0]
		case "bootstrap":
			if len(e.Args) == 0 {
				return Options{}, e.Errorf("want bootstrap HOST:PORT...")
			}
			for _, a := range e.Args {
				if err := checkHostPort(a); err != nil {
					return Options{}, e.Errorf("%v", err)
				}
			}
			o.Bootstrap = append(o.Bootstrap, e.Args...)
		case "public-routers":
			if len(e.Args) != 1 || (e.Args[0] != "on" && e.Args[0] != "off") {
				return Options{}, e.Errorf("want public-routers on or off")
			}
			o.PublicRouters = e.Args[0] == "on"
		default:
			return Options{}, e.Errorf("unknown setting (want listen, bootstrap or public-routers)")
		}
	}
	return o, nil
}

// CheckConfig checks cfg.
func (m *Module) CheckConfig(cfg modules.Config) error {
	_, err := parseConfig(cfg)
	return err
}

// Start opens the UDP socket of env.Config and runs a DHT node on it
// until Stop.
func (m *Module) Start(ctx context.Context, env modules.Env) (modules.Instance, error) {
	o, err := parseConfig(env.Config)
	if err != nil {
		return nil, err
	}
	o.Key, o.Log = m.key, env.Log
	n, err := newNode(o, m.mem)
	if err != nil {
		return nil, err
	}
	return &instance{n: n, srv: n.Files(m.owner)}, nil
}

// instance is a running dht module.
type instance struct {
	n   *Node
	srv *synth.Server
}

// Attach serves the node's files.
func (i *instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.srv.Attach(ctx, uname, aname, auth)
}

// Stop closes the node and its socket.
func (i *instance) Stop(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- i.n.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("dht: stop: %w", ctx.Err())
	}
}
