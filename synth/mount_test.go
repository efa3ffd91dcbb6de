package synth_test

import (
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

// TestMount: a walk into a NewMount crosses into the grafted server, and
// reads, writes and listings below it are the grafted server's.
func TestMount(t *testing.T) {
	inner := synth.NewDir("inner", 0755)
	inner.Add(synth.Static("hello", 0444, []byte("from inside\n")))
	sub := synth.NewDir("sub", 0755)
	sub.Add(synth.Static("deep", 0444, []byte("deeper\n")))
	inner.Add(sub)
	innerSrv := synth.NewServer(inner, synth.WithOwner("glenda"), synth.WithClock(pinned))

	root := synth.NewDir("/", 0755)
	root.Add(synth.Static("top", 0444, []byte("top\n")))
	root.Add(synth.NewMount("fs", 0755, innerSrv))
	e := newEnv(t, synth.NewServer(root, synth.WithOwner("glenda"), synth.WithClock(pinned)))

	r := e.attach("glenda")
	ls := func(p string) []string {
		d, err := r.WalkPath(e.ctx, p)
		must(t, err)
		defer d.Clunk(e.ctx)
		must(t, d.Open(e.ctx, styx.OREAD))
		ds, err := d.ReadDir(e.ctx)
		must(t, err)
		var names []string
		for _, x := range ds {
			names = append(names, x.Name)
		}
		return names
	}
	for p, want := range map[string]string{"/top": "top\n", "/fs/hello": "from inside\n", "/fs/sub/deep": "deeper\n"} {
		if got, err := e.read(r, p); err != nil || got != want {
			t.Errorf("read %s = %q, want %q", p, got, want)
		}
	}
	names := ls("/fs")
	if len(names) != 2 || names[0] != "hello" || names[1] != "sub" {
		t.Errorf("ls /fs = %q, want [hello sub]", names)
	}
	if ls := ls("/"); len(ls) != 2 {
		t.Errorf("ls / = %q, want [fs top]", ls)
	}
	root2, err := e.c.Attach(e.ctx, nil, "glenda", "")
	if err != nil {
		t.Fatal(err)
	}
	defer root2.Clunk(e.ctx)
	if _, _, err := root2.Walk(e.ctx, "fs", "nothere"); err == nil {
		t.Error("walk to /fs/nothere succeeded")
	}
	qids, f, err := root2.Walk(e.ctx, "fs")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Clunk(e.ctx)
	if len(qids) != 1 || qids[0].Type&styx.QTDIR == 0 {
		t.Errorf("walk fs qids = %v, want one directory qid", qids)
	}
}
