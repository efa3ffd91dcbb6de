// Package wasm runs sandboxed WebAssembly modules as node modules: a
// signed package (see package pkg) holds a manifest and a wasm binary
// built with package sdk, and each running instance serves the file
// tree the guest describes, through the ABI of package abi.
//
// Each instance has its own wazero runtime, with the memory the owner
// configured and a CPU budget per call; its only ways out of the sandbox
// are its private directory (/data, through WASI, confined on the host
// side: no path or link leads out of it, and the guest makes no links)
// and the calls back into the node — namespace reads and writes, HTTP —
// each checked against the permissions the manifest requested and the
// owner allowed. Its linear memory lies outside the Go heap, grows in
// place, and is unmapped when the instance fails or stops.
//
// Configuration keys of a wasm module (besides the manager's own):
//
//	allow read|write PATH   grant a namespace permission the manifest requests
//	allow http HOST:PORT    grant HTTP to HOST:PORT (HOST:*, * also)
//	memory SIZE             memory limit, bytes or with K, M, G (default 256M, at most 4G)
//	cpu DURATION            CPU budget of one call (default 1s)
//
// A call that traps (a panic in the guest, unreachable code, memory
// exhausted) or overruns its budget fails, and so does the instance: it
// reports env.Fail and answers everything after with "module stopped"
// until the manager replaces it.
//
// Calls into one instance are serialized. A request's context (a flush, a
// closed connection) ends its wait for the instance and the guest's calls
// into the node, which then fail in the guest, but not the guest's own
// execution: wazero stops a running guest only by closing it, and a flush
// must not let any client kill a module. The budget bounds the guest's
// execution instead, its sleeps included (a sleep ends when the budget
// runs out); the time it waits for the node (namespace, HTTP) is not
// counted in it. Stop ends a call in progress at once: its sleep and its
// calls into the node are cancelled and the guest is interrupted.
//
// The files of an instance are owned by the module (uid and gid are its
// name); the guest's permission bits are checked for the attaching user
// on walk, open, create and remove, as in synth, and the guest gets the
// user with every request to decide more.
package wasm

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"cheshire/module"
	"cheshire/modules/abi"
	"cheshire/modules/pkg"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Options configure a Runtime.
type Options struct {
	// CacheDir is the directory, in the node's data directory, where
	// compiled code is kept across restarts if CacheKey is set. wazero
	// checks a cache file by CRC32 only, which whoever writes the file
	// can recompute, so each file is sealed with an HMAC under CacheKey
	// and one that does not verify is deleted before wazero reads it
	// (sealedCache). Without CacheKey, compiled code is kept in memory
	// only and what wazero left in CacheDir is removed. No module's
	// /data may hold CacheDir.
	CacheDir string
	// CacheKey is the secret that seals the files of CacheDir: derived
	// from the node's identity, so that forging a seal takes the node's
	// private key.
	CacheKey []byte
	// Trusted returns the keys whose packages the node runs.
	Trusted func() []ed25519.PublicKey
	// Log gets the runtime's own messages (an instance logs to its env.Log).
	Log *slog.Logger
	// HTTP is the transport of modules' HTTP requests (default: a clone of
	// http.DefaultTransport).
	HTTP http.RoundTripper

	// unverifiedCache keeps compiled code in wazero's cache there, for
	// the tests' runs to share; the node never sets it.
	unverifiedCache string
}

// A Runtime loads packages into Modules. It holds the compilation cache
// (in memory, and sealed on disk if CacheKey is set) that the instances
// of all its modules share.
type Runtime struct {
	opts      Options
	log       *slog.Logger
	cache     wazero.CompilationCache
	sealed    *sealedCache   // the on-disk cache's seals, or nil
	check     wazero.Runtime // compiles at Load, keeping the code cached
	transport http.RoundTripper
	minInit   time.Duration // the least budget of an initialization
	heapMem   bool          // leave linear memory to wazero (to compare)
}

// NewRuntime returns a Runtime. Close releases it.
func NewRuntime(ctx context.Context, opts Options) (*Runtime, error) {
	r := &Runtime{opts: opts, log: opts.Log, transport: opts.HTTP, minInit: minInitBudget}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.transport == nil {
		r.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if opts.CacheDir != "" && len(opts.CacheKey) == 0 {
		old, _ := filepath.Glob(filepath.Join(opts.CacheDir, "wazero-*"))
		for _, d := range old {
			if err := os.RemoveAll(d); err != nil {
				r.log.Warn("cannot remove old compiled code", "dir", d, "err", err)
			}
		}
	}
	switch {
	case opts.CacheDir != "" && len(opts.CacheKey) != 0:
		sealed, err := openSealed(opts.CacheDir, opts.CacheKey)
		if err != nil {
			return nil, err
		}
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache %s: %w", opts.CacheDir, err)
		}
		r.cache, r.sealed = c, sealed
	case opts.unverifiedCache != "":
		c, err := wazero.NewCompilationCacheWithDir(opts.unverifiedCache)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache %s: %w", opts.unverifiedCache, err)
		}
		r.cache = c
	default:
		r.cache = wazero.NewCompilationCache()
	}
	r.check = wazero.NewRuntimeWithConfig(ctx, r.runtimeConfig(DefaultMemory))
	return r, nil
}

