package tests

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/styx"
)

// buildPackage builds and signs the example module in dir (relative to
// the repository) with `cheshire module build` and `module sign`, as a
// module author would, with manifest edits applied by edit.
func buildPackage(t *testing.T, n *node, example, out string, edit func(string) string, signArgs ...string) {
	t.Helper()
	dir := filepath.Join("..", "modules", "examples", example)
	text, err := os.ReadFile(filepath.Join(dir, "manifest"))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		text = []byte(edit(string(text)))
	}
	mf := filepath.Join(shortTemp(t), "manifest")
	os.WriteFile(mf, text, 0644)
	cmd := exec.Command(binary(t), "module", "build", "-manifest", mf, "-o", out, dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("module build: %v\n%s", err, b)
	}
	if b, err := n.run("", append(append([]string{"module", "sign"}, signArgs...), out)...); err != nil {
		t.Fatalf("module sign: %v\n%s", err, b)
	}
}

// shFail runs script and returns its combined output, expecting failure.
func shFail(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err == nil {
		t.Fatalf("%s: succeeded, want failure; output %q", script, out)
	}
	return string(out)
}

// TestModulesThroughFUSE drives /modules with shell tools over a real
// FUSE mount: built-ins stopped and started, a package built, signed,
// loaded, used, hot-reloaded when its file changes, and refused when
// tampered with or signed by an untrusted author.
func TestModulesThroughFUSE(t *testing.T) {
	n := startNode(t, shortTemp(t))
	m := mount(t, n)
	mods := m + "/modules"

	list := sh(t, "cat "+mods+"/ctl")
	for _, want := range []string{"node running", "ns running", "tmp running", "host running"} {
		if !strings.Contains(list, want) {
			t.Errorf("/modules/ctl lacks %q:\n%s", want, list)
		}
	}
	// Stopping tmp: its files vanish and fail fast; starting it brings
	// them back with their contents.
	sh(t, "echo kept > "+m+"/tmp/f && echo stop tmp > "+mods+"/ctl")
	if ls := sh(t, "ls "+m); strings.Contains(ls, "tmp") {
		t.Errorf("ls / with tmp stopped: %q", ls)
	}
	if out := shFail(t, "cat "+m+"/tmp/f"); !strings.Contains(out, "No such") && !strings.Contains(out, "stopped") && !strings.Contains(out, "not") {
		t.Errorf("cat of a stopped module's file: %q", out)
	}
	if st := sh(t, "cat "+mods+"/tmp/status"); !strings.Contains(st, "state stopped") || !strings.Contains(st, "stopped-by owner") {
		t.Errorf("tmp/status:\n%s", st)
	}
	sh(t, "echo start tmp > "+mods+"/ctl")
	if got := sh(t, "cat "+m+"/tmp/f"); got != "kept\n" {
		t.Errorf("tmp after restart: %q", got)
	}
	if out := shFail(t, "echo frob tmp > "+mods+"/ctl"); !strings.Contains(out, "rror") && !strings.Contains(out, "nvalid") {
		t.Errorf("bad ctl: %q", out)
	}

	// A package: build, sign with the node's key, load from the host.
	work := shortTemp(t)
	pkg := filepath.Join(work, "kv.pkg")
	buildPackage(t, n, "kv", pkg, nil)
	sh(t, "echo load kv host:"+pkg+" > "+mods+"/ctl")
	sh(t, "echo 'set colour blue' > "+mods+"/kv/fs/ctl")
	if got := sh(t, "cat "+mods+"/kv/fs/keys/colour"); got != "blue" && got != "blue\n" {
		t.Errorf("kv key: %q", got)
	}
	sh(t, "echo green > "+mods+"/kv/fs/keys/shade")
	if got := sh(t, "cat "+m+"/n/kv/keys/shade"); got != "green\n" {
		t.Errorf("kv at its manifest's mount point: %q", got)
	}
	if got := sh(t, "cat "+mods+"/kv/manifest"); !strings.Contains(got, "version 1.0.0") || !strings.Contains(got, "author ") {
		t.Errorf("kv/manifest:\n%s", got)
	}

	// Hot reload: a new version copied over the package file is loaded,
	// and the data stays.
	pkg2 := filepath.Join(work, "kv2.pkg")
	buildPackage(t, n, "kv", pkg2, func(s string) string { return strings.Replace(s, "version 1.0.0", "version 1.0.1", 1) })
	sh(t, "cp "+pkg2+" "+pkg+".new && mv "+pkg+".new "+pkg)
	testutil.WaitFor(t, "kv to reload as 1.0.1", func() bool {
		return strings.Contains(sh(t, "cat "+mods+"/kv/status"), "version 1.0.1")
	})
	if got := sh(t, "cat "+mods+"/kv/fs/keys/shade"); got != "green\n" {
		t.Errorf("kv after hot reload: %q", got)
	}
	// The log follows like tail -f: read what is there for a moment.
	if got := sh(t, "timeout 2 cat "+mods+"/kv/log; true"); !strings.Contains(got, "package file changed") {
		t.Errorf("kv/log does not tell of the reload:\n%s", got)
	}

	// A tampered package is refused and names why.
	data, _ := os.ReadFile(pkg2)
	bad := filepath.Join(work, "bad.pkg")
	data[len(data)/2] ^= 0xff
	os.WriteFile(bad, data, 0644)
	if out := shFail(t, "echo load bad host:"+bad+" > "+mods+"/ctl"); out == "" {
		t.Error("tampered package: no error shown")
	}
	if got := sh(t, "cat "+mods+"/ctl"); strings.Contains(got, "bad ") {
		t.Errorf("tampered package was loaded:\n%s", got)
	}

	// An author the node does not trust is refused until trusted.
	key := filepath.Join(work, "author.pem")
	if out, err := n.run("", "module", "key", "-o", key); err != nil {
		t.Fatalf("module key: %v %s", err, out)
	}
	other := filepath.Join(work, "other.pkg")
	buildPackage(t, n, "markdown", other, nil, "-key", key)
	shFail(t, "echo load markdown host:"+other+" > "+mods+"/ctl")
	id, err := n.run("", "module", "id", "-key", key)
	if err != nil {
		t.Fatal(err)
	}
	sh(t, "echo "+strings.TrimSpace(id)+" >> "+mods+"/trusted")
	sh(t, "echo load markdown host:"+other+" > "+mods+"/ctl")
	// It asked to read /tmp but was allowed nothing: refused until allowed.
	sh(t, "printf '# hello\\n' > "+m+"/tmp/notes.md")
	if out := shFail(t, "cat "+mods+"/markdown/fs/ns/tmp/notes.html"); out == "" {
		t.Error("ungranted read: no error")
	}
	sh(t, "echo 'allow read /tmp' > "+mods+"/markdown/config")
	if got := sh(t, "cat "+mods+"/markdown/fs/ns/tmp/notes.html"); !strings.Contains(got, "<h1>hello</h1>") {
		t.Errorf("rendered: %q", got)
	}

	sh(t, "echo unload markdown > "+mods+"/ctl && echo unload kv > "+mods+"/ctl")
	if got := sh(t, "cat "+mods+"/ctl"); strings.Contains(got, "kv") {
		t.Errorf("after unload:\n%s", got)
	}
}

