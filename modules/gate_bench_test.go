package modules_test

import (
	"context"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/module"
	"cheshire/modules"
	"cheshire/styx"
	"cheshire/synth"
)

// The gate's cost on the hot path: a read of a small file through an
// open fid, through the gate (gate) and from the instance directly
// (direct), on one goroutine and on GOMAXPROCS goroutines at once, each
// with its own fid.
//
//	go test -run='^$' -bench=Gate -count=5 ./modules

func BenchmarkGate(b *testing.B) {
	mod := module.Native(module.Manifest{Name: "small", Version: "1"}, smallServer())
	mgr, err := modules.NewManager(modules.Options{Dir: b.TempDir(), Owner: "glenda"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mgr.Close(context.Background()) })
	if err := mgr.Add(mod, ""); err != nil {
		b.Fatal(err)
	}
	if err := mgr.Boot(b.Context()); err != nil {
		b.Fatal(err)
	}
	gated, err := mgr.Attacher("small")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		a    styx.Attacher
	}{{"gate", gated}, {"direct", smallServer()}} {
		b.Run(c.name, func(b *testing.B) {
			f := openSmall(b, c.a)
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if n, err := f.Read(b.Context(), buf, 0); n != 3 || err != nil {
					b.Fatalf("read: %d, %v", n, err)
				}
			}
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				f := openSmall(b, c.a)
				buf := make([]byte, 64)
				for pb.Next() {
					if n, err := f.Read(context.Background(), buf, 0); n != 3 || err != nil {
						b.Errorf("read: %d, %v", n, err)
						return
					}
				}
			})
		})
	}
}

func smallServer() *synth.Server {
	root := synth.NewDir("/", 0555)
	root.Add(synth.Static("ok", 0444, []byte("ok\n")))
	return synth.NewServer(root, synth.WithOwner("glenda"))
}

// openSmall attaches to a and opens "ok"; the fids are clunked when the
// benchmark ends.
func openSmall(b *testing.B, a styx.Attacher) styx.File {
	ctx := context.Background()
	root, err := a.Attach(ctx, "glenda", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { root.Clunk() })
	f, err := testutil.WalkOpen(ctx, root, "ok", styx.OREAD)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Clunk() })
	return f
}
