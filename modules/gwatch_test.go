package modules_test

import (
	"fmt"
	"sync"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/module"
	"cheshire/modules"
	"cheshire/ns"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

// TestGateWatch: a write through the gate is told (at the write and at
// the clunk) to a watcher of the
// module's tree with the file's path; one of a path not watched is not.
func TestGateWatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newStore("kv", &recorder{}))
	root := e.root("kv")
	defer root.Clunk()
	w, ok := root.(ns.Watcher)
	if !ok {
		t.Fatal("the gate's files are not ns.Watchers")
	}
	var mu sync.Mutex
	var got []ns.Event
	stop, err := w.Watch(e.ctx, "/", false, func(ev ns.Event) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	other, err := w.Watch(e.ctx, "/greeting", false, func(ev ns.Event) { t.Errorf("watch of /greeting told %v", ev) })
	if err != nil {
		t.Fatal(err)
	}
	defer other()
	if err := testutil.WriteFile(e.ctx, root, "/put", "put a 1"); err != nil {
		t.Fatal(err)
	}
	// The write call's event, and the clunk's, with the version a stat
	// gives.
	testutil.WaitFor(t, "the write's events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 2
	})
	f, err := styx.WalkFile(e.ctx, root, []string{"put"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.Stat(e.ctx)
	f.Clunk()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, ev := range got {
		if ev.Op != "write" || ev.Path != "/put" {
			t.Errorf("event %+v, want a write of /put", ev)
		}
	}
	if last := got[len(got)-1]; last.Vers != d.Qid.Vers {
		t.Errorf("the clunk's event has version %d, a stat %d", last.Vers, d.Qid.Vers)
	}
	n := len(got)
	mu.Unlock()
	stop()
	if err := testutil.WriteFile(e.ctx, root, "/put", "put a 2"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Errorf("events after stop: %v", got[n:])
	}
}

// TestSelfChanged: a change an instance tells by itself (module.Env's
// Changed) reaches the watchers of its tree, a write with the version
// a stat gives.
func TestSelfChanged(t *testing.T) {
	t.Parallel()
	s := newStore("kv", &recorder{})
	e := newEnv(t, s)
	root := e.root("kv")
	defer root.Clunk()
	got := make(chan ns.Event, 10)
	stop, err := root.(ns.Watcher).Watch(e.ctx, "/", true, func(ev ns.Event) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	(*s.changed.Load())("write", "greeting", "")
	f, err := styx.WalkFile(e.ctx, root, []string{"greeting"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.Stat(e.ctx)
	f.Clunk()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.String() != fmt.Sprint("write /greeting ", d.Qid.Vers) {
			t.Errorf("told %q, want write /greeting %d", ev, d.Qid.Vers)
		}
	default:
		t.Error("a change told by the instance did not reach the watch")
	}
}

// TestGateWatchTmp: tmp through the gate, as the node mounts it: a
// create, a rename (wstat of the name), a wstat of the mode and a
// remove are told with the tree's paths.
func TestGateWatchTmp(t *testing.T) {
	t.Parallel()
	e := newManager(t, modules.Options{}, module.Native(module.Manifest{Name: "tmp", Version: "1"}, tmp.New("glenda")))
	e.wait(e.mgr.Booted(), "the boot")
	root := e.root("tmp")
	defer root.Clunk()
	got := make(chan string, 20)
	stop, err := root.(ns.Watcher).Watch(e.ctx, "/", false, func(ev ns.Event) { got <- ev.String() })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_, dir, err := root.Walk(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := dir.Create(e.ctx, "a", 0644, styx.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	d := styx.NullDir()
	d.Name = "b"
	if err := f.Wstat(e.ctx, d); err != nil {
		t.Fatal(err)
	}
	d = styx.NullDir()
	d.Mode = 0600
	if err := f.Wstat(e.ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(e.ctx); err != nil {
		t.Fatal(err)
	}
	f.Clunk()
	want := []string{"create /a", "rename /a /b", "wstat /b", "remove /b"}
	for _, w := range want {
		select {
		case ev := <-got:
			if ev != w {
				t.Errorf("event %q, want %q", ev, w)
			}
		default:
			t.Fatalf("no event, want %q", w)
		}
	}
}
