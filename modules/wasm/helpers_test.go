package wasm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/module"
	"cheshire/modules/pkg"
	"cheshire/plan9"
	"cheshire/styx"
)

// The guest binaries the tests run, built once per test binary with the
// real toolchain (and cached across runs, keyed by their sources), from
// directories relative to this package.
var guestDirs = map[string]string{
	"kv":       "../examples/kv",
	"markdown": "../examples/markdown",
	"probe":    "testdata/probe",
}

// The test modules: a binary and the manifest it is packaged with. The
// probe binary is packaged three times, so that it is compiled once.
var guestModules = map[string]struct{ binary, manifest string }{
	"kv":       {"kv", "../examples/kv/manifest"},
	"markdown": {"markdown", "../examples/markdown/manifest"},
	"loop":     {"probe", "testdata/probe/loop.manifest"},
	"trap":     {"probe", "testdata/probe/trap.manifest"},
	"nsprobe":  {"probe", "testdata/probe/nsprobe.manifest"},
	// The same, whose initialization sleeps.
	"sleepinit": {"probe", "testdata/probe/sleepinit.manifest"},
}

var builtGuests = sync.OnceValues(buildGuests)

// guest returns the wasm binary and manifest of a test module.
func guest(t testing.TB, name string) (wasm, manifest []byte) {
	t.Helper()
	wasm, manifest, err := guestErr(name)
	if err != nil {
		t.Fatal(err)
	}
	return wasm, manifest
}

func guestErr(name string) (wasm, manifest []byte, err error) {
	g, err := builtGuests()
	if err != nil {
		return nil, nil, err
	}
	m, found := guestModules[name]
	if !found {
		return nil, nil, fmt.Errorf("no test module %s", name)
	}
	manifest, err = os.ReadFile(m.manifest)
	if err != nil {
		return nil, nil, err
	}
	return g[m.binary], manifest, nil
}

func testCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "cheshire-test", "wasm")
}

