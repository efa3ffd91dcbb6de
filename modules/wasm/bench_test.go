package wasm

import (
	"context"
	"testing"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"

	"github.com/tetratelabs/wazero"
)

// Reading a small file (walk, open, read to end of file, clunk) served by
// a wasm module, against the same file served natively by synth: through
// styx.File calls, and through a 9P client over TCP loopback.
//
//	go test -run='^$' -bench=Read ./modules/wasm

func BenchmarkReadWasm(b *testing.B) {
	s := start(b, "loop", "")
	benchRead(b, s)
}

func BenchmarkReadSynth(b *testing.B) {
	root := synth.NewDir("/", 0o555)
	root.Add(synth.Static("ok", 0o444, []byte("ok\n")))
	benchRead(b, synth.NewServer(root))
}

func benchRead(b *testing.B, a styx.Attacher) {
	ctx := context.Background()
	b.Run("file", func(b *testing.B) {
		root := attach(b, a, "glenda")
		buf := make([]byte, 8192)
		b.ReportAllocs()
		for b.Loop() {
			_, f, err := root.Walk(ctx, []string{"ok"})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Open(ctx, plan9.OREAD); err != nil {
				b.Fatal(err)
			}
			n, err := f.Read(ctx, buf, 0)
			if err != nil || n != 3 {
				b.Fatalf("read: %d, %v", n, err)
			}
			if n, err := f.Read(ctx, buf, 3); n != 0 || err != nil {
				b.Fatalf("read at eof: %d, %v", n, err)
			}
			if err := f.Clunk(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("9p", func(b *testing.B) {
		root := serve(b, a, "glenda")
		buf := make([]byte, 8192)
		b.ReportAllocs()
		for b.Loop() {
			_, f, err := root.Walk(ctx, "ok")
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Open(ctx, plan9.OREAD); err != nil {
				b.Fatal(err)
			}
			n, err := f.ReadOnce(ctx, buf, 0)
			if err != nil || n != 3 {
				b.Fatalf("read: %d, %v", n, err)
			}
			if n, err := f.ReadOnce(ctx, buf, 3); n != 0 || err != nil {
				b.Fatalf("read at eof: %d, %v", n, err)
			}
			if err := f.Clunk(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Compiling a module's code, as a node does for each package it loads
// at start, with nothing cached (memory), and from wazero's cache on
// disk, which the node no longer keeps (disk):
//
//	go test -run='^$' -bench=Compile -benchtime=3x ./modules/wasm
func BenchmarkCompile(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"kv", "markdown", "trap"} {
		wasm, _ := guest(b, name)
		compile := func(b *testing.B, cache wazero.CompilationCache) {
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
			defer r.Close(ctx)
			if _, err := r.CompileModule(ctx, wasm); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name+"/memory", func(b *testing.B) {
			for b.Loop() {
				cache := wazero.NewCompilationCache()
				compile(b, cache)
				cache.Close(ctx)
			}
		})
		b.Run(name+"/disk", func(b *testing.B) {
			dir := b.TempDir()
			warm, err := wazero.NewCompilationCacheWithDir(dir)
			if err != nil {
				b.Fatal(err)
			}
			compile(b, warm)
			for b.Loop() {
				cache, _ := wazero.NewCompilationCacheWithDir(dir)
				compile(b, cache)
				cache.Close(ctx)
			}
		})
	}
}
