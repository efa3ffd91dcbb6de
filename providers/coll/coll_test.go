package coll

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/styx"
	"cheshire/synth/synthtest"
)

// bus joins Colls in process as msg would: every replica listens to
// every other; drop loses that share of the delta messages.
type bus struct {
	mu       sync.Mutex
	byKey    map[string]*Coll
	handlers map[string]map[string]func(from, text string) // key → topic → handler
	drop     float64
}

func (b *bus) add(t *testing.T, dir string, key ed25519.PrivateKey) *Coll {
	t.Helper()
	self := nodekey.Encode(key.Public().(ed25519.PublicKey))
	c, err := New(Options{Dir: dir, Key: key, Owner: "glenda", SyncEvery: 20 * time.Millisecond,
		Send: func(ctx context.Context, topic, to, text string) error {
			b.mu.Lock()
			var targets []func(from, text string)
			for k, hs := range b.handlers {
				if k != self && (to == "*" || to == k) && hs[topic] != nil {
					targets = append(targets, hs[topic])
				}
			}
			drop := b.drop
			b.mu.Unlock()
			for _, h := range targets {
				if strings.HasPrefix(text, "delta ") && rand.Float64() < drop {
					continue
				}
				h(self, text)
			}
			return nil
		},
		Listen: func(topic string, fn func(from, text string)) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.handlers[self] == nil {
				b.handlers[self] = map[string]func(from, text string){}
			}
			b.handlers[self][topic] = fn
			return nil
		},
		Fetch: func(ctx context.Context, key, name string) ([]byte, error) {
			b.mu.Lock()
			o := b.byKey[key]
			b.mu.Unlock()
			if o == nil {
				return nil, fmt.Errorf("no node %s", key)
			}
			return o.deltasText(name), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	if b.byKey == nil {
		b.byKey = map[string]*Coll{}
		b.handlers = map[string]map[string]func(from, text string){}
	}
	b.byKey[self] = c
	b.mu.Unlock()
	return c
}

func (b *bus) remove(c *Coll) {
	b.mu.Lock()
	delete(b.byKey, c.self)
	delete(b.handlers, c.self)
	b.mu.Unlock()
	c.Close()
}

func newPriv(t testing.TB) ed25519.PrivateKey {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func read(t *testing.T, c *Coll, path string) string {
	t.Helper()
	root, err := c.Attach(t.Context(), "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Clunk()
	b, err := styx.ReadFile(t.Context(), root, path, -1)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func write(c *Coll, path, data string) error {
	ctx := context.Background()
	root, err := c.Attach(ctx, "glenda", "", nil)
	if err != nil {
		return err
	}
	defer root.Clunk()
	return testutil.WriteFile(ctx, root, path, data)
}

// mkdir makes the entity directory path.
func mkdir(t *testing.T, c *Coll, path string) {
	t.Helper()
	root, _ := c.Attach(t.Context(), "glenda", "", nil)
	defer root.Clunk()
	names := styx.SplitPath(path)
	d, err := styx.WalkFile(t.Context(), root, names[:len(names)-1])
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := d.Create(t.Context(), names[len(names)-1], styx.DMDIR|0755, styx.OREAD)
	if err != nil {
		d.Clunk()
		t.Fatalf("mkdir %s: %v", path, err)
	}
	f.Clunk()
}

func TestCollFiles(t *testing.T) {
	t.Parallel()
	var b bus
	c := b.add(t, t.TempDir(), newPriv(t))
	defer c.Close()
	if err := write(c, "/ctl", "create people name:string age:int:max tags:list score:float:sum"); err != nil {
		t.Fatal(err)
	}
	if err := write(c, "/people/entities/ann/name", "Ann"); err == nil {
		t.Error("a property of an entity never made was written")
	}
	mkdir(t, c, "/people/entities/ann")
	for _, w := range []struct{ path, val string }{
		{"/people/entities/ann/name", "Ann Smith\n"},
		{"/people/entities/ann/age", "30"},
		{"/people/entities/ann/age", "29"},
		{"/people/entities/ann/tags", "b"},
		{"/people/entities/ann/tags", "a"},
		{"/people/entities/ann/tags", "b"},
		{"/people/entities/ann/score", "1.5"},
		{"/people/entities/ann/score", "2"},
		{"/people/entities/ann/name", "Ann"},
	} {
		if err := write(c, w.path, w.val); err != nil {
			t.Fatalf("write %s: %v", w.path, err)
		}
	}
	for path, want := range map[string]string{
		"/people/entities/ann/name":  "Ann\n",
		"/people/entities/ann/age":   "30\n",
		"/people/entities/ann/tags":  "a\nb\n",
		"/people/entities/ann/score": "3.5\n",
		"/people/schema":             "name string last-writer-wins\nage int max\ntags list union\nscore float sum\n",
	} {
		if got := read(t, c, path); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if h := read(t, c, "/people/history/ann/name"); strings.Count(h, "\n") != 2 || !strings.Contains(h, "'Ann Smith'") || !strings.Contains(h, c.self) {
		t.Errorf("history of name:\n%s", h)
	}
	if got := read(t, c, "/people/deltas"); strings.Count(got, "\n") != 9 {
		t.Errorf("deltas:\n%s", got)
	}
	// Bad input.
	for _, w := range []struct{ path, val, want string }{
		{"/people/entities/ann/age", "old", "not an int"},
		{"/people/entities/ann/score", "NaN", "not a finite float"},
		{"/people/entities/ann/name", strings.Repeat("x", MaxValue+1), "too long"},
		{"/people/entities/ann/name", "a\x01b", "control character"},
		{"/ctl", "create people x:int", "already exists"},
		{"/ctl", "create other x:blob", "bad type"},
		{"/ctl", "create other x:string:sum", "sum wants"},
		{"/ctl", "resolver people age median", "bad resolver"},
		{"/ctl", "schema people age:string", "may not change"},
	} {
		if err := write(c, w.path, w.val); err == nil || !strings.Contains(err.Error(), w.want) {
			t.Errorf("write %q to %s: %v, want %q", w.val, w.path, err, w.want)
		}
	}
	// Adding a field, and changing a field without data, are allowed.
	if err := write(c, "/ctl", "schema people email:string age:int:min"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c, "/people/entities/ann/age"); got != "29\n" {
		t.Errorf("age after resolver min: %q", got)
	}
	// Remove: a tombstone; a later write brings the entity back.
	root, _ := c.Attach(t.Context(), "glenda", "", nil)
	f, err := styx.WalkFile(t.Context(), root, []string{"people", "entities", "ann"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(t.Context()); err != nil {
		t.Fatalf("remove: %v", err)
	}
	defer root.Clunk()
	if _, err := styx.ReadFile(t.Context(), root, "/people/entities/ann/name", -1); err == nil {
		t.Error("a deleted entity's property was read")
	}
	if e, _ := c.Entity("people", "ann"); len(e) != 0 {
		t.Errorf("entity after delete: %v", e)
	}
	if err := write(c, "/people/entities/ann/age", "40"); err == nil {
		t.Error("a deleted entity was written before it was made again")
	}
	mkdir(t, c, "/people/entities/ann")
	write(c, "/people/entities/ann/age", "40")
	if e, _ := c.Entity("people", "ann"); len(e) != 1 || e["age"] != "40" {
		t.Errorf("entity after delete and write: %v", e)
	}
}

// TestCollForged: a delta with a forged signature, one from the future
// and one of a wrong type are refused and counted; the view is unchanged.
func TestCollForged(t *testing.T) {
	t.Parallel()
	var b bus
	c := b.add(t, t.TempDir(), newPriv(t))
	defer c.Close()
	c.Create("c", []string{"n:int"})
	c.Put(t.Context(), "c", "e", "n", "1")
	other := newPriv(t)
	mk := func(val string, at time.Time, signer ed25519.PrivateKey) string {
		d := &Delta{Coll: "c", Entity: "e", Prop: "n", Value: val, Author: nodekey.Encode(other.Public().(ed25519.PublicKey)), Time: at.UnixNano()}
		d.Sign(signer)
		return d.String()
	}
	now := time.Now()
	cases := []struct{ line, want string }{
		{mk("666", now.Add(time.Hour), other), "future"},
		{mk("667", now, newPriv(t)), "signature does not verify"},
		{mk("x", now, other), "not an int"},
		{"delta c e n 1 nokey 1 AAAA", "bad"},
		{"delta c e", "bad delta"},
	}
	for _, cs := range cases {
		if err := write(c, "/c/deltas", cs.line+"\n"); err == nil || !strings.Contains(err.Error(), cs.want) {
			t.Errorf("%q: %v, want %q", cs.line, err, cs.want)
		}
	}
	st, _ := c.StatsOf("c")
	if st.BadSig != 1 || st.Future != 1 || st.BadValue != 3 || st.Accepted != 1 {
		t.Errorf("stats %+v", st)
	}
	if got := read(t, c, "/c/entities/e/n"); got != "1\n" {
		t.Errorf("view %q", got)
	}
	synthtest.TestServer(t, c, "glenda")
	// A good delta of another author is merged.
	if err := write(c, "/c/deltas", mk("5", now.Add(time.Second), other)); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c, "/c/entities/e/n"); got != "5\n" {
		t.Errorf("view after a good delta %q", got)
	}
}

// TestCollConverge: three replicas write one property at once, with
// half of the delta messages lost; the exchange of sums brings them to
// one set and one value, with every resolver.
func TestCollConverge(t *testing.T) {
	t.Parallel()
	b := bus{drop: 0.5}
	const writes = 10
	var cs []*Coll
	for range 3 {
		c := b.add(t, t.TempDir(), newPriv(t))
		defer c.Close()
		if err := c.Create("c", []string{"lww:int", "fww:int:first-writer-wins", "hi:int:max", "lo:int:min", "tot:int:sum", "set:list"}); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range writes {
				v := fmt.Sprint(i*100 + j)
				for _, p := range []string{"lww", "fww", "hi", "lo", "tot", "set"} {
					if err := c.Put(context.Background(), "c", "e", p, v); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	testutil.WaitFor(t, "the replicas to hold one set", func() bool {
		n0, s0, _ := cs[0].Sum("c")
		for _, c := range cs[1:] {
			if n, s, _ := c.Sum("c"); n != n0 || s != s0 {
				return false
			}
		}
		return n0 == 3*writes*6
	})
	e0, _ := cs[0].Entity("c", "e")
	for _, c := range cs[1:] {
		e, _ := c.Entity("c", "e")
		if fmt.Sprint(e) != fmt.Sprint(e0) {
			t.Errorf("replicas differ: %v and %v", e0, e)
		}
	}
	sum := 0
	for i := range 3 {
		for j := range writes {
			sum += i*100 + j
		}
	}
	if e0["hi"] != fmt.Sprint(200+writes-1) || e0["lo"] != "0" || e0["tot"] != fmt.Sprint(sum) || strings.Count(e0["set"], "\n") != 3*writes-1 {
		t.Errorf("resolved %v", e0)
	}
}

// TestCollRestart: what was acknowledged is there after a reopen; a
// last line cut short is dropped; a replica that was away catches up.
func TestCollRestart(t *testing.T) {
	t.Parallel()
	var b bus
	dirA, dirB := t.TempDir(), t.TempDir()
	keyA, keyB := newPriv(t), newPriv(t)
	a, bb := b.add(t, dirA, keyA), b.add(t, dirB, keyB)
	defer a.Close()
	for _, c := range []*Coll{a, bb} {
		c.Create("c", []string{"n:int"})
	}
	a.Put(t.Context(), "c", "e", "n", "1")
	testutil.WaitFor(t, "b to have a's delta", func() bool { n, _, _ := bb.Sum("c"); return n == 1 })
	bb.Put(t.Context(), "c", "e", "n", "2")
	b.remove(bb) // b goes away
	// A torn last line, as a crash mid-append leaves.
	f, _ := os.OpenFile(filepath.Join(dirB, "c", "deltas"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("delta c e n 3 ")
	f.Close()
	a.Put(t.Context(), "c", "e", "n", "4")
	a.Put(t.Context(), "c", "f", "n", "5")
	bb = b.add(t, dirB, keyB)
	defer bb.Close()
	if got := read(t, bb, "/c/history/e/n"); strings.Count(got, "\n") < 2 {
		t.Errorf("b after restart:\n%s", got)
	}
	testutil.WaitFor(t, "b to catch up", func() bool {
		n, s, _ := bb.Sum("c")
		na, sa, _ := a.Sum("c")
		return n == 4 && n == na && s == sa
	})
	if data, _ := os.ReadFile(filepath.Join(dirB, "c", "deltas")); strings.Count(string(data), "\n") != 4 || !strings.HasSuffix(string(data), "\n") {
		t.Errorf("b's file:\n%s", data)
	}
}

func FuzzParseDelta(f *testing.F) {
	priv := newPriv(f)
	d := &Delta{Coll: "c", Entity: "e", Prop: "n", Value: "it's 1", Author: nodekey.Encode(priv.Public().(ed25519.PublicKey)), Time: 1}
	d.Sign(priv)
	f.Add(d.String())
	f.Add("delta c e * '' x 1 y")
	f.Add("delta")
	f.Fuzz(func(t *testing.T, line string) {
		d, err := ParseDelta(line)
		if err != nil {
			return
		}
		d2, err := ParseDelta(d.String())
		if err != nil || d2.String() != d.String() || d2.Hash() != d.Hash() {
			t.Errorf("%q: does not round-trip: %v", line, err)
		}
		d.Verify()
	})
}

// TestCollOrderFree: two replicas take the same deltas (three authors,
// clashing times, tombstones) in different orders, some twice; their
// sets, sums and every view are the same.
func TestCollOrderFree(t *testing.T) {
	t.Parallel()
	authors := []ed25519.PrivateKey{newPriv(t), newPriv(t), newPriv(t)}
	fields := []string{"s:string", "i:int:max", "f:float:sum", "b:bool:first-writer-wins", "l:list", "m:int:min"}
	var lines []string
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		k := authors[r.IntN(3)]
		d := &Delta{Coll: "c", Entity: fmt.Sprint("e", r.IntN(4)), Author: nodekey.Encode(k.Public().(ed25519.PublicKey)),
			Time: int64(1e18 + r.IntN(50))} // many equal times
		switch r.IntN(7) {
		case 0:
			d.Prop, d.Value = "s", fmt.Sprint("v", r.IntN(10))
		case 1:
			d.Prop, d.Value = "i", fmt.Sprint(r.IntN(100)-50)
		case 2:
			d.Prop, d.Value = "f", fmt.Sprint(float64(r.IntN(1000))/7)
		case 3:
			d.Prop, d.Value = "b", fmt.Sprint(r.IntN(2) == 0)
		case 4:
			d.Prop, d.Value = "l", fmt.Sprint("x", r.IntN(5))
		case 5:
			d.Prop, d.Value = "m", fmt.Sprint(r.IntN(100))
		case 6:
			d.Prop = Tombstone
		}
		d.Sign(k)
		lines = append(lines, d.String())
	}
	var b bus
	var views []string
	for i := range 2 {
		c := b.add(t, t.TempDir(), newPriv(t))
		defer c.Close()
		if err := c.Create("c", fields); err != nil {
			t.Fatal(err)
		}
		order := slices.Clone(lines)
		if i == 1 {
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			order = append(order, order[:50]...) // duplicates
		}
		for j := 0; j < len(order); j += 37 {
			if _, err := c.Merge("c", strings.Join(order[j:min(j+37, len(order))], "\n")); err != nil {
				t.Fatal(err)
			}
		}
		var v strings.Builder
		n, sum, _ := c.Sum("c")
		fmt.Fprintln(&v, n, sum)
		for e := range 4 {
			ent, _ := c.Entity("c", fmt.Sprint("e", e))
			fmt.Fprintln(&v, ent)
		}
		views = append(views, v.String())
	}
	if views[0] != views[1] {
		t.Errorf("replicas differ:\n%s\n%s", views[0], views[1])
	}
	if strings.Count(views[0], ":") < 8 {
		t.Errorf("too few values to compare:\n%s", views[0])
	}
}

// BenchmarkCollPut: a write of a property, signed and fsynced.
func BenchmarkCollPut(b *testing.B) {
	c, err := New(Options{Dir: b.TempDir(), Key: newPriv(b), Owner: "glenda"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Create("c", []string{"n:int"})
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if err := c.Put(ctx, "c", "e", "n", fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}
