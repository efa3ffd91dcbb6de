package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"cheshire/httpsd"
	"cheshire/module"
	"cheshire/modules"
	"cheshire/modules/wasm"
	"cheshire/nodekey"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/providers/ca"
	"cheshire/providers/ca/acme"
	"cheshire/providers/dht"
	"cheshire/providers/dns"
	"cheshire/providers/git"
	"cheshire/providers/hostfs"
	"cheshire/providers/node"
	"cheshire/providers/store"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

// builtins are the providers compiled into the node, in the order of
// their mounts in the default namespace (they start in dependency
// order). Each is a module named after its spec (#node, #ns, ...).
func builtins(owner, dir string, exposeData bool, n *node.Node, authority *ca.CA, dnsMod *dns.Module, dhtMod *dht.Module, repos *git.Repos, st *store.Store) []module.Module {
	return []module.Module{
		module.Native(module.Manifest{Name: "node", Version: version, Mount: "/node",
			Description: "the node itself: identity, addresses, version, uptime, log"}, n),
		module.NativePerNS(module.Manifest{Name: "ns", Version: version, Mount: "/ns",
			Description: "the namespace: its mount table and ctl"},
			func(nsp module.Namespace) styx.Attacher { return ns.Files(nsp.(*ns.Namespace)) }),
		ca.Module(authority, version),
		dnsMod,
		dhtMod,
		git.NewModule(repos, version),
		store.NewModule(st, version),
		module.Native(module.Manifest{Name: "tmp", Version: version, Mount: "/tmp",
			Description: "an in-memory file system"}, tmp.New(owner)),
		hostfs.Module(hostfs.ModuleOptions{Owner: owner, DataDir: dir, ExposeData: exposeData, Version: version}),
		hostfs.Module(hostfs.ModuleOptions{RO: true, Owner: owner, DataDir: dir, ExposeData: exposeData, Version: version}),
	}
}

// defaultNamespace is what a user without a namespace file gets: the
// module manager's files at /modules, and each built-in mounted where its
// manifest says (#tmp, #store, #locks and #coll with -c, so that files may be
// created in them: a lock is made by creating its file, an entity by
// making its directory).
func defaultNamespace(builtins []module.Module) []plan9.NSCmd {
	cmds := []plan9.NSCmd{{Op: "mount", Args: []string{"#modules", "/modules"}, Line: 1}}
	for _, b := range builtins {
		mf := b.Manifest()
		if mf.Mount == "" {
			continue
		}
		c := plan9.NSCmd{Op: "mount", Args: []string{"#" + mf.Name, mf.Mount}, Line: len(cmds) + 1}
		if mf.Name == "tmp" || mf.Name == "store" || mf.Name == "locks" || mf.Name == "coll" {
			c.Flags = "c"
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// startModules makes the module manager, adds the built-ins and the
// packages kept in DIR/modules, starts them, and registers #modules.
// The returned func stops every module and releases the runtime.
func startModules(ctx context.Context, dir, owner string, id *nodekey.Identity, m *ns.Manager, log *slog.Logger, builtins []module.Module) (*modules.Manager, func(), error) {
	loader, closeLoader, err := packageLoader(ctx, dir, cacheKey(id), log)
	if err != nil {
		return nil, nil, err
	}
	mods, err := modules.NewManager(modules.Options{Dir: filepath.Join(dir, "modules"), Owner: owner, Namespace: m,
		Log: log, Loader: loader.load, Trusted: []string{id.ID()}})
	if err != nil {
		closeLoader()
		return nil, nil, err
	}
	loader.mgr = mods
	for _, b := range builtins {
		if err := mods.Add(b, ""); err != nil {
			closeLoader()
			return nil, nil, err
		}
	}
	m.Register("#modules", mods.Files())
	if err := mods.Boot(ctx); err != nil {
		closeLoader()
		return nil, nil, err
	}
	return mods, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		mods.Close(cctx)
		closeLoader()
	}, nil
}

// wasmLoader loads signed WebAssembly packages, trusting the keys the
// module manager trusts.
type wasmLoader struct {
	rt  *wasm.Runtime
	mgr *modules.Manager
}

func (l *wasmLoader) load(ctx context.Context, name string, data []byte, source string) (module.Module, error) {
	return l.rt.Load(ctx, name, data, source)
}

func (l *wasmLoader) trusted() []ed25519.PublicKey {
	if l.mgr == nil {
		return nil
	}
	var out []ed25519.PublicKey
	for _, k := range l.mgr.Trusted() {
		if pk, err := nodekey.Decode(k); err == nil {
			out = append(out, pk)
		}
	}
	return out
}

// packageLoader starts the WebAssembly runtime, its compilation cache in
// DIR/modules/cache, sealed with key.
func packageLoader(ctx context.Context, dir string, key []byte, log *slog.Logger) (*wasmLoader, func(), error) {
	l := &wasmLoader{}
	rt, err := wasm.NewRuntime(ctx, wasm.Options{CacheDir: filepath.Join(dir, "modules", "cache"), CacheKey: key,
		Trusted: l.trusted, Log: log})
	if err != nil {
		return nil, nil, fmt.Errorf("webassembly runtime: %w", err)
	}
	l.rt = rt
	return l, func() { rt.Close(context.Background()) }, nil
}

// cacheKey is the key that seals compiled WebAssembly in the data dir:
// a hash of the node's private key, so that a seal cannot be forged by
// one who can write the cache but does not hold the key.
func cacheKey(id *nodekey.Identity) []byte {
	h := sha256.New()
	h.Write([]byte("cheshire wasm compilation cache seal\x00"))
	h.Write(id.Private.Seed())
	return h.Sum(nil)
}

// addWeb mounts the modules' web handlers on the HTTPS listener; each
// answers 503 while its module is stopped. The ACME server validates
// http-01 challenges on port acmePort of the names it certifies.
func addWeb(web *httpsd.Server, mods *modules.Manager, authority *ca.CA, dir string, acmePort int, log *slog.Logger) (func(), error) {
	web.Handle("GET /ca/root.pem", mods.HTTP("ca", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(authority.RootPEM())
	})))
	a, err := authority.ACME(acme.Options{Prefix: "/acme", HTTP01Port: acmePort, Log: log.With("module", "ca", "part", "acme")})
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	web.Handle("/acme/", mods.HTTP("ca", a))
	return func() { a.Close() }, nil
}
