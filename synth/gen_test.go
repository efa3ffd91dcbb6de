package synth_test

import (
	"context"
	"errors"
	"strings"
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

// TestCheckedReadWrite: a write whose complete lines are refused fails,
// later writes on that fid fail too and nothing is applied at clunk; an
// incomplete last line waits; a good text is applied at clunk.
func TestCheckedReadWrite(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	content := "a 1\n"
	f := synth.CheckedReadWrite("config", 0644,
		func(context.Context) ([]byte, error) { mu.Lock(); defer mu.Unlock(); return []byte(content), nil },
		func(_ context.Context, b []byte) error { mu.Lock(); content = string(b); mu.Unlock(); return nil },
		func(_ context.Context, text string) error {
			if strings.Contains(text, "bad") {
				return errors.New("config line 2: bad setting")
			}
			return nil
		})
	root := synth.NewDir("/", 0755)
	must(t, root.Add(f))
	e := newEnv(t, synth.NewServer(root, synth.WithOwner("glenda")))
	r := e.attach("glenda")
	fd, err := e.open(r, "config", styx.OWRITE|styx.OTRUNC)
	must(t, err)
	if _, err := fd.WriteAt(e.ctx, []byte("a 2\nba"), 0); err != nil {
		t.Errorf("write with an incomplete last line: %v", err)
	}
	if _, err := fd.WriteAt(e.ctx, []byte("d\n"), 6); err == nil || !strings.Contains(err.Error(), "bad setting") {
		t.Errorf("write completing a bad line: %v", err)
	}
	if _, err := fd.WriteAt(e.ctx, []byte("c 3\n"), 8); err == nil {
		t.Error("write after a refusal accepted")
	}
	if err := fd.Clunk(e.ctx); err == nil {
		t.Error("clunk after a refusal: no error")
	}
	mu.Lock()
	if content != "a 1\n" {
		t.Errorf("content %q after a refused fid, want it unchanged", content)
	}
	mu.Unlock()
	if err := e.write(r, "config", styx.OWRITE, "a 2\nb 3\n"); err != nil {
		t.Fatalf("good write: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if content != "a 2\nb 3\n" {
		t.Errorf("content %q, want the good text", content)
	}
}
