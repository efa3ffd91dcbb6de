package wasm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/plan9"
)

// failsafe bounds the wait for an event that must come: were it late by
// this much, the sandbox would not hold. It is not a measure of speed.
const failsafe = 20 * time.Second

// nodeDir makes a stand-in for a node's data directory, with its key and
// trusted keys, and returns it with the data directory of module name.
func nodeDir(t *testing.T, name string) (node, data string) {
	t.Helper()
	node = t.TempDir()
	ok(t, "mkdir", os.MkdirAll(filepath.Join(node, "modules", name, "data"), 0o700))
	ok(t, "write key", os.WriteFile(filepath.Join(node, "identity.pem"), []byte("NODE KEY\n"), 0o600))
	ok(t, "write trusted", os.WriteFile(filepath.Join(node, "modules", "trusted"), []byte("TRUSTED\n"), 0o600))
	return node, filepath.Join(node, "modules", name, "data")
}

// checkNode checks that the node's files are as nodeDir made them.
func checkNode(t *testing.T, node string) {
	t.Helper()
	for file, want := range map[string]string{"identity.pem": "NODE KEY\n", "modules/trusted": "TRUSTED\n"} {
		b, err := os.ReadFile(filepath.Join(node, file))
		if err != nil || string(b) != want {
			t.Errorf("node's %s: %q, %v", file, b, err)
		}
	}
	ents, _ := os.ReadDir(node)
	for _, e := range ents {
		if e.Name() != "identity.pem" && e.Name() != "modules" && e.Name() != "planted" {
			t.Errorf("the module made %s in the node's directory", e.Name())
		}
	}
}

// A hostile module tries every way out of its /data: symbolic links,
// relative and absolute, hard links, "..", renames out of the root,
// straight through WASI and through the os package. Every one fails,
// and the node's key and trusted keys are neither read nor written.
func TestDataConfined(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	node, data := nodeDir(t, "trap")
	// A link out of /data that the module did not make (left by an older
	// node, say) leads nowhere either.
	ok(t, "plant", os.Symlink(node, filepath.Join(data, "planted")))
	ok(t, "plant", os.Symlink("../../../identity.pem", filepath.Join(data, "plantedkey")))

	s := startEnv(t, "trap", "", data, nil)
	root := attach(t, s, "glenda")
	op := func(cmd string) (string, error) { return filter(ctx, root, "/fs", cmd) }

	// Its own files work.
	for _, cmd := range []string{"write /data/own mine", "mkdir /data/d", "rename /data/own /data/d/own"} {
		if _, err := op(cmd); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	if got, err := op("read /data/d/own"); err != nil || got != "mine" {
		t.Fatalf("read own file: %q, %v", got, err)
	}
	if got, err := op("raw open d/own"); err != nil || got != "mine" {
		t.Fatalf("raw open own file: %q, %v", got, err)
	}
	if got, err := op("ls /data/d"); err != nil || got != "own\n" {
		t.Fatalf("ls own directory: %q, %v", got, err)
	}
	if got, err := op("readlink /data/plantedkey"); err != nil || got != "../../../identity.pem" {
		t.Fatalf("readlink: %q, %v", got, err)
	}

	for _, cmd := range []string{
		"symlink ../../.. /data/node",
		"symlink ../../../identity.pem /data/key",
		"symlink / /data/abs",
		"symlink /data/d/own /data/self",
		"symlink d/own /data/rel",
		"link /data/d/own /data/hard",
		"rename /data/d/own /tmp/own",
		"rename /data/d/own /own",
		"read /data/../../../identity.pem",
		"read /data/node/identity.pem",
		"read /data/key",
		"read /data/planted/identity.pem",
		"read /data/plantedkey",
		"read /data/planted/modules/trusted",
		"write /data/planted/modules/trusted EVIL",
		"write /data/plantedkey EVIL",
		"write /data/planted/stolen x",
		"write /data/../../trusted EVIL",
		"mkdir /data/planted/newdir",
		"remove /data/planted/identity.pem",
		"ls /data/planted",
		"raw symlink ../../.. node",
		"raw symlink / abs",
		"raw symlink d/own rel",
		"raw link d/own hard",
		"raw link ../../../identity.pem hard",
		"raw rename d/own ../../../own",
		"raw rename ../../../identity.pem stolen",
		"raw rename d/own planted/own",
		"raw open ../../../identity.pem",
		"raw open ../../trusted",
		"raw open /etc/passwd",
		"raw open planted/identity.pem",
		"raw open plantedkey",
		"raw open d/../../../../identity.pem",
	} {
		if got, err := op(cmd); err == nil {
			t.Errorf("%s: succeeded, %q", cmd, got)
		} else if strings.Contains(err.Error(), "NODE KEY") || strings.Contains(err.Error(), "TRUSTED") {
			t.Errorf("%s: %v", cmd, err)
		}
	}

	// It made no link: all it has is its file and directory, and the
	// file is not linked anywhere else.
	ok(t, "walk", filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		switch {
		case rel == "planted" || rel == "plantedkey":
		case d.Type()&fs.ModeSymlink != 0:
			t.Errorf("the module made the link %s", rel)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink != 1 {
				t.Errorf("%s has %d links", rel, st.Nlink)
			}
		}
		return nil
	}))
	if b, err := os.ReadFile(filepath.Join(data, "d", "own")); err != nil || string(b) != "mine" {
		t.Errorf("own file on the host: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(node, "planted", "stolen")); err == nil {
		t.Error("the module wrote into the node's directory")
	}
	checkNode(t, node)
}

