package wasm

import (
	"context"
	"testing"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// Reading a small file (walk, open, read to end of file, clunk) served by
// a wasm module, against the same file served natively by synth: through
// styx.File calls, and through a 9P client over TCP loopback.
//
//	go test -run='^$' -bench=Read ./providers/modules/wasm

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
