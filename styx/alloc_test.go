package styx_test

import (
	"bytes"
	"context"
	"testing"

	"cheshire/styx"
)

// maxSmallOpAllocs bounds the allocations, client and server together,
// of one walk+open+read(128 B)+clunk round trip against a memFS tree. It
// measured 54 (59-60 with -race; go1.26, linux/amd64) when set: the
// bound leaves room for noise and toolchain drift, not for a regression
// of a dozen allocations a round trip.
const maxSmallOpAllocs = 80

func TestSmallOpAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation changes allocation counts")
	}
	ctx := context.Background()
	fs := newMemFS("glenda")
	froot, _ := fs.Attach(ctx, "glenda", "", nil)
	if err := styx.WriteFile(ctx, froot, "small", bytes.Repeat([]byte("x"), 128), 0666); err != nil {
		t.Fatal(err)
	}
	c, root := dialAttach(t, serve(t, fs), "glenda")
	defer c.Close()
	buf := make([]byte, 128)
	var opErr error
	op := func() {
		if n, err := smallOp(ctx, root, buf); err != nil || n != 128 {
			opErr = err
		}
	}
	for range 100 { // warm the pools
		op()
	}
	allocs := testing.AllocsPerRun(500, op)
	if opErr != nil {
		t.Fatal(opErr)
	}
	t.Logf("%.1f allocations per walk+open+read+clunk", allocs)
	if allocs > maxSmallOpAllocs {
		t.Errorf("%.1f allocations per small op, bound %d", allocs, maxSmallOpAllocs)
	}
}

// smallOp walks to /small, opens it, reads up to len(buf) bytes from
// offset 0 and clunks: four round trips.
func smallOp(ctx context.Context, root *styx.Fid, buf []byte) (int, error) {
	_, f, err := root.Walk(ctx, "small")
	if err != nil {
		return 0, err
	}
	if err := f.Open(ctx, styx.OREAD); err != nil {
		f.Clunk(ctx)
		return 0, err
	}
	n, err := f.ReadOnce(ctx, buf, 0)
	if cerr := f.Clunk(ctx); err == nil {
		err = cerr
	}
	return n, err
}
