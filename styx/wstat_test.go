package styx_test

import (
	"context"
	"testing"

	"cheshire/plan9"
	"cheshire/styx"
)

// TestWstatFixedFields checks that the engine refuses, before the
// File's Wstat is called, a wstat that would change type, dev, any part
// of the qid, or the DMDIR bit of the mode; and that "don't touch"
// values and values equal to the current ones pass.
func TestWstatFixedFields(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fs := newMemFS("glenda")
	_, root := dialAttach(t, serve(t, fs), "glenda")
	for _, c := range []struct {
		name string
		perm uint32
	}{{"f", 0644}, {"d", styx.DMDIR | 0755}} {
		_, f, err := root.Walk(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Create(ctx, c.name, c.perm, styx.OREAD); err != nil {
			t.Fatal(err)
		}
		f.Clunk(ctx)
	}

	tests := []struct {
		name string
		path string
		set  func(d, cur *styx.Dir)
		err  error // nil: accepted
	}{
		{"type", "f", func(d, cur *styx.Dir) { d.Type = cur.Type + 1 }, plan9.ErrWstat},
		{"dev", "f", func(d, cur *styx.Dir) { d.Dev = cur.Dev + 1 }, plan9.ErrWstat},
		{"qid.type", "f", func(d, cur *styx.Dir) { d.Qid.Type = cur.Qid.Type | styx.QTAPPEND }, plan9.ErrWstat},
		{"qid.vers", "f", func(d, cur *styx.Dir) { d.Qid.Vers = cur.Qid.Vers + 1 }, plan9.ErrWstat},
		{"qid.path", "f", func(d, cur *styx.Dir) { d.Qid.Path = cur.Qid.Path + 1 }, plan9.ErrWstat},
		{"file to dir", "f", func(d, cur *styx.Dir) { d.Mode = styx.DMDIR | 0644 }, plan9.ErrConvert},
		{"dir to file", "d", func(d, cur *styx.Dir) { d.Mode = 0755 }, plan9.ErrConvert},
		{"all null", "f", func(d, cur *styx.Dir) {}, nil},
		{"same type, dev and qid", "f", func(d, cur *styx.Dir) { d.Type, d.Dev, d.Qid = cur.Type, cur.Dev, cur.Qid }, nil},
		{"file mode", "f", func(d, cur *styx.Dir) { d.Mode = 0600 }, nil},
		{"dir mode", "d", func(d, cur *styx.Dir) { d.Mode = styx.DMDIR | 0700 }, nil},
		{"whole entry", "d", func(d, cur *styx.Dir) { *d = *cur }, nil},
	}
	for _, tt := range tests {
		f, err := root.WalkPath(ctx, tt.path)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := f.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d := styx.NullDir()
		tt.set(&d, &cur)
		before := fs.wstats.Load()
		err = f.Wstat(ctx, d)
		called := fs.wstats.Load() != before
		switch {
		case tt.err == nil && err != nil:
			t.Errorf("%s: wstat %v: %v", tt.name, d, err)
		case tt.err != nil && (err == nil || err.Error() != tt.err.Error()):
			t.Errorf("%s: wstat %v: got %v, want %q", tt.name, d, err, tt.err)
		case tt.err != nil && called:
			t.Errorf("%s: the File's Wstat was called", tt.name)
		case tt.err == nil && !called:
			t.Errorf("%s: the File's Wstat was not called", tt.name)
		}
		if after, _ := f.Stat(ctx); tt.err != nil && after != cur {
			t.Errorf("%s: entry changed from %v to %v", tt.name, cur, after)
		}
		f.Clunk(ctx)
	}
}
