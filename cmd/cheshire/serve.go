package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"cheshire/connlimit"
	dhtlib "cheshire/dht"
	"cheshire/httpsd"
	"cheshire/importers/proxy"
	"cheshire/importers/remote"
	"cheshire/module"
	"cheshire/nodekey"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/providers/apps"
	"cheshire/providers/ca"
	"cheshire/providers/dht"
	"cheshire/providers/dns"
	"cheshire/providers/git"
	"cheshire/providers/node"
	"cheshire/providers/store"
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
	raftListen   string   // HOST:PORT of the raft group's TLS listener
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
	fs.StringVar(&o.raftListen, "raft-listen", "127.0.0.1:0", "HOST:PORT of the raft listener of /ledger and /locks (mutual TLS by node key; port 0: the port of the last run, else any)")
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
	defer profileFromEnv()()
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
	nd, err := openNode(o.dir)
	if err != nil {
		return err
	}
	defer nd.close()
	ls := newListeners(ctx, nd.log)
	defer ls.close()
	p, err := nd.openParts(o, ls.bound)
	if err != nil {
		return err
	}
	defer p.close()
	mods, stopModules, err := startModules(ctx, nd.dir, nd.owner, nd.id, p.ns, nd.log, p.builtin)
	if err != nil {
		return err
	}
	defer stopModules()
	for _, l := range []struct{ mod, flag string }{{"dns", "--dns-listen"}, {"dht", "--dht-listen"}} {
		if err := mods.Failure(l.mod); err != nil {
			notStarted(l.mod, err, fmt.Sprintf("%s ADDR, or a listen line in /modules/%s/config (it then starts by itself)", l.flag, l.mod))
		}
	}
	if o.maxConns <= 0 {
		o.maxConns = connBudget()
	}
	limits := func(name string) *connlimit.Limits {
		return &connlimit.Limits{Total: o.maxConns, PerHost: o.maxPerHost, Log: nd.log, Name: name}
	}
	webTLS := p.ca.TLSConfig("node", httpsNames())
	webTLS.ClientAuth = tls.RequestClientCert // a certificate from /ca names a git user (certUser); none is asked of others
	p.appTLS(webTLS)
	web := httpsd.New(webTLS, nd.log)
	p.web.Store(web)
	web.Limit(limits("https"))
	web.Handle("/dns-query", mods.HTTP("dns", p.dns.DoHHandler()))
	gitH, nsH := p.gitHandlers(nd.dir, nd.log)
	web.Handle("/git/", mods.HTTP("git", gitH))
	web.Handle("/ns/", mods.HTTP("git", nsH))
	appsH := mods.HTTP("apps", p.appsHandler())
	web.Handle("/apps/", appsH)
	web.Route(p.appRoute(appsH))
	web.Handle("/api/coll/", mods.HTTP("coll", p.collHandler()))
	web.Handle("/", p.webUI(nd.dir))
	closeWeb, err := addWeb(web, mods, p.ca, nd.dir, o.acmePort, nd.log)
	if err != nil {
		return err
	}
	defer closeWeb()
	srv := &styx.Server{Attacher: p.ns.ConnAttacher(), Log: nd.log, Limits: limits("9p"), Trace: nd.trace(o.debug)}
	p.srv9p.Store(srv)
	if err := ls.serve9P(srv, nd.id, append([]string{"unix!" + filepath.Join(nd.dir, "cheshire.sock")}, o.listens...)); err != nil {
		return err
	}
	if err := ls.serveHTTPS(web, o.https); err != nil {
		return err
	}
	p.listening(ls.bound())
	nd.log.Info("cheshire node serving", "id", nd.id.ID(), "dir", nd.dir, "addrs", strings.Join(ls.bound(), " "), "version", version)
	<-ctx.Done()
	nd.log.Info("cheshire node shutting down")
	ls.close() // before the modules and namespaces it serves
	return nil
}

// A runNode is what a serving node holds for its life: its data
// directory (locked), log, identity and owner.
type runNode struct {
	dir    string
	owner  string
	id     *nodekey.Identity
	events *synth.Log // the log's lines, for /node/log
	log    *slog.Logger
	unlock func()
}

// openNode takes the data directory dir (made if need be, then locked),
// starts the log and loads the node's identity.
func openNode(dir string) (*runNode, error) {
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	id, err := nodekey.Load(dir)
	if err != nil {
		unlock()
		return nil, err
	}
	events := synth.NewLog(0)
	log := slog.New(dedupe(node.LogHandler(os.Stderr, events, slog.LevelInfo)))
	return &runNode{dir: dir, owner: userName(), id: id, events: events, log: log, unlock: unlock}, nil
}

func (nd *runNode) close() {
	nd.events.Close()
	nd.unlock()
}