// runtimeConfig is the configuration of every runtime: instances differ
// only in their memory limit, which does not change compiled code, so
// they all share r's cache.
func (r *Runtime) runtimeConfig(memory uint64) wazero.RuntimeConfig {
	return wazero.NewRuntimeConfig().
		WithCompilationCache(r.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(uint32(memory / pageSize))
}

// Close releases the runtime's compiled code. Modules loaded from it must
// not be started afterwards.
func (r *Runtime) Close(ctx context.Context) error {
	err := r.check.Close(ctx)
	if cerr := r.cache.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wasm: close runtime: %w", err)
	}
	return nil
}

// Load reads and verifies a package and compiles its code. name is the
// module name the node knows it by ("" to take the manifest's), which
// must be the manifest's; source is where it came from, for the manifest.
// A package that is unsigned, tampered with, by an untrusted author, or
// whose code is not a module of this ABI is refused.
func (r *Runtime) Load(ctx context.Context, name string, data []byte, source string) (module.Module, error) {
	p, err := pkg.Read(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", source, err)
	}
	var trusted []ed25519.PublicKey
	if r.opts.Trusted != nil {
		trusted = r.opts.Trusted()
	}
	if err := p.Verify(trusted); err != nil {
		return nil, fmt.Errorf("load %s: %w", source, err)
	}
	m := p.Manifest
	if name != "" && name != m.Name {
		return nil, fmt.Errorf("load %s: package is module %q, not %q", source, m.Name, name)
	}
	var compiled wazero.CompiledModule
	err = r.sealed.compile(func() (err error) {
		compiled, err = r.check.CompileModule(ctx, p.Wasm)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: not a wasm module: %w", source, err)
	}
	if err := checkModule(compiled); err != nil {
		compiled.Close(ctx)
		return nil, fmt.Errorf("load %s: %w", source, err)
	}
	m.Source = source
	mod := &Module{rt: r, manifest: m, wasm: p.Wasm}
	// Keeping the compiled module open keeps its code in the shared
	// cache for instances to start from; it is released with mod.
	runtime.AddCleanup(mod, func(c wazero.CompiledModule) { c.Close(context.Background()) }, compiled)
	r.log.Info("module loaded", "module", m.Name, "version", m.Version, "source", source, "author", m.Author)
	return mod, nil
}

// ErrABI is the error of a module that does not implement this node's ABI.
var ErrABI = errors.New("not a cheshire module")

type funcSig struct {
	params, results []api.ValueType
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
	// exports the guest must have, with their signatures.
	wantExports = []struct {
		name string
		sig  funcSig
	}{
		{"_initialize", funcSig{}},
		{"cheshire_abi", funcSig{results: []api.ValueType{i32}}},
		{"cheshire_alloc", funcSig{params: []api.ValueType{i32}, results: []api.ValueType{i32}}},
		{"cheshire_call", funcSig{params: []api.ValueType{i32, i32}, results: []api.ValueType{i64}}},
	}
	// host functions the node provides.
	hostFuncs = map[string]funcSig{
		"log":         {params: []api.ValueType{i32, i32}},
		"host_call":   {params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}},
		"host_result": {params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}},
	}
)

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkModule checks the exports and imports of compiled code against
// the ABI, so that a module that could not run is refused at load.
func checkModule(c wazero.CompiledModule) error {
	exports := c.ExportedFunctions()
	for _, want := range wantExports {
		name, sig := want.name, want.sig
		def, ok := exports[name]
		if !ok {
			return fmt.Errorf("%w: no export %s (build with -buildmode=c-shared and import cheshire/modules/sdk)", ErrABI, name)
		}
		if !sameTypes(def.ParamTypes(), sig.params) || !sameTypes(def.ResultTypes(), sig.results) {
			return fmt.Errorf("%w: export %s has the wrong signature", ErrABI, name)
		}
	}
	if _, ok := c.ExportedMemories()["memory"]; !ok {
		return fmt.Errorf("%w: no exported memory", ErrABI)
	}
	for _, def := range c.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case "wasi_snapshot_preview1":
		case "cheshire":
			sig, ok := hostFuncs[name]
			if !ok {
				return fmt.Errorf("%w: imports cheshire.%s, which this node does not provide", ErrABI, name)
			}
			if !sameTypes(def.ParamTypes(), sig.params) || !sameTypes(def.ResultTypes(), sig.results) {
				return fmt.Errorf("%w: import cheshire.%s has the wrong signature", ErrABI, name)
			}
		default:
			return fmt.Errorf("%w: imports %s.%s, which this node does not provide", ErrABI, mod, name)
		}
	}
	return nil
}

// abiVersion is the version of the ABI this host speaks.
const abiVersion = abi.Version

// checkDataDir checks that a module's data directory dir does not hold
// the node's: the directory of the compilation cache, in the node's
// data directory, stands for it. Were the node's directory below a
// module's /data, the module could read the node's keys.
func (r *Runtime) checkDataDir(dir string) error {
	if r.opts.CacheDir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	d, err := realPath(dir)
	if err != nil {
		return err
	}
	node, err := realPath(r.opts.CacheDir)
	if errors.Is(err, fs.ErrNotExist) {
		node, err = filepath.Abs(r.opts.CacheDir)
	}
	if err != nil {
		return err
	}
	if node == d || strings.HasPrefix(node, d+string(filepath.Separator)) || d == string(filepath.Separator) {
		return fmt.Errorf("data directory %s holds the node's own", dir)
	}
	return nil
}

// realPath is dir made absolute, with symbolic links resolved.
func realPath(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(d)
}