// The node's data directory is never below a module's /data.
func TestDataDirHoldsNode(t *testing.T) {
	t.Parallel()
	node, data := nodeDir(t, "trap")
	r := *testRuntime(t)
	r.opts.CacheDir = filepath.Join(node, "modules", "cache")
	wasm, manifest := guest(t, "trap")
	m, err := r.Load(context.Background(), "trap", signed(t, manifest, wasm, testKey), "test")
	ok(t, "load", err)
	cfg := parse(t, "")
	for _, dir := range []string{node, filepath.Join(node, "modules"), filepath.Join(node, "modules", "cache"), "/"} {
		in, err := m.Start(context.Background(), envFor("trap", cfg, dir))
		if err == nil {
			in.Stop(context.Background())
			t.Errorf("started with /data at %s, which holds the node's directory", dir)
		}
	}
	// Nor through a link to it.
	link := filepath.Join(t.TempDir(), "link")
	ok(t, "symlink", os.Symlink(filepath.Join(node, "modules"), link))
	if in, err := m.Start(context.Background(), envFor("trap", cfg, link)); err == nil {
		in.Stop(context.Background())
		t.Errorf("started with /data at %s, a link to the node's directory", link)
	}
	in, err := m.Start(context.Background(), envFor("trap", cfg, data))
	ok(t, "start in its own directory", err)
	in.Stop(context.Background())
}

// wait returns what ch yields, failing the test if it does not.
func wait[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failsafe):
		t.Fatalf("%s: never returned", what)
		panic("unreachable")
	}
}

// A guest sleeping in a handler is interrupted at its budget.
func TestSleepInterrupted(t *testing.T) {
	t.Parallel()
	s := start(t, "trap", "cpu 1s")
	root := attach(t, s, "glenda")
	done := make(chan error, 1)
	go func() {
		_, err := testutil.ReadFile(context.Background(), root, "/sleep")
		done <- err
	}()
	err := wait(t, "read of /sleep", done)
	if !errors.Is(err, ErrBudget) {
		t.Fatalf("read of /sleep: %v, want the budget exceeded", err)
	}
	if !errors.Is(s.failed(t), ErrBudget) {
		t.Error("env.Fail not told of the budget")
	}
	_, err = testutil.ReadFile(context.Background(), root, "/ok")
	if !errors.Is(err, plan9.ErrModuleStopped) {
		t.Errorf("read after the interrupted sleep: %v", err)
	}
}

// A guest sleeping in its initialization is interrupted at the budget of
// initialization, and the start fails. (The budget is short enough that
// the Go runtime's own start may overrun it: that fails the same way.)
func TestSleepInInit(t *testing.T) {
	t.Parallel()
	r := *testRuntime(t)
	r.minInit = 100 * time.Millisecond
	wasm, manifest := guest(t, "sleepinit")
	m, err := r.Load(context.Background(), "sleepinit", signed(t, manifest, wasm, testKey), "test")
	ok(t, "load", err)
	done := make(chan error, 1)
	go func() {
		in, err := m.Start(context.Background(), envFor("sleepinit", parse(t, "cpu 100ms"), t.TempDir()))
		if err == nil {
			in.Stop(context.Background())
		}
		done <- err
	}()
	if err := wait(t, "start", done); !errors.Is(err, ErrBudget) {
		t.Fatalf("start: %v, want the budget exceeded", err)
	}
}

// Stop ends a call in progress at once, a sleeping one included, and
// gives the guest's memory back.
func TestStopEndsSleep(t *testing.T) {
	t.Parallel()
	s := start(t, "trap", "cpu 10m")
	in := s.Instance.(*instance)
	root := attach(t, s, "glenda")
	done := make(chan error, 1)
	go func() {
		_, err := testutil.ReadFile(context.Background(), root, "/sleep")
		done <- err
	}()
	// Wait for the call to hold the instance.
	deadline := time.Now().Add(failsafe)
	for len(in.sem) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	ok(t, "stop", wait(t, "stop", stopped))
	if err := wait(t, "read of /sleep", done); !errors.Is(err, plan9.ErrModuleStopped) {
		t.Errorf("read of /sleep: %v, want module stopped", err)
	}
	if n := in.alloc.mapped.Load(); n != 0 {
		t.Errorf("%d bytes of the guest's memory still mapped after stop", n)
	}
	if _, err := testutil.ReadFile(context.Background(), root, "/ok"); !errors.Is(err, plan9.ErrModuleStopped) {
		t.Errorf("read after stop: %v", err)
	}
}

