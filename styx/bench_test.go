package styx_test

// The engine alone, against memFS. The side-by-side benchmarks with other
// 9P servers are in cmd/cheshire-bench/internal/bench.

import (
	"bytes"
	"context"
	"testing"

	"cheshire/styx"
)

// BenchmarkSmallOp times one walk+open+read(128 B)+clunk round trip.
func BenchmarkSmallOp(b *testing.B) {
	ctx := context.Background()
	fs := newMemFS("glenda")
	froot, _ := fs.Attach(ctx, "glenda", "", nil)
	if err := styx.WriteFile(ctx, froot, "small", bytes.Repeat([]byte("x"), 128), 0666); err != nil {
		b.Fatal(err)
	}
	_, root := dialAttach(b, serve(b, fs), "glenda")
	buf := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := smallOp(ctx, root, buf); err != nil || n != 128 {
			b.Fatalf("small op: %d %v", n, err)
		}
	}
}
