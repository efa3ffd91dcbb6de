package testutil_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/plan9"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

func TestFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root, err := tmp.New("glenda").Attach(ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Clunk()
	if err := styx.WriteFile(ctx, root, "/f", []byte("old text"), 0644); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteFile(ctx, root, "/f", "new"); err != nil {
		t.Fatal(err)
	}
	if got, err := testutil.ReadFile(ctx, root, "/f"); err != nil || got != "new" {
		t.Errorf("ReadFile = %q, %v; want the truncated new text", got, err)
	}
	if err := testutil.WriteFile(ctx, root, "/missing", "x"); !errors.Is(err, plan9.ErrNotFound) {
		t.Errorf("WriteFile of a missing file: %v, want file not found", err)
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	testutil.WaitFor(t, "three calls", func() bool { return n.Add(1) == 3 })
	if n.Load() != 3 {
		t.Errorf("cond called %d times, want 3", n.Load())
	}
	if p := testutil.FreePort(t); p <= 0 {
		t.Errorf("FreePort = %d", p)
	}
}
