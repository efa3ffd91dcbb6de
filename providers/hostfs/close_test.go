package hostfs

import (
	"context"
	"errors"
	"os"
	"testing"

	"cheshire/styx"
)

// TestCloseWhenUnused: an FS made WithCloseWhenUnused keeps its export
// directory open while any file of it is held (a walked clone, a file
// created through a fid) and closes it at the last clunk; without the
// option it stays open.
func TestCloseWhenUnused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, closing := range []bool{true, false} {
		var opts []Option
		if closing {
			opts = append(opts, WithCloseWhenUnused())
		}
		h, err := New(t.TempDir(), false, opts...)
		if err != nil {
			t.Fatal(err)
		}
		root, err := h.Attach(ctx, "glenda", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, dir, err := root.Walk(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		nf, _, err := dir.Create(ctx, "f", 0644, styx.OWRITE) // nf replaces dir on its fid
		if err != nil {
			t.Fatal(err)
		}
		root.Clunk()
		if _, err := h.root.Stat("."); err != nil {
			t.Fatalf("closing=%v: root closed while a created file is held: %v", closing, err)
		}
		if _, err := nf.Write(ctx, []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		nf.Clunk()
		nf.Clunk() // a second clunk counts nothing
		_, err = h.root.Stat(".")
		if closing && !errors.Is(err, os.ErrClosed) {
			t.Errorf("after the last clunk the root stat gave %v, want it closed", err)
		}
		if !closing && err != nil {
			t.Errorf("without the option the root closed: %v", err)
		}
		if !closing {
			h.Close()
		}
	}
}