// sourceKey hashes what a guest's binary depends on: the toolchain,
// go.mod and go.sum, and the Go files of the SDK, the ABI and the module.
func sourceKey(goVersion, dir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", goVersion, dir)
	files := []string{"../../go.mod", "../../go.sum"}
	for _, d := range []string{"../sdk", "../abi", dir} {
		des, err := os.ReadDir(d)
		if err != nil {
			return "", err
		}
		for _, de := range des {
			if strings.HasSuffix(de.Name(), ".go") {
				files = append(files, filepath.Join(d, de.Name()))
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

func buildGuests() (map[string][]byte, error) {
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOVERSION: %w", err)
	}
	cache := testCacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	out := make(map[string][]byte)
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for name, dir := range guestDirs {
		key, err := sourceKey(strings.TrimSpace(string(goVersion)), dir)
		if err != nil {
			return nil, err
		}
		file := filepath.Join(cache, name+"-"+key+".wasm")
		if b, err := os.ReadFile(file); err == nil {
			mu.Lock() // builds started earlier in the loop write out too
			out[name] = b
			mu.Unlock()
			continue
		}
		// Builds of older sources are not needed again.
		if old, _ := filepath.Glob(filepath.Join(cache, name+"-*.wasm")); len(old) > 0 {
			for _, f := range old {
				os.Remove(f)
			}
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			tmp := file + fmt.Sprintf(".%d.tmp", os.Getpid())
			cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", tmp, "./"+dir)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
			msg, err := cmd.CombinedOutput()
			if err == nil {
				err = os.Rename(tmp, file)
			}
			var b []byte
			if err == nil {
				b, err = os.ReadFile(file)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("build %s: %v\n%s", name, err, msg))
				return
			}
			out[name] = b
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// The keys packages are signed with.
var (
	testKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
)

// signed returns a package of manifest and wasm signed with key (unsigned
// if key is nil).
func signed(t testing.TB, manifest, wasm []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := signedErr(manifest, wasm, key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func signedErr(manifest, wasm []byte, key ed25519.PrivateKey) ([]byte, error) {
	data, err := pkg.Build(manifest, wasm)
	if err != nil || key == nil {
		return data, err
	}
	return pkg.Sign(data, key)
}

// One Runtime serves all tests, so that code is compiled once; its
// compilation cache persists across runs.
var sharedRuntime = sync.OnceValues(func() (*Runtime, error) {
	return NewRuntime(context.Background(), Options{
		unverifiedCache: filepath.Join(filepath.Dir(testCacheDir()), "wazero"),
		Trusted:         func() []ed25519.PublicKey { return []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)} },
	})
})

func testRuntime(t testing.TB) *Runtime {
	t.Helper()
	r, err := sharedRuntime()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var loaded sync.Map // name -> module.Module

// warm loads every test module, two at a time, the first time one is
// needed: compiling (with the race detector, cold, some ten seconds a
// binary) is most of the tests' time, and there are two cores. Errors
// are left for load to report.
var warm = sync.OnceFunc(func() {
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, name := range []string{"markdown", "loop", "kv", "trap", "nsprobe"} {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			loadErr(name)
		})
	}
	wg.Wait()
})

// load returns the test module name, loaded once.
func load(t testing.TB, name string) module.Module {
	t.Helper()
	warm()
	m, err := loadErr(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func loadErr(name string) (module.Module, error) {
	if m, ok := loaded.Load(name); ok {
		return m.(module.Module), nil
	}
	wasm, manifest, err := guestErr(name)
	if err != nil {
		return nil, err
	}
	data, err := signedErr(manifest, wasm, testKey)
	if err != nil {
		return nil, err
	}
	r, err := sharedRuntime()
	if err != nil {
		return nil, err
	}
	m, err := r.Load(context.Background(), name, data, "test:"+name)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	mm, _ := loaded.LoadOrStore(name, m)
	return mm.(module.Module), nil
}

// logRecorder keeps the log records of an instance.
type logRecorder struct {
	mu   sync.Mutex
	recs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.recs, func(s string) bool { return strings.Contains(s, sub) })
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.recs, "\n")
}

// started is a running test instance and what its env reports.
type started struct {
	module.Instance
	env   module.Env
	log   *logRecorder
	fails chan error
}

// startEnv starts module name with config text, data dir and namespace.
func startEnv(t testing.TB, name, cfgText, dir string, ns styx.Attacher) *started {
	t.Helper()
	cfg, err := module.ParseConfig(cfgText)
	if err != nil {
		t.Fatal(err)
	}
	m := load(t, name)
	if err := m.CheckConfig(cfg); err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	s := &started{log: rec, fails: make(chan error, 4)}
	s.env = module.Env{
		Name: name, Config: cfg, Dir: dir, Log: slog.New(rec),
		Fail:      func(err error) { s.fails <- err },
		Namespace: ns,
	}
	inst, err := m.Start(context.Background(), s.env)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	s.Instance = inst
	t.Cleanup(func() { inst.Stop(context.Background()) })
	return s
}

func start(t testing.TB, name, cfgText string) *started {
	t.Helper()
	return startEnv(t, name, cfgText, t.TempDir(), nil)
}

// failed waits for the instance's env.Fail.
func (s *started) failed(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.fails:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("env.Fail not called")
		return nil
	}
}

func attach(t testing.TB, a styx.Attacher, user string) styx.File {
	t.Helper()
	root, err := a.Attach(context.Background(), user, "", nil)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(func() { root.Clunk() })
	return root
}

// walk walks from root to path, returning a new file.
func walk(ctx context.Context, root styx.File, path string) (styx.File, error) {
	names := styx.SplitPath(path)
	qids, f, err := root.Walk(ctx, names)
	if err != nil && len(qids) == 0 && len(names) > 0 {
		return nil, err
	}
	if len(qids) < len(names) || f == nil {
		if err == nil {
			err = plan9.ErrNotFound
		}
		return nil, err
	}
	return f, nil
}

func readAll(ctx context.Context, f styx.File) (string, error) {
	var b []byte
	buf := make([]byte, 8192)
	for {
		n, err := f.Read(ctx, buf, int64(len(b)))
		b = append(b, buf[:n]...)
		if err != nil && !errors.Is(err, io.EOF) {
			return string(b), err
		}
		if n == 0 {
			return string(b), nil
		}
	}
}

// writeFile opens path with mode, writes data and clunks, returning the
// first error.
func writeFile(ctx context.Context, root styx.File, path string, mode uint8, data string) error {
	f, err := walk(ctx, root, path)
	if err != nil {
		return err
	}
	if _, err := f.Open(ctx, mode); err != nil {
		f.Clunk()
		return err
	}
	if _, err := f.Write(ctx, []byte(data), 0); err != nil {
		f.Clunk()
		return err
	}
	return f.Clunk()
}

// filter writes in to the filter file path and reads back, on one open.
func filter(ctx context.Context, root styx.File, path, in string) (string, error) {
	f, err := walk(ctx, root, path)
	if err != nil {
		return "", err
	}
	defer f.Clunk()
	if _, err := f.Open(ctx, plan9.ORDWR); err != nil {
		return "", err
	}
	if _, err := f.Write(ctx, []byte(in), 0); err != nil {
		return "", err
	}
	return readAll(ctx, f)
}

// create makes name in the directory dir with data.
func create(ctx context.Context, root styx.File, dir, name string, perm uint32, data string) error {
	d, err := walk(ctx, root, dir)
	if err != nil {
		return err
	}
	mode := uint8(plan9.OWRITE)
	if perm&plan9.DMDIR != 0 {
		mode = plan9.OREAD
	}
	f, _, err := d.Create(ctx, name, perm, mode)
	if err != nil {
		d.Clunk()
		return err
	}
	if f != d {
		d.Clunk()
	}
	if data != "" {
		if _, err := f.Write(ctx, []byte(data), 0); err != nil {
			f.Clunk()
			return err
		}
	}
	return f.Clunk()
}

func remove(ctx context.Context, root styx.File, path string) error {
	f, err := walk(ctx, root, path)
	if err != nil {
		return err
	}
	err = f.Remove(ctx)
	f.Clunk()
	return err
}

func readDirNames(ctx context.Context, root styx.File, path string) ([]string, error) {
	f, err := walk(ctx, root, path)
	if err != nil {
		return nil, err
	}
	defer f.Clunk()
	if _, err := f.Open(ctx, plan9.OREAD); err != nil {
		return nil, err
	}
	ds, err := f.ReadDir(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	return names, nil
}

func wantErr(t testing.TB, what string, err error, sub string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), sub) {
		t.Errorf("%s: err %v, want one containing %q", what, err, sub)
	}
}

func ok(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func parseConfigText(text string) (module.Config, error) { return module.ParseConfig(text) }

func envFor(name string, cfg module.Config, dir string) module.Env {
	return module.Env{Name: name, Config: cfg, Dir: dir, Log: slog.New(slog.DiscardHandler), Fail: func(error) {}}
}

func parse(t testing.TB, text string) module.Config {
	t.Helper()
	cfg, err := module.ParseConfig(text)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func perms(t testing.TB, ss []string) []module.Perm {
	t.Helper()
	var out []module.Perm
	for _, s := range ss {
		p, err := module.ParsePerm(strings.Fields(s))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