// trace is the 9P trace of -D: each message to the log and stderr.
func (nd *runNode) trace(on bool) func(conn string, in bool, f *styx.Fcall) {
	if !on {
		return nil
	}
	return func(conn string, in bool, f *styx.Fcall) {
		dir := "->"
		if in {
			dir = "<-"
		}
		nd.log.Debug("9p", "conn", conn, "dir", dir, "msg", f.String())
		fmt.Fprintf(os.Stderr, "%s %s %v\n", conn, dir, f)
	}
}

// parts are the node's parts that the built-in modules and the
// listeners are made of.
type parts struct {
	ns      *ns.Manager
	ca      *ca.CA
	dns     *dns.Server
	dht     *dht.Module
	git     *git.Repos
	cluster *cluster
	store   *store.Store
	apps    *apps.Apps
	mc      *msgColl                      // /msg and /coll (coll.go)
	srv9p   atomic.Pointer[styx.Server]   // set once serving: /node/stats counts its requests
	web     atomic.Pointer[httpsd.Server] // likewise
	im      *remote.Importer
	id      *nodekey.Identity
	log     *slog.Logger
	builtin []module.Module
	reqs    *node.Requests  // /node/requests, the approvals queue
	pws     *node.Passwords // /node/password, the web sign-in's passwords
}

// openParts makes the CA, DNS, DHT, importer and namespaces of nd;
// bound tells the listeners' addresses once they are bound.
func (nd *runNode) openParts(o serveOptions, bound func() []string) (*parts, error) {
	p := &parts{id: nd.id, log: nd.log}
	p.dht = dht.NewModule(nd.id.Private, nd.owner, version, dhtlib.Options{Listen: o.dhtListen, Bootstrap: o.dhtBootstrap,
		QuietFile: filepath.Join(nd.dir, "dht", "quiet")})
	var err error
	p.pws = node.NewPasswords(filepath.Join(nd.dir, "passwords"))
	if p.reqs, err = node.OpenRequests(filepath.Join(nd.dir, "requests"), nd.owner); err != nil {
		return nil, err
	}
	if p.cluster, err = openCluster(nd.dir, o.raftListen, nd.owner, nd.id, nd.log, p.dht.Node); err != nil {
		return nil, err
	}
	p.im = remote.New(remote.Options{Resolve: endpointResolver(p.cluster.ledger.State(), remote.DHTResolver(p.dht.Node)),
		Dial: remote.TLSDialer(nd.id), Uname: nd.owner, Log: nd.log.With("part", "import")})
	if p.ca, err = ca.Open(filepath.Join(nd.dir, "ca"), ca.Options{Name: nd.id.ID(), Owner: nd.owner, Log: nd.log.With("module", "ca")}); err != nil {
		p.im.Close()
		p.cluster.close()
		return nil, err
	}
	if p.dns, err = dns.New(filepath.Join(nd.dir, "dns"), dns.Options{Owner: nd.owner, Log: nd.log.With("module", "dns")}); err != nil {
		p.im.Close()
		p.cluster.close()
		return nil, err
	}
	p.ca.SetZones(p.dns.Zones) // ACME issues for names in the node's zones
	dnsMod := dns.NewModule(p.dns, version)
	if err := dnsMod.SetDefaultListen(o.dnsListen); err != nil {
		p.im.Close()
		p.cluster.close()
		return nil, fmt.Errorf("--dns-listen: %w", err)
	}
	if p.git, err = git.New(nd.dir, git.Options{Owner: nd.owner}); err != nil {
		p.im.Close()
		p.cluster.close()
		return nil, err
	}
	if p.store, err = store.New(store.Options{Dir: nd.dir, Owner: nd.owner, Self: nd.id.ID(), Dial: p.storeDial,
		Contracts: func() (active, ended map[string]bool) { return p.cluster.ledger.State().Holders(nd.id.ID()) },
		Find:      func(ctx context.Context) ([]string, error) { return p.dhtFind(ctx, store.HoldersPath) },
		Probe:     p.probeKey,
		Advertise: p.dht.Readvertise,
		Log:       nd.log.With("module", "store")}); err != nil {
		p.im.Close()
		p.cluster.close()
		return nil, err
	}
	if p.apps, err = apps.New(filepath.Join(nd.dir, "apps"), apps.Options{Owner: nd.owner, Log: nd.log.With("module", "apps")}); err != nil {
		p.im.Close()
		p.cluster.close()
		p.store.Close()
		return nil, err
	}
	if p.mc, err = openMsgColl(nd.dir, nd.owner, nd.id, p.im, nd.log); err != nil {
		p.im.Close()
		p.cluster.close()
		p.store.Close()
		return nil, err
	}
	p.store.Start()
	n := node.New(node.Config{ID: nd.id.ID(), Version: version, Start: time.Now(), Owner: nd.owner, Log: nd.events, Addrs: bound,
		Counters: p.counters, Requests: p.reqs, Passwords: p.pws})
	p.builtin = append(builtins(nd.owner, nd.dir, o.exposeData, n, p.ca, dnsMod, p.dht, p.git, p.store),
		append(append(p.cluster.modules(), apps.NewModule(p.apps, version), p.findModule()), p.mc.modules()...)...)
	p.ns = ns.NewManager(append(append(p.mc.keyServices(), p.storeKeyService()), ns.WithDir(filepath.Join(nd.dir, "ns")), ns.WithDefaults(defaultNamespace(p.builtin)), ns.WithLog(nd.log),
		ns.WithUsers(filepath.Join(nd.dir, "users")),
		ns.WithDialer(func(ctx context.Context, addr, user string) (styx.Attacher, error) { return proxy.Dial(ctx, addr) }),
		ns.WithImporter(p.im.ByText()), ns.WithExportsChanged(p.dht.Readvertise),
		p.requestsOption(), ns.WithWatchService())...) // #watch: nodes that import this one watch its paths
	adv := &remote.Advertiser{Advertise: o.advertise, Bound: bound, Exports: p.ns.PublicExports, Raft: p.cluster.raftAdvert, Log: nd.log}
	p.dht.Advertise(func() dhtlib.Advert {
		ad := adv.Advert()
		if ad.Port != 0 && p.store.Offering() {
			ad.Paths = append(ad.Paths, store.HoldersPath) // a holder for any node
		}
		return ad
	})
	return p, nil
}

