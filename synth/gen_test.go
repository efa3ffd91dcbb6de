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

// TestSetLookup: a walk reaches a name the directory does not list, the
// name keeps its qid from one walk to the next, a name the lookup refuses
// is not found, and reads of the directory do not list looked-up names.
func TestSetLookup(t *testing.T) {
	t.Parallel()
	d := synth.NewDir("d", 0555)
	must(t, d.Add(synth.Static("listed", 0444, nil)))
	d.SetLookup(func(_ context.Context, name string) (synth.Node, error) {
		if !strings.HasPrefix(name, "x") {
			return nil, nil
		}
		return synth.Static(name, 0444, []byte(name)), nil
	})
	root := synth.NewDir("/", 0555)
	must(t, root.Add(d))
	e := newEnv(t, synth.NewServer(root))
	r := e.attach("glenda")
	got, err := e.read(r, "d/x1")
	if err != nil || got != "x1" {
		t.Fatalf("read d/x1: %q, %v", got, err)
	}
	a, err := e.stat(r, "d/x1")
	must(t, err)
	b, err := e.stat(r, "d/x1")
	must(t, err)
	if a.Qid != b.Qid {
		t.Errorf("qid of d/x1 changed: %v then %v", a.Qid, b.Qid)
	}
	if _, err := e.stat(r, "d/y"); err == nil {
		t.Error("d/y found; the lookup refused it")
	}
	f, err := e.open(r, "d", styx.OREAD)
	must(t, err)
	defer e.clunk(f)
	ents, err := f.ReadDir(context.Background())
	must(t, err)
	if len(ents) != 1 || ents[0].Name != "listed" {
		t.Errorf("d lists %v, want only listed", ents)
	}
}
