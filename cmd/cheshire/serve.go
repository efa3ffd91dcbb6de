package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cheshire/connlimit"
	dhtlib "cheshire/dht"
	"cheshire/httpsd"
	"cheshire/importers/proxy"
	"cheshire/importers/remote"
	"cheshire/nodekey"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/providers/ca"
	"cheshire/providers/dht"
	"cheshire/providers/dns"
	"cheshire/providers/node"
	"cheshire/styx"
	"cheshire/synth"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// serveOptions are serve's flags.
type serveOptions struct {
	dir          string
	listens      []string // 9P listeners besides the unix socket
	https        []string
	acmePort     int
	debug        bool
	dnsListen    []string // the dns module's listen addresses unless its config sets them
	dhtListen    string   // the dht module's listen address unless its config sets one
	dhtBootstrap []string // likewise its bootstrap nodes
	advertise    []string // 9P-over-TLS addresses to publish instead of the listeners'
	maxConns     int      // network connections per kind of listener (9P, HTTPS); 0: from RLIMIT_NOFILE
	maxPerHost   int      // ... and per remote IP
	exposeData   bool     // the owner may reach the data dir through #host
}

func serveCmd(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var o serveOptions
	fs.StringVar(&o.dir, "dir", dataDir(), "data directory")
	var listens, https, advertise multi
	fs.Var(&listens, "listen", "also serve on this dial string: tls!0.0.0.0!5641 for other nodes (mutual TLS; keys mapped to users in DIR/users), tcp!127.0.0.1!5640 (plain TCP trusts every local user)")
	fs.Var(&https, "https", "serve HTTPS (DoH, ACME, ...) on this dial string (default tcp!127.0.0.1!8443; none for no HTTPS)")
	fs.IntVar(&o.acmePort, "acme-http-port", 80, "port on which the ACME server fetches http-01 challenges")
	fs.BoolVar(&o.debug, "D", false, "trace 9P messages to the log")
	var dnsListen multi
	fs.Var(&dnsListen, "dns-listen", "answer DNS on this address: HOST:PORT (UDP and TCP), udp!HOST!PORT or tcp!HOST!PORT; repeatable (default 127.0.0.1:5353; the dns module's config overrides)")
	fs.StringVar(&o.dhtListen, "dht-listen", "", "UDP address of the DHT node, udp!HOST!PORT (default udp!127.0.0.1!6881; the dht module's config overrides)")
	bootstrap := fs.String("dht-bootstrap", "", "HOST:PORT,... of DHT nodes to join through (the dht module's config overrides)")
	fs.Var(&advertise, "advertise", "publish this tls!HOST!PORT in the DHT record instead of the TLS listeners' addresses (behind NAT or a proxy); repeatable")
	fs.IntVar(&o.maxConns, "max-conns", 0, "network connections held at most by the 9P listeners, and by the HTTPS listeners (default: a third of the open-file limit, at most 16384)")
	fs.IntVar(&o.maxPerHost, "max-conns-per-host", connlimit.DefaultPerHost, "network connections held at most per remote IP, by the 9P listeners and by the HTTPS listeners")
	fs.BoolVar(&o.exposeData, "expose-data-dir", false, "let the owner (only) reach the data directory (keys, CA, namespaces) through #host; without it, #host never serves it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, a := range advertise {
		if d, err := plan9.ParseDial(a); err != nil || d.Net != "tls" {
			return fmt.Errorf("--advertise %s: want tls!HOST!PORT", a)
		}
	}
	if *bootstrap != "" {
		o.dhtBootstrap = strings.Split(*bootstrap, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(https) == 0 {
		https = multi{"tcp!127.0.0.1!8443"}
	}
	if len(https) == 1 && https[0] == "none" {
		https = nil
	}
	o.listens, o.https, o.advertise, o.dnsListen = listens, https, advertise, dnsListen
	return serve(ctx, o)
}

func serve(ctx context.Context, o serveOptions) error {
	dir := o.dir
	if err := os.MkdirAll(dir, 0700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()

	events := synth.NewLog(0)
	defer events.Close()
	log := slog.New(dedupe(node.LogHandler(os.Stderr, events, slog.LevelInfo)))
	id, err := nodekey.Load(dir)
	if err != nil {
		return err
	}
	owner := userName()

	addrs := append([]string{"unix!" + filepath.Join(dir, "cheshire.sock")}, o.listens...)
	var amu sync.Mutex
	var bound []string
	boundNow := func() []string { amu.Lock(); defer amu.Unlock(); return append([]string(nil), bound...) }
	n := node.New(node.Config{ID: id.ID(), Version: version, Start: time.Now(), Owner: owner, Log: events,
		Addrs: boundNow})

	dhtMod := dht.NewModule(id.Private, owner, version, dhtlib.Options{Listen: o.dhtListen, Bootstrap: o.dhtBootstrap})
	im := remote.New(remote.Options{Resolve: remote.DHTResolver(dhtMod.Node), Dial: remote.TLSDialer(id), Uname: owner,
		Log: log.With("part", "import")})
	defer im.Close()
	caDir := filepath.Join(dir, "ca")
	authority, err := ca.Open(caDir, ca.Options{Name: id.ID(), Owner: owner, Log: log.With("module", "ca")})
	if err != nil {
		return err
	}
	names, err := dns.New(filepath.Join(dir, "dns"), dns.Options{Owner: owner, Log: log.With("module", "dns")})
	if err != nil {
		return err
	}
	authority.SetZones(names.Zones) // ACME issues for names in the node's zones
	dnsMod := dns.NewModule(names, version)
	if err := dnsMod.SetDefaultListen(o.dnsListen); err != nil {
		return fmt.Errorf("--dns-listen: %w", err)
	}
	builtin := builtins(owner, dir, o.exposeData, n, authority, dnsMod, dhtMod)
	m := ns.NewManager(ns.WithDir(filepath.Join(dir, "ns")), ns.WithDefaults(defaultNamespace(builtin)), ns.WithLog(log),
		ns.WithUsers(filepath.Join(dir, "users")),
		ns.WithDialer(func(ctx context.Context, addr, user string) (styx.Attacher, error) { return proxy.Dial(ctx, addr) }),
		ns.WithImporter(im.ByText()), ns.WithExportsChanged(dhtMod.Readvertise))
	defer m.Close()
	adv := &remote.Advertiser{Advertise: o.advertise, Bound: boundNow, Exports: m.PublicExports, Log: log}
	dhtMod.Advertise(adv.Advert)
	mods, stopModules, err := startModules(ctx, dir, owner, id, m, log, builtin)
	if err != nil {
		return err
	}
	defer stopModules()
	for _, l := range []struct{ mod, flag string }{{"dns", "--dns-listen"}, {"dht", "--dht-listen"}} {
		if err := mods.Failure(l.mod); err != nil {
			notStarted(l.mod, err, fmt.Sprintf("%s ADDR, or a listen line in /modules/%s/config (it then starts by itself)", l.flag, l.mod))
		}
	}
	maxConns := o.maxConns
	if maxConns <= 0 {
		maxConns = connBudget()
	}
	web := httpsd.New(authority.TLSConfig("node", httpsNames()), log)
	web.Limit(&connlimit.Limits{Total: maxConns, PerHost: o.maxPerHost, Log: log, Name: "https"})
	web.Handle("/dns-query", mods.HTTP("dns", names.DoHHandler()))
	closeWeb, err := addWeb(web, mods, authority, dir, o.acmePort, log)
	if err != nil {
		return err
	}
	defer closeWeb()

	srv := &styx.Server{Attacher: m.ConnAttacher(), Log: log,
		Limits: &connlimit.Limits{Total: maxConns, PerHost: o.maxPerHost, Log: log, Name: "9p"}}
	if o.debug {
		srv.Trace = func(conn string, in bool, f *styx.Fcall) {
			dir := "->"
			if in {
				dir = "<-"
			}
			log.Debug("9p", "conn", conn, "dir", dir, "msg", f.String())
			fmt.Fprintf(os.Stderr, "%s %s %v\n", conn, dir, f)
		}
	}
	var wg sync.WaitGroup
	start := func(name string, l net.Listener, serveOn func(context.Context, net.Listener) error) {
		amu.Lock()
		bound = append(bound, name)
		amu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveOn(ctx, l); err != nil {
				log.Error("listener failed", "addr", name, "err", err)
			}
		}()
	}
	for _, a := range addrs {
		var l net.Listener
		var err error
		if strings.HasPrefix(a, "tls!") {
			l, err = listenTLS(a, id)
		} else {
			l, err = plan9.Listen(a)
		}
		if err != nil {
			srv.Close()
			wg.Wait()
			return err
		}
		name := a
		if network, _, _ := strings.Cut(a, "!"); network != "unix" {
			name = boundName(network+"!", l) // the port actually bound, for …!0
		}
		start(name, l, srv.Serve)
	}
	for _, a := range o.https {
		d, err := plan9.ParseDial(a)
		if err != nil || d.Net != "tcp" {
			srv.Close()
			wg.Wait()
			return fmt.Errorf("--https %s: want tcp!HOST!PORT", a)
		}
		l, err := plan9.Listen(a)
		if err != nil {
			notStarted("https", err, "--https tcp!HOST!PORT, or --https none")
			continue
		}
		start(boundName("https!", l), l, web.Serve)
	}
	if err := names.PublishListeners(id.ID()+".cheshire", boundNow()); err != nil {
		log.Warn("node names zone not updated", "err", err)
	}
	dhtMod.Readvertise() // now that the listeners' addresses are known
	log.Info("cheshire node serving", "id", id.ID(), "dir", dir, "addrs", strings.Join(bound, " "), "version", version)
	<-ctx.Done()
	log.Info("cheshire node shutting down")
	srv.Close()
	web.Close()
	wg.Wait()
	return nil
}

// notStarted tells whoever started the node, in one line on stderr, that
// a listener could not start and what to set instead; the node goes on
// without it.
func notStarted(what string, err error, set string) {
	fmt.Fprintf(os.Stderr, "cheshire: %s not started: %v; set %s\n", what, err, set)
}

// connBudget is how many network connections each kind of listener (9P,
// HTTPS) may hold: a third of the open-file limit (which the Go runtime
// has raised to its hard limit at start), at most 16384, so that the two
// together leave a third of the descriptors for files, the DHT, DNS and
// the owner's unix socket.
func connBudget() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return connlimit.DefaultTotal
	}
	return int(min(max(rl.Cur/3, 16), 16384))
}

// boundName is the dial string of the address l actually bound (for
// tcp!…!0).
func boundName(prefix string, l net.Listener) string {
	host, port := l.Addr().String(), ""
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host, port = host[:i], host[i+1:]
	}
	return prefix + strings.Trim(host, "[]") + "!" + port
}

// httpsNames are the names the node's HTTPS certificate is for.
func httpsNames() []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	return names
}

// lockDir takes an exclusive lock on DIR/lock so that one node runs per
// directory.
func lockDir(dir string) (func(), error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another cheshire node is running on %s (pid %s)", dir, strings.TrimSpace(string(pid)))
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