// listening tells the parts the listeners' bound addresses: the node's
// zone and its DHT record follow them.
func (p *parts) listening(bound []string) {
	if err := p.dns.PublishListeners(p.id.ID()+".cheshire", bound); err != nil {
		p.log.Warn("node names zone not updated", "err", err)
	}
	p.dht.Readvertise()
}

// gitAuthorize lets a smart-HTTP request at repo through as the user it
// signs in as (gitUser), if
// that user's namespace lets them read /git/REPO (a clone or fetch) or
// write /git/REPO/refs/heads (a push): the same permissions as 9P's.
func (p *parts) gitAuthorize(r *http.Request, repo string, write bool) (string, error) {
	user, err := p.gitUser(r)
	if err != nil {
		return "", err
	}
	path, want := "/git/"+repo, uint8(plan9.OREAD)
	if write {
		path, want = path+"/refs/heads", plan9.OWRITE
	}
	switch err := p.ns.Allowed(r.Context(), user, path, want); {
	case err == nil, errors.Is(err, plan9.ErrNotFound): // no such repository: Open says so
		return user, nil
	case errors.Is(err, plan9.ErrPerm):
		return "", err
	default:
		return "", fmt.Errorf("%w: %v", plan9.ErrPerm, err)
	}
}

// storeDial reaches the fragments of the node holding key (#store, its
// key service): an import by key, over mutual TLS, on the connection
// every import of the key shares, first at addr if the holder was found
// there. There the store knows this node by its key (HolderAttach).
func (p *parts) storeDial(ctx context.Context, key, addr string) (styx.File, error) {
	pk, err := nodekey.Decode(key)
	if err != nil {
		return nil, err
	}
	return p.im.ImportAt(ctx, pk, addr, "#store", true)
}

// storeKeyService is #store: the store's fragments, for any node by the
// key its connection proves.
func (p *parts) storeKeyService() ns.Option {
	return ns.WithKeyService("#store", func(ctx context.Context, key, rest string) (styx.File, error) {
		return p.store.HolderAttach(ctx, key)
	})
}

// dhtFind returns the addresses (tls!HOST!PORT) of the nodes that
// announce path in the DHT.
func (p *parts) dhtFind(ctx context.Context, path string) ([]string, error) {
	n := p.dht.Node()
	if n == nil {
		return nil, fmt.Errorf("dht: %w", plan9.ErrModuleStopped)
	}
	aps, err := n.Find(ctx, path)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(aps))
	for i, ap := range aps {
		out[i] = "tls!" + ap.Addr().Unmap().String() + "!" + strconv.Itoa(int(ap.Port()))
	}
	return out, nil
}

// probeKey is the key the node at addr proves in a TLS handshake.
func (p *parts) probeKey(ctx context.Context, addr string) (string, error) {
	k, err := remote.KeyAt(ctx, p.id, addr)
	if err != nil {
		return "", err
	}
	return nodekey.Encode(k), nil
}

// counters are the node's running counts, for /node/stats.
func (p *parts) counters() map[string]uint64 {
	m := map[string]uint64{"dns-queries": p.dns.Queries()}
	if s := p.srv9p.Load(); s != nil {
		m["9p-requests"] = s.Requests()
	}
	if w := p.web.Load(); w != nil {
		m["https-requests"] = w.Requests()
	}
	return m
}

func (p *parts) close() {
	p.apps.StopAll()
	p.mc.close()
	p.store.Close()
	p.ns.Close()
	p.im.Close()
	p.cluster.close()
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
