package dht

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"

	dhtlib "cheshire/dht"
	"cheshire/module"
	"cheshire/styx"
	"cheshire/synth"
)

// Module is the dht module: a Node's files at /dht and its UDP socket,
// opened by Start and closed by Stop. The key comes from the
// constructor; the records fetched, the highest seq seen for each key,
// the node's own record and its announced paths belong to the Module and
// so outlive its instances (a dhtlib.Memory). Each instance also
// advertises the node (see Advertise).
//
// Configuration (each line overrides the defaults given to NewModule):
//
//	listen udp!HOST!PORT	(or HOST:PORT; DefaultListen if none)
//	bootstrap HOST:PORT...	(any number of lines)
//	public-routers on|off	(off: never contact the public routers)
type Module struct {
	key      ed25519.PrivateKey
	owner    string
	version  string
	defaults dhtlib.Options
	mem      *dhtlib.Memory
	adv      dhtlib.Advertiser

	mu  sync.Mutex
	cur *instance // guarded by mu: the running instance, nil if stopped
}

var _ module.Module = (*Module)(nil)

// NewModule returns the module of a node with key, its files owned by
// owner. Its instances run with defaults, but for Key and Log (the
// module's key and the instance's log): a listen, bootstrap or
// public-routers line of the module's configuration replaces
// defaults.Listen, defaults.Bootstrap or defaults.PublicRouters.
func NewModule(key ed25519.PrivateKey, owner, version string, defaults dhtlib.Options) *Module {
	defaults.Bootstrap = slices.Clone(defaults.Bootstrap)
	defaults.Key, defaults.Log, defaults.Memory = nil, nil, nil
	return &Module{key: key, owner: owner, version: version, defaults: defaults, mem: dhtlib.NewMemory()}
}

// Manifest describes the module.
func (m *Module) Manifest() module.Manifest {
	return module.Manifest{Name: "dht", Version: m.version, Mount: "/dht",
		Description: "the BitTorrent mainline DHT: records signed by the node's key, paths announced and found"}
}

// parseConfig returns base with the settings of cfg in place of its
// own, checked (without key and log).
func parseConfig(cfg module.Config, base dhtlib.Options) (dhtlib.Options, error) {
	o := base
	listens, boots := 0, 0
	for _, e := range cfg.Entries {
		switch e.Key {
		case "listen":
			if len(e.Args) != 1 {
				return dhtlib.Options{}, e.Errorf("want listen udp!HOST!PORT or HOST:PORT")
			}
			if listens++; listens > 1 {
				return dhtlib.Options{}, e.Errorf("more than one listen line")
			}
			if _, err := dhtlib.ParseListen(e.Args[0]); err != nil {
				return dhtlib.Options{}, e.Errorf("%v", err)
			}
			o.Listen = e.Args[0]
		case "bootstrap":
			if len(e.Args) == 0 {
				return dhtlib.Options{}, e.Errorf("want bootstrap HOST:PORT...")
			}
			for _, a := range e.Args {
				if err := dhtlib.CheckHostPort(a); err != nil {
					return dhtlib.Options{}, e.Errorf("%v", err)
				}
			}
			if boots++; boots == 1 {
				o.Bootstrap = nil // the config's list replaces the default
			}
			o.Bootstrap = append(o.Bootstrap, e.Args...)
		case "public-routers":
			if len(e.Args) != 1 || (e.Args[0] != "on" && e.Args[0] != "off") {
				return dhtlib.Options{}, e.Errorf("want public-routers on or off")
			}
			o.PublicRouters = e.Args[0] == "on"
		default:
			return dhtlib.Options{}, e.Errorf("unknown setting (want listen, bootstrap or public-routers)")
		}
	}
	// The defaults, when no line replaced them.
	if listens == 0 {
		if _, err := dhtlib.ParseListen(o.Listen); err != nil {
			return dhtlib.Options{}, fmt.Errorf("%w (the default: no listen line)", err)
		}
	}
	if boots == 0 {
		for _, b := range o.Bootstrap {
			if err := dhtlib.CheckHostPort(b); err != nil {
				return dhtlib.Options{}, fmt.Errorf("dht: bootstrap: %w (the default: no bootstrap line)", err)
			}
		}
	}
	return o, nil
}

// CheckConfig checks cfg, and the defaults it leaves in place.
func (m *Module) CheckConfig(cfg module.Config) error {
	_, err := parseConfig(cfg, m.defaults)
	return err
}

// Start opens the UDP socket of env.Config and runs a DHT node on it
// until Stop, with a goroutine that advertises the node.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	o, err := parseConfig(env.Config, m.defaults)
	if err != nil {
		return nil, err
	}
	o.Key, o.Log, o.Memory = m.key, env.Log, m.mem
	n, err := dhtlib.New(o)
	if err != nil {
		return nil, err
	}
	i := &instance{m: m, n: n, srv: Files(n, m.owner), done: make(chan struct{})}
	actx, cancel := context.WithCancel(context.Background())
	i.cancel = cancel
	m.mu.Lock()
	m.cur = i
	m.mu.Unlock()
	go func() {
		defer close(i.done)
		m.adv.Run(actx, n)
	}()
	return i, nil
}

// Node returns the running instance's Node, or nil while the module is
// stopped.
func (m *Module) Node() *dhtlib.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil
	}
	return m.cur.n
}

// instance is a running dht module.
type instance struct {
	m   *Module
	n   *dhtlib.Node
	srv *synth.Server

	cancel context.CancelFunc // ends the advertising loop
	done   chan struct{}      // closed when the advertising loop returns
}

// Attach serves the node's files.
func (i *instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.srv.Attach(ctx, uname, aname, auth)
}

// Advertise sets where the module gets its advert; each running instance
// publishes it after it starts and again after Readvertise (see
// dhtlib.Advertiser.Set). Call before or after Start.
func (m *Module) Advertise(f func() dhtlib.Advert) { m.adv.Set(f) }

// Readvertise tells the running instance (if any) that the advert
// changed: it publishes again at once. Never blocks.
func (m *Module) Readvertise() { m.adv.Wake() }

// Stop ends the advertising loop and closes the node and its socket.
func (i *instance) Stop(ctx context.Context) error {
	i.cancel()
	i.m.mu.Lock()
	if i.m.cur == i {
		i.m.cur = nil
	}
	i.m.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		err := i.n.Close()
		<-i.done
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("dht: stop: %w", ctx.Err())
	}
}