// A guest that takes memory until it has no more fails, and its memory
// is given back at once.
func TestMemoryBomb(t *testing.T) {
	t.Parallel()
	s := start(t, "trap", "memory 64M\ncpu 1m")
	in := s.Instance.(*instance)
	root := attach(t, s, "glenda")
	if in.alloc.mapped.Load() == 0 {
		t.Skip("linear memory is not mapped by us on this system")
	}
	_, err := testutil.ReadFile(context.Background(), root, "/bomb")
	wantErr(t, "read of /bomb", err, "module trap trapped")
	wantErr(t, "env.Fail", s.failed(t), "module trap trapped")
	if n := in.alloc.mapped.Load(); n != 0 {
		t.Errorf("%d bytes of the guest's memory still mapped after it failed", n)
	}
}

// Compiled code is never read from disk: what an older node left in
// CacheDir is removed, and nothing is written there, without a CacheKey.
func TestNoCompiledCodeOnDisk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	planted := filepath.Join(dir, "wazero-v1.12.0-amd64-linux")
	ok(t, "mkdir", os.MkdirAll(planted, 0o700))
	ok(t, "plant", os.WriteFile(filepath.Join(planted, "code"), []byte("native code"), 0o600))
	r, err := NewRuntime(ctx, Options{
		CacheDir: dir,
		Trusted:  func() []ed25519.PublicKey { return []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)} },
	})
	ok(t, "new runtime", err)
	defer r.Close(ctx)
	manifest := []byte("name trap\nversion 1\ndescription 'tiny'\n")
	_, err = r.Load(ctx, "trap", signed(t, manifest, handWasm(1, false), testKey), "test")
	ok(t, "load", err)
	ents, err := os.ReadDir(dir)
	ok(t, "read cache dir", err)
	for _, e := range ents {
		t.Errorf("%s left in the cache directory", e.Name())
	}
}

// TestSealedCache: with a CacheKey, compiled code is kept in CacheDir
// and used again by the next runtime; a file planted or changed there
// (its CRC32 made right or not) is deleted before wazero reads it, and
// the package still loads, compiled anew.
func TestSealedCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	trusted := func() []ed25519.PublicKey { return []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)} }
	key := []byte("a key derived from the node's identity")
	manifest := []byte("name trap\nversion 1\ndescription 'tiny'\n")
	pkgData := signed(t, manifest, handWasm(1, false), testKey)
	load := func() {
		t.Helper()
		r, err := NewRuntime(ctx, Options{CacheDir: dir, CacheKey: key, Trusted: trusted})
		ok(t, "new runtime", err)
		defer r.Close(ctx)
		_, err = r.Load(ctx, "trap", pkgData, "test")
		ok(t, "load", err)
	}
	code := func() []string {
		t.Helper()
		var out []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(p, "wazero-") {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	load()
	files := code()
	if len(files) == 0 {
		t.Fatal("nothing kept in the cache directory")
	}
	seals, err := os.ReadFile(filepath.Join(dir, "seals"))
	ok(t, "read seals", err)
	if n := strings.Count(string(seals), "\n"); n != len(files) {
		t.Errorf("%d seals for %d files", n, len(files))
	}
	// Kept and used again: nothing changes on the second load.
	before, _ := os.Stat(files[0])
	load()
	if after, err := os.Stat(files[0]); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("sealed file not used as it was: %v", err)
	}
	// Tampered: deleted, and written anew by the compile that follows.
	data, err := os.ReadFile(files[0])
	ok(t, "read cache file", err)
	data[len(data)/2] ^= 0xff
	ok(t, "tamper", os.WriteFile(files[0], data, 0o600))
	planted := filepath.Join(filepath.Dir(files[0]), "planted")
	ok(t, "plant", os.WriteFile(planted, []byte("native code"), 0o600))
	load()
	if _, err := os.Stat(planted); !os.IsNotExist(err) {
		t.Errorf("planted file still there: %v", err)
	}
	if again, err := os.ReadFile(files[0]); err != nil || bytes.Equal(again, data) {
		t.Errorf("tampered file not replaced: %v", err)
	}
	// Another key does not accept these seals: every file is sealed
	// anew under it (had a seal under the old key been taken, the seals
	// would not have changed).
	before2, err := os.ReadFile(filepath.Join(dir, "seals"))
	ok(t, "read seals", err)
	key = []byte("another node")
	load()
	after2, err := os.ReadFile(filepath.Join(dir, "seals"))
	ok(t, "read seals", err)
	for _, line := range strings.Split(strings.TrimSpace(string(before2)), "\n") {
		if strings.Contains(string(after2), line) {
			t.Errorf("seal %q, made under the old key, kept under another", line)
		}
	}
}
