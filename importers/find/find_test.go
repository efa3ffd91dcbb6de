package find_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cheshire/importers/find"
	"cheshire/internal/testutil"
	"cheshire/plan9"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

// world is a fake network: the holders announced for each path, which
// addresses answer and with what key, and a tree per key (in-process
// tmp trees stand for the remote nodes' exports).
type world struct {
	mu        sync.Mutex
	announced map[string][]string // path -> addrs
	keys      map[string]string   // addr -> key; absent: down
	trees     map[string]styx.File
	finds     int
	open      atomic.Int64 // imports not yet clunked
	now       time.Time
}

func (w *world) options() find.Options {
	return find.Options{
		Self: "self",
		Find: func(ctx context.Context, p string) ([]string, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.finds++
			return slices.Clone(w.announced[p]), nil
		},
		Probe: func(ctx context.Context, addr string) (string, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			k, ok := w.keys[addr]
			if !ok {
				return "", errors.New("connection refused")
			}
			return k, nil
		},
		Import: func(ctx context.Context, key, addr, p string, wait bool) (styx.File, error) {
			w.mu.Lock()
			tree := w.trees[key]
			w.mu.Unlock()
			f, err := styx.WalkFile(ctx, tree, styx.SplitPath(p))
			if err != nil {
				return nil, err
			}
			w.open.Add(1)
			return &counted{File: f, w: w}, nil
		},
		Now: func() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now },
	}
}

func (w *world) advance(d time.Duration) { w.mu.Lock(); w.now = w.now.Add(d); w.mu.Unlock() }

func (w *world) lookups() int { w.mu.Lock(); defer w.mu.Unlock(); return w.finds }

// counted is an import's root that counts its clunk.
type counted struct {
	styx.File
	w    *world
	once sync.Once
}

func (c *counted) Clunk() error {
	c.once.Do(func() { c.w.open.Add(-1) })
	return c.File.Clunk()
}

func newTree(t *testing.T, files map[string]string) styx.File {
	t.Helper()
	ctx := t.Context()
	root, err := tmp.New("me").Attach(ctx, "me", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		names := styx.SplitPath(p)
		for i := 1; i < len(names); i++ {
			d, err := styx.WalkFile(ctx, root, names[:i-1])
			if err != nil {
				t.Fatal(err)
			}
			if nf, _, err := d.Create(ctx, names[i-1], styx.DMDIR|0755, styx.OREAD); err == nil {
				nf.Clunk()
			} else {
				d.Clunk()
			}
		}
		if err := styx.WriteFile(ctx, root, p, []byte(data), 0644); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
	}
	return root
}

func readAt(t *testing.T, root styx.File, p string) (string, error) {
	t.Helper()
	b, err := styx.ReadFile(t.Context(), root, p, -1)
	return string(b), err
}

// TestFindOnWalk: a walk name by name reaches the path a node announces,
// skipping a holder that is down, and reads its files; the lookup is
// remembered; a path no one holds, nothing announced below it, is not
// found, and looked up again after NegTTL; every import is clunked in
// the end.
func TestFindOnWalk(t *testing.T) {
	t.Parallel()
	w := &world{
		announced: map[string][]string{"/projects/x": {"tls!down!1", "tls!self!1", "tls!b!1"}, "/projects/": {"tls!b!1"}},
		keys:      map[string]string{"tls!b!1": "B", "tls!self!1": "self"},
		trees:     map[string]styx.File{"B": newTree(t, map[string]string{"/projects/x/readme": "from b\n"})},
		now:       time.Unix(1e9, 0),
	}
	f := find.New(w.options())
	root, err := f.Attach(t.Context(), "me", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// One name at a time, as FUSE walks.
	p, err := styx.WalkFile(t.Context(), root, []string{"projects"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAt(t, p, "x/readme")
	if err != nil || got != "from b\n" {
		t.Fatalf("read x/readme: %q %v", got, err)
	}
	p.Clunk()
	if st := f.Stats(); st.Found != 1 || st.Skipped != 1 {
		t.Errorf("stats %+v: want one found, one skipped (down; self is not counted)", st)
	}
	n := w.lookups()
	if got, err := readAt(t, root, "projects/x/readme"); err != nil || got != "from b\n" {
		t.Fatalf("read again: %q %v", got, err)
	}
	// /projects was looked up again (it is remembered as held by none,
	// but only for NegTTL: here the clock has not moved) — no new lookups.
	if w.lookups() != n {
		t.Errorf("cached walk made %d lookups", w.lookups()-n)
	}
	// The root lists what is known to be held.
	d, err := styx.WalkFile(t.Context(), root, []string{"projects"})
	if err != nil {
		t.Fatal(err)
	}
	ents, err := d.ReadDir(t.Context())
	d.Clunk()
	if err != nil || len(ents) != 1 || ents[0].Name != "x" {
		t.Errorf("listing of /projects: %v %v", ents, err)
	}
	// A path no one holds, with nothing announced below it: not found.
	if _, err := readAt(t, root, "nothing/here"); !errors.Is(err, plan9.ErrNotFound) {
		t.Errorf("read of a path no one holds: %v", err)
	}
	n = w.lookups()
	readAt(t, root, "nothing/here")
	if w.lookups() != n {
		t.Errorf("negative answers not remembered: %d lookups", w.lookups()-n)
	}
	w.advance(find.DefaultNegTTL + time.Second)
	readAt(t, root, "nothing/here")
	if w.lookups() == n {
		t.Error("negative answers remembered past NegTTL")
	}
	// A holder that is announced later is found once NegTTL is over.
	w.mu.Lock()
	w.announced["/nothing"] = []string{"tls!b!1"}
	w.trees["B"] = newTree(t, map[string]string{"/nothing/here": "now\n"})
	w.mu.Unlock()
	w.advance(find.DefaultNegTTL + time.Second)
	if got, err := readAt(t, root, "nothing/here"); err != nil || got != "now\n" {
		t.Errorf("later holder: %q %v", got, err)
	}
	root.Clunk()
	f.Close()
	testutil.WaitFor(t, "every import clunked", func() bool { return w.open.Load() == 0 })
}
