package synthtest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

// recorder is a testing.T that keeps the errors reported to it.
type recorder struct {
	*testing.T
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// liar is a File that lies: the stat of b names another owner, and ".."
// from sub leads elsewhere.
type liar struct{ styx.File }

func (l liar) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	qids, f, err := l.File.Walk(ctx, names)
	if f != nil {
		f = liar{f}
	}
	if st, _ := l.File.Stat(ctx); st.Name == "sub" && len(names) == 1 && names[0] == ".." && len(qids) == 1 {
		qids[0].Path += 1000
	}
	return qids, f, err
}

func (l liar) Stat(ctx context.Context) (styx.Dir, error) {
	d, err := l.File.Stat(ctx)
	if d.Name == "b" {
		d.Uid = "mallory"
	}
	return d, err
}

func TestFaultsFound(t *testing.T) {
	root := synth.NewDir("/", 0555)
	for _, n := range []string{"a", "b"} {
		if err := root.Add(synth.Static(n, 0444, []byte(n))); err != nil {
			t.Fatal(err)
		}
	}
	sub := synth.NewDir("sub", 0555)
	if err := root.Add(sub); err != nil {
		t.Fatal(err)
	}
	// A generator whose order changes at every call: one-entry reads
	// disagree with large ones.
	var calls atomic.Int32
	shuffle := synth.NewDir("shuffle", 0555)
	shuffle.SetGen(func(context.Context) ([]synth.Node, error) {
		x, y := synth.Static("x", 0444, nil), synth.Static("y", 0444, nil)
		if calls.Add(1)%2 == 0 {
			return []synth.Node{y, x}, nil
		}
		return []synth.Node{x, y}, nil
	})
	if err := root.Add(shuffle); err != nil {
		t.Fatal(err)
	}
	s := synth.NewServer(root)
	a := styx.AttachFunc(func(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
		f, err := s.Attach(ctx, uname, aname, auth)
		return liar{f}, err
	})

	r := &recorder{T: t}
	testServer(r, a, "glenda")
	want := []string{
		"synthtest: /b: stat differs from the directory entry: uid none vs mallory",
		"synthtest: /sub: .. has qid",
		"synthtest: /shuffle: entry 0 differs between one-entry and large reads",
	}
	for _, w := range want {
		found := false
		for _, e := range r.errs {
			found = found || strings.HasPrefix(e, w)
		}
		if !found {
			t.Errorf("fault not reported: %s", w)
		}
	}
	if len(r.errs) != 4 {
		t.Errorf("%d faults reported, want 4 (shuffle's two entries):\n%s", len(r.errs), strings.Join(r.errs, "\n"))
	}
}
