package modules_test

import (
	"sync"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/ns"
)

// TestGateWatch: a write through the gate (and the truncation of its
// open) is told to a watcher of the
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
	testutil.WaitFor(t, "the write's event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	mu.Lock()
	if ev := got[0]; ev.Op != "write" || ev.Path != "/put" {
		t.Errorf("event %+v, want a write of /put", ev)
	}
	n := len(got) // the open's truncation, and the write
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