// TestWasmReloadUnderLoad: 9P clients write keys to the kv package while
// it is reloaded again and again; every answered write is there after,
// and a file held open across the reloads keeps reading. Unloading it
// makes the held file fail at once with "module stopped".
func TestWasmReloadUnderLoad(t *testing.T) {
	n := startNode(t, shortTemp(t))
	pkg := filepath.Join(shortTemp(t), "kv.pkg")
	buildPackage(t, n, "kv", pkg, nil)
	user := userName(t)
	root := n.client(user)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctl := func(line string) error {
		f, err := root.WalkPath(ctx, "/modules/ctl")
		if err != nil {
			return err
		}
		defer f.Clunk(ctx)
		if err := f.Open(ctx, styx.OWRITE); err != nil {
			return err
		}
		_, err = f.WriteOnce(ctx, []byte(line), 0)
		return err
	}
	if err := ctl("load kv host:" + pkg); err != nil {
		t.Fatal(err)
	}
	put := func(r *styx.Fid, k, v string) error {
		f, err := r.WalkPath(ctx, "/modules/kv/fs/keys")
		if err != nil {
			return err
		}
		if err := f.Create(ctx, k, 0644, styx.OWRITE); err != nil {
			f.Clunk(ctx)
			return err
		}
		if _, err := f.WriteOnce(ctx, []byte(v), 0); err != nil {
			f.Clunk(ctx)
			return err
		}
		return f.Clunk(ctx)
	}
	if err := put(root, "held", "steady"); err != nil {
		t.Fatal(err)
	}
	held, err := root.WalkPath(ctx, "/modules/kv/fs/keys/held")
	if err != nil {
		t.Fatal(err)
	}
	if err := held.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	var acked sync.Map
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 3 {
		r := n.client(user)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%d", w, i)
				if err := put(r, k, k); err == nil {
					acked.Store(k, true)
				}
			}
		}()
	}
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		if err := ctl("reload kv"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		nr, err := held.ReadAt(ctx, buf, 0)
		if (err != nil && err != io.EOF) || string(buf[:nr]) != "steady" {
			t.Fatalf("held file after reload: %q, %v", buf[:nr], err)
		}
	}
	close(stop)
	wg.Wait()
	count, lost := 0, 0
	acked.Range(func(k, _ any) bool {
		count++
		f, err := root.WalkPath(ctx, "/modules/kv/fs/keys/"+k.(string))
		if err != nil {
			lost++
			return true
		}
		defer f.Clunk(ctx)
		if err := f.Open(ctx, styx.OREAD); err != nil {
			lost++
			return true
		}
		if b, err := f.ReadAll(ctx); err != nil || string(b) != k.(string) {
			lost++
		}
		return true
	})
	t.Logf("%d writes answered across 5 reloads of the wasm kv; %d lost", count, lost)
	if count == 0 || lost > 0 {
		t.Errorf("%d answered writes, %d lost", count, lost)
	}
	if err := ctl("unload kv"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = held.ReadAt(ctx, make([]byte, 8), 0)
	if err == nil || !strings.Contains(err.Error(), "module stopped") {
		t.Errorf("read of a held file after unload: %v, want module stopped", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failing took %v", d)
	}
}
