package modules_test

import (
	"fmt"
	"sync"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/ns"
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
