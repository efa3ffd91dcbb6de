package styx_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"cheshire/plan9"
	"cheshire/styx"
)

func TestReadWriteFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fs := newMemFSMax("glenda", 1<<20)
	root, err := fs.Attach(ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Clunk()
	if _, _, err := root.Create(ctx, "d", styx.DMDIR|0777, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	read := func(path string, max int64) string {
		t.Helper()
		b, err := styx.ReadFile(ctx, root, path, max)
		if err != nil {
			t.Fatalf("ReadFile %s: %v", path, err)
		}
		return string(b)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 10000) // several chunks
	if err := styx.WriteFile(ctx, root, "/d/f", big, 0644); err != nil {
		t.Fatalf("WriteFile creating: %v", err)
	}
	if got := read("d/./f", -1); got != string(big) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(big))
	}
	if got := read("d/f", 5); got != "01234" {
		t.Errorf("ReadFile max 5: %q", got)
	}
	if err := styx.WriteFile(ctx, root, "d/f", []byte("short"), 0); err != nil {
		t.Fatalf("WriteFile over: %v", err)
	}
	if got := read("d/f", -1); got != "short" {
		t.Errorf("after rewrite: %q (not truncated?)", got)
	}
	if got := read("d/f", 0); got != "" {
		t.Errorf("ReadFile max 0: %q", got)
	}

	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"read missing", func() error { _, err := styx.ReadFile(ctx, root, "d/nope", -1); return err }(), plan9.ErrNotFound},
		{"read dir", func() error { _, err := styx.ReadFile(ctx, root, "d", -1); return err }(), plan9.ErrIsDir},
		{"write in missing dir", styx.WriteFile(ctx, root, "nope/f", nil, 0644), plan9.ErrNotFound},
		{"write too big", styx.WriteFile(ctx, root, "d/f", make([]byte, 2<<20), 0644), plan9.ErrTooBig},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	// root is left as it was: still the root, not open.
	if _, _, err := root.Walk(ctx, []string{"d"}); err != nil {
		t.Errorf("walk from root afterwards: %v", err)
	}
}
