package styx_test

import (
	"context"
	"testing"

	"cheshire/styx/styxbench"
)

// maxSmallOpAllocs bounds the allocations, client and server together,
// of one walk+open+read(128 B)+clunk round trip against a tmp tree. It
// measured 54 (59-60 with -race; go1.26, linux/amd64) when set: the
// bound leaves room for noise and toolchain drift, not for a regression
// of a dozen allocations a round trip.
const maxSmallOpAllocs = 80

func TestSmallOpAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation changes allocation counts")
	}
	fs, err := styxbench.CheshireTree(styxbench.Tree{SmallSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, fs)
	c, root := dialAttach(t, addr, styxbench.User)
	defer c.Close()
	ctx := context.Background()
	buf := make([]byte, 128)
	var opErr error
	op := func() {
		if n, err := styxbench.SmallOp(ctx, root, buf); err != nil || n != 128 {
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
