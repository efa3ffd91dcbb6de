package wasm

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"testing"

	"cheshire/modules/pkg"
)

// rezip rewrites a package with change applied to the entry name, keeping
// everything else (the signature included) as it was.
func rezip(t *testing.T, data []byte, name string, change func([]byte) []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	found := false
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if f.Name == name {
			b, found = change(bytes.Clone(b)), true
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: f.Method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("no entry %s in the package", name)
	}
	return buf.Bytes()
}

func TestLoadRefuses(t *testing.T) {
	ctx := context.Background()
	r := testRuntime(t)
	// A tiny module keeps the (race-instrumented) zip work short.
	wasm := handWasm(1, false)
	manifest := []byte("name trap\nversion 1\ndescription 'reads that panic'\n")
	good := signed(t, manifest, wasm, testKey)
	if _, err := r.Load(ctx, "trap", good, "good"); err != nil {
		t.Fatalf("good package: %v", err)
	}
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte {
			b[off%len(b)] ^= 1
			return b
		}
	}
	for _, c := range []struct {
		name string
		data []byte
		want error
		sub  string
	}{
		{"unsigned", signed(t, manifest, wasm, nil), pkg.ErrUnsigned, ""},
		{"untrusted", signed(t, manifest, wasm, otherKey), pkg.ErrUntrusted, "not trusted"},
		{"wasm byte flipped", rezip(t, good, "module.wasm", flip(len(wasm)/2)), pkg.ErrWasmMismatch, ""},
		{"wasm header flipped", rezip(t, good, "module.wasm", flip(1)), pkg.ErrWasmMismatch, ""},
		{"manifest changed", rezip(t, good, "manifest", func(b []byte) []byte {
			return bytes.Replace(b, []byte("reads that panic"), []byte("reads that work!"), 1)
		}), pkg.ErrBadSignature, ""},
		{"manifest byte flipped", rezip(t, good, "manifest", flip(3)), nil, "load"},
		{"signature flipped", rezip(t, good, "signature", flip(5)), pkg.ErrBadSignature, ""},
		{"not a package", []byte("hello"), nil, "not a package"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := r.Load(ctx, "trap", c.data, c.name)
			if err == nil {
				t.Fatal("loaded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("err %v, want %v", err, c.want)
			}
			if c.sub != "" {
				wantErr(t, c.name, err, c.sub)
			}
			t.Log(err)
		})
	}

	// A runtime trusting no one loads nothing.
	none, err := NewRuntime(ctx, Options{Trusted: func() []ed25519.PublicKey { return nil }})
	ok(t, "runtime", err)
	defer none.Close(ctx)
	_, err = none.Load(ctx, "trap", good, "good")
	if !errors.Is(err, pkg.ErrUntrusted) {
		t.Errorf("runtime trusting no one: %v", err)
	}

	// The name the node gives must be the manifest's.
	_, err = r.Load(ctx, "other", good, "good")
	wantErr(t, "wrong name", err, `package is module "trap", not "other"`)
}

// A hand-made module: the exports of the ABI, with cheshire_abi
// returning version and cheshire_call returning 0 (an empty response at
// address 0), and the imports given.
func handWasm(version byte, withImport bool) []byte {
	sec := func(id byte, content ...byte) []byte { return append([]byte{id, byte(len(content))}, content...) }
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	var b []byte
	b = append(b, "\x00asm\x01\x00\x00\x00"...)
	b = append(b, sec(1, 4,
		0x60, 0, 0, // () -> ()
		0x60, 0, 1, 0x7f, // () -> i32
		0x60, 1, 0x7f, 1, 0x7f, // i32 -> i32
		0x60, 2, 0x7f, 0x7f, 1, 0x7e, // i32 i32 -> i64
	)...)
	if withImport {
		var imp []byte
		imp = append(imp, 1)
		imp = append(imp, name("env")...)
		imp = append(imp, name("system")...)
		imp = append(imp, 0, 0)
		b = append(b, sec(2, imp...)...)
	}
	b = append(b, sec(3, 4, 0, 1, 2, 3)...)
	b = append(b, sec(5, 1, 0, 1)...)
	var exp []byte
	exp = append(exp, 5)
	fn := byte(0)
	if withImport {
		fn = 1
	}
	for i, n := range []string{"_initialize", "cheshire_abi", "cheshire_alloc", "cheshire_call"} {
		exp = append(append(exp, name(n)...), 0, fn+byte(i))
	}
	exp = append(append(exp, name("memory")...), 2, 0)
	b = append(b, sec(7, exp...)...)
	b = append(b, sec(10, 4,
		2, 0, 0x0b,
		4, 0, 0x41, version, 0x0b,
		4, 0, 0x41, 0, 0x0b,
		4, 0, 0x42, 0, 0x0b,
	)...)
	return b
}

func TestABIChecks(t *testing.T) {
	ctx := context.Background()
	r := testRuntime(t)
	manifest := []byte("name hand\nversion 1\n")
	load := func(wasm []byte) (*Module, error) {
		m, err := r.Load(ctx, "hand", signed(t, manifest, wasm, testKey), "hand")
		if err != nil {
			return nil, err
		}
		return m.(*Module), nil
	}

	_, err := load([]byte("\x00asm\x01\x00\x00\x00garbage"))
	wantErr(t, "garbage", err, "not a wasm module")
	_, err = load([]byte("\x00asm\x01\x00\x00\x00"))
	wantErr(t, "empty module", err, "no export _initialize")
	if !errors.Is(err, ErrABI) {
		t.Errorf("empty module: %v is not ErrABI", err)
	}
	_, err = load(handWasm(1, true))
	wantErr(t, "foreign import", err, "imports env.system")

	m, err := load(handWasm(2, false))
	ok(t, "load version 2", err)
	_, err = m.Start(ctx, envFor("hand", parse(t, ""), t.TempDir()))
	wantErr(t, "start version 2", err, "ABI version 2, node speaks 1")

	// A guest of the right version that answers nonsense fails cleanly.
	m, err = load(handWasm(1, false))
	ok(t, "load version 1", err)
	fails := make(chan error, 1)
	env := envFor("hand", parse(t, ""), t.TempDir())
	env.Fail = func(err error) { fails <- err }
	in, err := m.Start(ctx, env)
	ok(t, "start version 1", err)
	defer in.Stop(ctx)
	_, err = in.Attach(ctx, "glenda", "", nil)
	wantErr(t, "attach", err, "module hand trapped: bad response")
	wantErr(t, "fail", <-fails, "module hand trapped")
	_, err = in.Attach(ctx, "glenda", "", nil)
	wantErr(t, "attach again", err, "module hand: module stopped")
}
