package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"cheshire/module"
	"cheshire/plan9"
	"cheshire/styx"
)

// DefaultListen is where the module answers queries, over UDP and TCP,
// when its configuration names no address.
const DefaultListen = "127.0.0.1:5353"

// Module is the dns module: a Server's files at /dns, and its UDP and
// TCP sockets, opened by Start and closed by Stop. The zones belong to
// the Server and so outlive the module's instances.
//
// Configuration, one setting a line:
//
//	listen udp!HOST!PORT
//	listen tcp!HOST!PORT
//	listen HOST:PORT	(UDP and TCP)
//	rrl RATE [slip N] [window SECONDS]
//	rrl off
//
// Without a listen line it listens where SetDefaultListen said, else on
// DefaultListen. Without an rrl line
// UDP replies are rate limited at DefaultRRLRate a second, slip
// DefaultRRLSlip (see RRL).
type Module struct {
	srv     *Server
	version string
	listen  []listenAddr // where to listen without a listen line; nil: DefaultListen
}

var _ module.Module = (*Module)(nil)

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
func (m *Module) Manifest() module.Manifest {
	return module.Manifest{Name: "dns", Version: m.version, Mount: "/dns",
		Description: "DNS zones as files, served over UDP, TCP and HTTPS, signed and updated live"}
}

// listenAddr is one socket to open: network "udp" or "tcp".
type listenAddr struct {
	network, addr string
}

// settings are what a configuration asks for.
type settings struct {
	listen []listenAddr
	rrl    RRL
}

// SetDefaultListen sets where the module listens when its configuration
// has no listen line (cheshire serve --dns-listen): each of addrs is a
// listen line's argument. Call it before the module is added to the
// manager.
func (m *Module) SetDefaultListen(addrs []string) error {
	var ls []listenAddr
	for _, a := range addrs {
		l, err := parseListen(module.ConfigEntry{Key: "listen", Args: []string{a}})
		if err != nil {
			return fmt.Errorf("dns: listen %s: %w", a, errors.Unwrap(err))
		}
		ls = append(ls, l...)
	}
	m.listen = ls
	return nil
}

// parseConfig returns the settings of cfg, listening on def (or
// DefaultListen) if no line says where.
func parseConfig(cfg module.Config, def []listenAddr) (settings, error) {
	st := settings{rrl: RRL{Rate: DefaultRRLRate, Slip: DefaultRRLSlip, Window: DefaultRRLWindow}}
	for _, e := range cfg.Entries {
		switch e.Key {
		case "listen":
			a, err := parseListen(e)
			if err != nil {
				return settings{}, err
			}
			st.listen = append(st.listen, a...)
		case "rrl":
			r, err := parseRRL(e)
			if err != nil {
				return settings{}, err
			}
			st.rrl = r
		default:
			return settings{}, e.Errorf("unknown setting (want listen or rrl)")
		}
	}
	if len(st.listen) == 0 {
		st.listen = def
	}
	if len(st.listen) == 0 {
		st.listen = []listenAddr{{"udp", DefaultListen}, {"tcp", DefaultListen}}
	}
	return st, nil
}

// parseListen parses a listen line.
func parseListen(e module.ConfigEntry) ([]listenAddr, error) {
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
		return []listenAddr{{network, addr}}, nil
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return nil, e.Errorf("%q: %v", a, err)
	}
	return []listenAddr{{"udp", a}, {"tcp", a}}, nil
}

// parseRRL parses an rrl line: rrl off, or rrl RATE [slip N] [window S].
func parseRRL(e module.ConfigEntry) (RRL, error) {
	const usage = "want rrl off or rrl RATE [slip N] [window SECONDS]"
	if len(e.Args) == 1 && e.Args[0] == "off" {
		return RRL{}, nil
	}
	if len(e.Args) == 0 || len(e.Args)%2 != 1 {
		return RRL{}, e.Errorf(usage)
	}
	num := func(s string, least int) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < least || n > 1e6 {
			return 0, e.Errorf("%q: want a number from %d to 1000000", s, least)
		}
		return n, nil
	}
	r := RRL{Slip: DefaultRRLSlip, Window: DefaultRRLWindow}
	var err error
	if r.Rate, err = num(e.Args[0], 1); err != nil {
		return RRL{}, err
	}
	for i := 1; i < len(e.Args); i += 2 {
		switch e.Args[i] {
		case "slip":
			r.Slip, err = num(e.Args[i+1], 0)
		case "window":
			r.Window, err = num(e.Args[i+1], 1)
		default:
			return RRL{}, e.Errorf(usage)
		}
		if err != nil {
			return RRL{}, err
		}
	}
	return r, nil
}

// CheckConfig checks the lines of cfg.
func (m *Module) CheckConfig(cfg module.Config) error {
	_, err := parseConfig(cfg, m.listen)
	return err
}

// Start opens the sockets of env.Config and answers queries on them
// until Stop.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	st, err := parseConfig(env.Config, m.listen)
	if err != nil {
		return nil, err
	}
	addrs := st.listen
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
	if env.Changed != nil {
		m.srv.changed.Store(&env.Changed)
	}
	m.srv.SetRRL(st.rrl)
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
	i.srv.changed.Store(nil)
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
