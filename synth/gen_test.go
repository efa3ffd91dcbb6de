package synth_test

import (
	"context"
	"sync"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

// TestGenNames: a listed name keeps its node (and so its qid) from one
// listing to the next; a name gone is forgotten and made anew if it
// comes back.
func TestGenNames(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	names := []string{"a", "b"}
	made := map[string]int{}
	d := synth.NewDir("d", 0555)
	d.SetGen(synth.GenNames(func(context.Context) []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), names...)
	}, func(n string) synth.Node {
		mu.Lock()
		made[n]++
		mu.Unlock()
		return synth.Static(n, 0444, []byte(n))
	}))
	root := synth.NewDir("/", 0555)
	must(t, root.Add(d))
	e := newEnv(t, synth.NewServer(root))
	r := e.attach("glenda")
	qid := func(p string) styx.Qid {
		t.Helper()
		st, err := e.stat(r, p)
		must(t, err)
		return st.Qid
	}
	a := qid("d/a")
	if got := qid("d/a"); got != a {
		t.Errorf("qid of d/a changed: %v then %v", a, got)
	}
	mu.Lock()
	names = []string{"b"}
	mu.Unlock()
	if _, err := e.stat(r, "d/a"); err == nil {
		t.Error("d/a still there after it left the list")
	}
	mu.Lock()
	names = []string{"a", "b"}
	mu.Unlock()
	qid("d/a")
	mu.Lock()
	defer mu.Unlock()
	if made["a"] != 2 || made["b"] != 1 {
		t.Errorf("nodes made: %v, want a twice (it left and came back), b once", made)
	}
}
