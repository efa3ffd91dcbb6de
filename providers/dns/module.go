package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"cheshire/plan9"
	"cheshire/providers/modules"
	"cheshire/styx"
)

// DefaultListen is where the module answers queries, over UDP and TCP,
// when its configuration names no address.
const DefaultListen = "127.0.0.1:5353"

// Module is the dns module: a Server's files at /dns, and its UDP and
// TCP sockets, opened by Start and closed by Stop. The zones belong to
// the Server and so outlive the module's instances.
//
// Configuration, one address a line:
//
//	listen udp!HOST!PORT
//	listen tcp!HOST!PORT
//	listen HOST:PORT	(UDP and TCP)
//
// Without a listen line it listens on DefaultListen.
type Module struct {
	srv     *Server
	version string
}

var _ modules.Module = (*Module)(nil)

// NewModule returns the module serving srv. Until Start, and after
// Stop, srv's files change nothing: writes fail with "dns: module
// stopped" (srv's Go methods still work).
func NewModule(srv *Server, version string) *Module {
	if srv != nil {
		srv.halt()
	}
	return &Module{srv: srv, version: version}
}

// Manifest describes the module.
func (m *Module) Manifest() modules.Manifest {
	return modules.Manifest{Name: "dns", Version: m.version, Mount: "/dns",
		Description: "DNS zones as files, served over UDP, TCP and HTTPS, signed and updated live"}
}

// listenAddr is one socket to open: network "udp" or "tcp".
type listenAddr struct {
	network, addr string
}

// parseListen returns the sockets cfg asks for.
func parseListen(cfg modules.Config) ([]listenAddr, error) {
	var out []listenAddr
	for _, e := range cfg.Entries {
		if e.Key != "listen" {
			return nil, e.Errorf("unknown setting (want listen udp!HOST!PORT, tcp!HOST!PORT or HOST:PORT)")
		}
		if len(e.Args) != 1 {
			return nil, e.Errorf("want listen udp!HOST!PORT, tcp!HOST!PORT or HOST:PORT")
		}
		a := e.Args[0]
		if strings.Contains(a, "!") {
			d, err := plan9.ParseDial(a)
			if err != nil {
				return nil, e.Errorf("%v", err)
			}
			network, addr := d.NetAddr()
			if network != "udp" && network != "tcp" {
				return nil, e.Errorf("%q: want udp or tcp", a)
			}
			out = append(out, listenAddr{network, addr})
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, e.Errorf("%q: %v", a, err)
		}
		out = append(out, listenAddr{"udp", a}, listenAddr{"tcp", a})
	}
	if len(out) == 0 {
		out = []listenAddr{{"udp", DefaultListen}, {"tcp", DefaultListen}}
	}
	return out, nil
}

// CheckConfig checks the listen lines of cfg.
func (m *Module) CheckConfig(cfg modules.Config) error {
	_, err := parseListen(cfg)
	return err
}

// Start opens the sockets of env.Config and answers queries on them
// until Stop.
func (m *Module) Start(ctx context.Context, env modules.Env) (modules.Instance, error) {
	addrs, err := parseListen(env.Config)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	var pcs []net.PacketConn
	var ls []net.Listener
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, l := range ls {
			l.Close()
		}
	}
	for _, a := range addrs {
		if a.network == "udp" {
			pc, err := lc.ListenPacket(ctx, "udp", a.addr)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("dns: %w", err)
			}
			pcs = append(pcs, pc)
			continue
		}
		l, err := lc.Listen(ctx, "tcp", a.addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("dns: %w", err)
		}
		ls = append(ls, l)
	}
	sctx, cancel := context.WithCancel(context.Background())
	inst := &instance{srv: m.srv, cancel: cancel}
	m.srv.resume()
	serve := func(pc net.PacketConn, l net.Listener) {
		defer inst.wg.Done()
		if err := m.srv.Serve(sctx, pc, l); err != nil && sctx.Err() == nil && env.Fail != nil {
			env.Fail(err)
		}
	}
	for _, pc := range pcs {
		inst.wg.Add(1)
		go serve(pc, nil)
	}
	for _, l := range ls {
		inst.wg.Add(1)
		go serve(nil, l)
	}
	for _, pc := range pcs {
		inst.addrs = append(inst.addrs, "udp!"+pc.LocalAddr().String())
	}
	for _, l := range ls {
		inst.addrs = append(inst.addrs, "tcp!"+l.Addr().String())
	}
	if env.Log != nil {
		env.Log.Info("dns: listening", "addrs", strings.Join(inst.addrs, " "))
	}
	return inst, nil
}

// instance is a running dns module.
type instance struct {
	srv    *Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	addrs  []string
}

// Attach serves the Server's files.
func (i *instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.srv.Attach(ctx, uname, aname, auth)
}

// Stop ends changes through the files (a batch under way is abandoned,
// and changes nothing), closes the sockets and waits for the queries in
// hand.
func (i *instance) Stop(ctx context.Context) error {
	i.srv.halt()
	i.cancel()
	done := make(chan struct{})
	go func() { i.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("dns: stop: queries still in hand")
	}
}
