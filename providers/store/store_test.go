package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth/synthtest"
)

// shard is small in tests so that files span many stripes.
const shard = 4 << 10

// TestWriteReadRepair: a file coded 3+2 over 5 nodes reads back after any
// 2 holders are gone; health says degraded; repair
// onto new nodes restores it, and it reads again with 2 other holders
// gone.
func TestWriteReadRepair(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 5, shard)
	w := c.nodes[0].s
	if err := ctl(t, w, "ctl", "policy k=3 m=2"); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 10*3*shard+1234)
	if err := styx.WriteFile(t.Context(), rootOf(t, w), "big", data, 0600); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := read(t, w, "big")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v (%d bytes of %d)", err, len(got), len(data))
	}
	h := healthOf(t, w, "/big")
	if !strings.Contains(h, "placed 5 reachable 5 acks 5 readable yes healthy") {
		t.Fatalf("health: %s", h)
	}
	// Each fragment is on its own node.
	l, err := w.findList(t.Context(), w.files["/big"].cap)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range l.Holders {
		if seen[k] {
			t.Fatalf("two fragments on %s: %v", k, l.Holders)
		}
		seen[k] = true
	}
	// The writer is one of the 5 holders, and keeps a data fragment:
	// its reads take that third from its disk.
	if l.Holders[0] != c.nodes[0].key {
		t.Fatalf("fragment 0 on %s, want the writer %s: %v", short(l.Holders[0]), short(c.nodes[0].key), l.Holders)
	}
	// Kill two holders other than the writer.
	var killed []string
	for _, k := range l.Holders {
		if k != c.nodes[0].key && len(killed) < 2 {
			c.kill(k)
			killed = append(killed, k)
		}
	}
	got, err = read(t, w, "big")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with 2 holders down: %v", err)
	}
	if h := healthOf(t, w, "/big"); !strings.Contains(h, "reachable 3 ") || !strings.Contains(h, "degraded") {
		t.Fatalf("health with 2 down: %s", h)
	}
	// Two new nodes, so that each fragment again has a node of its own.
	c.add(shard)
	c.add(shard)
	if err := ctl(t, w, "ctl", "repair"); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if h := healthOf(t, w, "/big"); !strings.Contains(h, "reachable 5 ") || !strings.Contains(h, "healthy") {
		t.Fatalf("health after repair: %s", h)
	}
	// Two more holders gone, the writer among them: a read cap on
	// another node still reads.
	l, _ = w.findList(t.Context(), w.files["/big"].cap)
	readCap := capLine(t, w, "big", "read")
	var other *tnode
	for _, k := range l.Holders {
		if k != c.nodes[0].key && c.node(k) != nil && !c.down[k] {
			other = c.node(k)
			break
		}
	}
	c.kill(c.nodes[0].key)
	for _, k := range l.Holders {
		if k != c.nodes[0].key && k != other.key {
			c.kill(k)
			break
		}
	}
	if err := ctl(t, other.s, "ctl", "import-cap "+readCap+" copy"); err != nil {
		t.Fatalf("import-cap: %v", err)
	}
	got, err = read(t, other.s, "copy")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read on another node after 2 more down: %v", err)
	}
}

// TestCorruptHolder: a holder that flips a byte of its fragment is routed
// around, and named by health and verify.
func TestCorruptHolder(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 5, shard)
	w := c.nodes[0].s
	data := randomData(t, 5*3*shard)
	if err := styx.WriteFile(t.Context(), rootOf(t, w), "f", data, 0600); err != nil {
		t.Fatal(err)
	}
	l, err := w.findList(t.Context(), w.files["/f"].cap)
	if err != nil {
		t.Fatal(err)
	}
	// Fragment 1 (data) at a node other than the writer: flip a byte.
	i := 1
	if l.Holders[i] == c.nodes[0].key {
		i = 2
	}
	bad := c.node(l.Holders[i])
	fp := filepath.Join(bad.dir, "store", "fragments", c.nodes[0].key, l.Frags[i].Name)
	b, err := os.ReadFile(fp)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(fp, b, 0600); err != nil {
		t.Fatal(err)
	}
	got, err := read(t, w, "f")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read past a corrupt fragment: %v", err)
	}
	if h := healthOf(t, w, "/f"); !strings.Contains(h, "bad "+bad.key) || strings.Contains(h, "healthy") {
		t.Fatalf("health does not name the bad holder: %s", h)
	}
	err = ctl(t, w, "ctl", "verify f")
	if err == nil || !strings.Contains(err.Error(), short(bad.key)) {
		t.Fatalf("verify: %v, want it to name %s", err, short(bad.key))
	}
	if err := ctl(t, w, "ctl", "repair f"); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if h := healthOf(t, w, "/f"); !strings.Contains(h, "healthy") {
		t.Fatalf("after repair: %s", h)
	}
	if err := ctl(t, w, "ctl", "verify f"); err != nil {
		t.Fatalf("verify after repair: %v", err)
	}
}

// TestCaps: a read cap reads on another node but cannot write; a verify
// cap can neither, yet verifies; a cap with one character changed is
// refused.
func TestCaps(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, shard)
	w, r := c.nodes[0].s, c.nodes[2].s
	if err := ctl(t, w, "ctl", "policy k=2 m=1"); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 3*shard+7)
	if err := styx.WriteFile(t.Context(), rootOf(t, w), "x", data, 0600); err != nil {
		t.Fatal(err)
	}
	caps := mustRead(t, w, "x.caps")
	if !strings.HasPrefix(caps, "write w1.") || !strings.Contains(caps, "\nread r1.") || !strings.Contains(caps, "\nverify v1.") {
		t.Fatalf("caps:\n%s", caps)
	}
	rc, vc := capLine(t, w, "x", "read"), capLine(t, w, "x", "verify")
	if err := ctl(t, r, "ctl", "import-cap "+rc+" x"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, r, "x"); got != string(data) {
		t.Fatal("read cap reads other bytes")
	}
	if err := styx.WriteFile(t.Context(), rootOf(t, r), "x", []byte("new"), 0600); !errors.Is(err, plan9.ErrPerm) {
		t.Fatalf("write with a read cap: %v, want permission denied", err)
	}
	if caps := mustRead(t, r, "x.caps"); strings.Contains(caps, "write") {
		t.Fatalf("read cap's caps file shows a write cap:\n%s", caps)
	}
	if err := ctl(t, r, "ctl", "import-cap "+vc+" v"); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, r, "v"); !errors.Is(err, plan9.ErrPerm) {
		t.Fatalf("read with a verify cap: %v, want permission denied", err)
	}
	if err := ctl(t, r, "ctl", "verify v"); err != nil {
		t.Fatalf("verify with a verify cap: %v", err)
	}
	// Repair with the verify cap alone, on the node that has only it.
	l, err := w.findList(t.Context(), w.files["/x"].cap)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range l.Holders {
		if k != c.nodes[0].key && k != c.nodes[2].key {
			c.kill(k)
		}
	}
	c.add(shard)
	if err := ctl(t, r, "ctl", "repair v"); err != nil {
		t.Fatalf("repair with a verify cap: %v", err)
	}
	if h := healthOf(t, w, "/x"); !strings.Contains(h, "reachable 3 ") || !strings.Contains(h, " healthy") {
		t.Fatalf("after a repair by verify cap, the writer's health: %s", h)
	}
	// One character changed.
	bad := []byte(rc)
	bad[10] ^= 1
	if err := ctl(t, r, "ctl", "import-cap "+string(bad)+" y"); err == nil || !strings.Contains(err.Error(), "bad cap") {
		t.Fatalf("import of a changed cap: %v", err)
	}
	// The original is unchanged by the attempt, and rewriting works.
	if err := styx.WriteFile(t.Context(), rootOf(t, w), "x", []byte("second version"), 0600); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, r, "x"); got != string(data) && got != "second version" {
		t.Fatalf("reader sees %q", got)
	}
	if got := mustRead(t, w, "x"); got != "second version" {
		t.Fatalf("rewrite: %q", got)
	}
}

// TestDirsRemovePersist: directories, policies inherited, remove, and the
// tree surviving a restart.
func TestDirsRemovePersist(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, shard)
	nd := c.nodes[0]
	w := nd.s
	root := rootOf(t, w)
	ctx := t.Context()
	d, err := styx.WalkFile(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Create(ctx, "backups", styx.DMDIR|0700, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	d.Clunk()
	if err := ctl(t, w, "ctl", "policy k=2 m=1"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, w, "backups/ctl"); got != "policy k=2 m=1 happy=3\n" {
		t.Fatalf("inherited policy: %q", got)
	}
	if err := styx.WriteFile(ctx, root, "backups/a", []byte("hello"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := styx.WriteFile(ctx, root, "ctl", []byte("x"), 0600); err == nil {
		t.Fatal("ctl accepted junk")
	}
	if _, _, err := root.Create(ctx, "health", 0600, styx.OWRITE); err == nil {
		t.Fatal("created a reserved name")
	}
	// Restart: the tree comes back from DIR/store/state.
	s2, err := New(Options{Dir: nd.dir, Owner: owner, Self: nd.key, Shard: shard, RepairEvery: -1, Dial: w.opts.Dial})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := mustRead(t, s2, "backups/a"); got != "hello" {
		t.Fatalf("after restart: %q", got)
	}
	f, err := styx.WalkFile(ctx, rootOf(t, s2), []string{"backups", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(ctx); st.Length != 5 {
		t.Fatalf("stat length %d", st.Length)
	}
	if err := f.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, s2, "backups/a"); err == nil {
		t.Fatal("removed file still reads")
	}
}

// TestFragmentsAuthorised: /store/fragments refuses users that are not
// other nodes.
func TestFragmentsAuthorised(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, shard)
	s := c.nodes[0].s
	r, err := s.Attach(t.Context(), "mallory", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Clunk()
	if _, err := styx.ReadFile(t.Context(), r, "fragments/"+strings.Repeat("a", 64), -1); !errors.Is(err, plan9.ErrPerm) {
		t.Fatalf("stranger reads a fragment: %v", err)
	}
	d, err := styx.WalkFile(t.Context(), r, []string{"fragments"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Clunk()
	if _, _, err := d.Create(t.Context(), strings.Repeat("b", 64), 0600, styx.OWRITE); err == nil {
		t.Fatal("stranger creates a fragment")
	}
}

// TestSingleNode: with no other holder every fragment stays here.
func TestSingleNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, shard)
	s := c.nodes[0].s
	data := randomData(t, 100000)
	if err := styx.WriteFile(t.Context(), rootOf(t, s), "one", data, 0600); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, "one"); got != string(data) {
		t.Fatal("read back differs")
	}
	if err := styx.WriteFile(t.Context(), rootOf(t, s), "empty", nil, 0600); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, "empty"); got != "" {
		t.Fatalf("empty file reads %q", got)
	}
	if st := mustRead(t, s, "status"); !strings.Contains(st, "\nstored 166666\n") || !strings.Contains(st, "fragments 10\n") {
		t.Fatalf("status:\n%s", st)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, shard)
	s := c.nodes[0].s
	if err := styx.WriteFile(t.Context(), rootOf(t, s), "one", []byte("x"), 0600); err != nil {
		t.Fatal(err)
	}
	synthtest.TestServer(t, s, owner)
}

// TestReopenForWrite: an open for writing clunked without a write leaves
// the file as it was (FUSE opens again after each close); with OTRUNC it
// empties it; writes may arrive out of order.
func TestReopenForWrite(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, shard)
	s := c.nodes[0].s
	ctx := t.Context()
	root := rootOf(t, s)
	data := randomData(t, 7*shard+3)
	if err := styx.WriteFile(ctx, root, "f", data, 0600); err != nil {
		t.Fatal(err)
	}
	f, err := styx.WalkFile(ctx, root, []string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Open(ctx, styx.OWRITE); err != nil {
		t.Fatal(err)
	}
	if err := f.Clunk(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, "f"); got != string(data) {
		t.Fatal("an open for writing without a write changed the file")
	}
	// Out of order: the second half first.
	f, _ = styx.WalkFile(ctx, root, []string{"f"})
	if _, err := f.Open(ctx, styx.OWRITE|styx.OTRUNC); err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	done := make(chan error, 1)
	go func() { _, err := f.Write(ctx, data[half:], int64(half)); done <- err }()
	if _, err := f.Write(ctx, data[:half], 0); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := f.Clunk(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, "f"); got != string(data) {
		t.Fatal("out-of-order writes")
	}
	// A failed write discards the version: the clunk fails, the file is
	// as it was.
	f, _ = styx.WalkFile(ctx, root, []string{"f"})
	if _, err := f.Open(ctx, styx.OWRITE|styx.OTRUNC); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(ctx, []byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(ctx, []byte("x"), 64<<20); err == nil {
		t.Fatal("a write 64 MiB ahead was taken")
	}
	if err := f.Clunk(); err == nil {
		t.Fatal("the clunk after a failed write committed")
	}
	if got := mustRead(t, s, "f"); got != string(data) {
		t.Fatal("a failed write changed the file")
	}
	f, _ = styx.WalkFile(ctx, root, []string{"f"})
	if _, err := f.Open(ctx, styx.OWRITE|styx.OTRUNC); err != nil {
		t.Fatal(err)
	}
	if err := f.Clunk(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, "f"); got != "" {
		t.Fatalf("after OTRUNC: %d bytes", len(got))
	}
}

// TestBackgroundRepair: with the repairer on, a file that lost a holder
// is rebuilt on a new node without a repair command.
func TestBackgroundRepair(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, shard)
	w := c.nodes[0].s
	if err := ctl(t, w, "ctl", "policy k=2 m=1"); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 4*2*shard)
	if err := styx.WriteFile(t.Context(), rootOf(t, w), "f", data, 0600); err != nil {
		t.Fatal(err)
	}
	l, err := w.findList(t.Context(), w.files["/f"].cap)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range l.Holders {
		if k != c.nodes[0].key {
			c.kill(k)
			break
		}
	}
	c.add(shard)
	w.opts.RepairEvery = time.Millisecond
	w.Start()
	testutil.WaitFor(t, "the repairer to restore /f", func() bool {
		return strings.Contains(healthOf(t, w, "/f"), " healthy")
	})
	if got := mustRead(t, w, "f"); got != string(data) {
		t.Fatal("after background repair the file differs")
	}
}

// TestStalledHolder: a holder that stops answering reads is gone around
// (after a second for the first stripes, then not asked first again).
func TestStalledHolder(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 5, shard)
	w := c.nodes[0].s
	data := randomData(t, 20*3*shard)
	if err := styx.WriteFile(t.Context(), rootOf(t, w), "f", data, 0600); err != nil {
		t.Fatal(err)
	}
	l, err := w.findList(t.Context(), w.files["/f"].cap)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	if l.Holders[i] == c.nodes[0].key {
		i = 1
	}
	release := make(chan struct{})
	c.mu.Lock()
	c.stall[l.Holders[i]] = release
	c.mu.Unlock()
	defer close(release)
	if got := mustRead(t, w, "f"); got != string(data) {
		t.Fatal("read around a stalled holder differs")
	}
}

// TestRefusingAndFullHolders: a holder that refuses (this node is not its
// user) is passed over at placement; a holder whose disk is full loses
// its fragment, which the commit rebuilds at another holder; with fewer
// than k fragments left the write fails, with the reason.
func TestRefusingAndFullHolders(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 5, shard)
	w := c.nodes[0]
	// Node 4 no longer knows node 0.
	refuser := c.nodes[4]
	c.writeUsers(refuser, []*tnode{refuser, c.nodes[1], c.nodes[2], c.nodes[3]})
	data := randomData(t, 3*3*shard)
	if err := styx.WriteFile(t.Context(), rootOf(t, w.s), "a", data, 0600); err != nil {
		t.Fatalf("write with a refusing holder: %v", err)
	}
	if h := healthOf(t, w.s, "/a"); !strings.Contains(h, "acks 5 ") || !strings.Contains(h, "holders 4") {
		t.Fatalf("health: %s", h)
	}
	if got := mustRead(t, w.s, "a"); got != string(data) {
		t.Fatal("read back differs")
	}
	// A full disk at a holder of the next file.
	l, err := w.s.findList(t.Context(), w.s.files["/a"].cap)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, k := range l.Holders {
		count[k]++
	}
	for _, k := range l.Holders {
		if k != w.key && count[k] == 1 { // a holder of one fragment
			c.mu.Lock()
			c.full[k] = true
			c.mu.Unlock()
			break
		}
	}
	full := ""
	for k := range c.full {
		full = k
	}
	data2 := randomData(t, 3*3*shard)
	if err := styx.WriteFile(t.Context(), rootOf(t, w.s), "a", data2, 0600); err != nil {
		t.Fatalf("write with a full holder, happy=5: %v", err)
	}
	if h := healthOf(t, w.s, "/a"); !strings.Contains(h, "acks 5 ") || !strings.Contains(h, " healthy") {
		t.Fatalf("health: %s", h)
	}
	if l, err = w.s.findList(t.Context(), w.s.files["/a"].cap); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(l.Holders, full) {
		t.Fatalf("the full holder %s holds a fragment: %v", full, l.Holders)
	}
	if got := mustRead(t, w.s, "a"); got != string(data2) {
		t.Fatal("read back differs")
	}
	// Every other node full: fewer than k fragments are left, and the
	// write fails with the reason; the file is as it was.
	c.mu.Lock()
	for _, n := range c.nodes[1:4] {
		c.full[n.key] = true
	}
	c.mu.Unlock()
	err = styx.WriteFile(t.Context(), rootOf(t, w.s), "a", randomData(t, 3*3*shard), 0600)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("write with every other holder full: %v", err)
	}
	if got := mustRead(t, w.s, "a"); got != string(data2) {
		t.Fatal("a failed write changed the file")
	}
}

// TestContracts: a holder whose storage contracts with the writer have
// all ended gets no new fragment, though it is a user; while its
// contract is active it does.
func TestContracts(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 6, shard)
	w := c.nodes[0].s
	gone := c.nodes[5].key
	var mu sync.Mutex
	ended := map[string]bool{gone: true}
	w.opts.Contracts = func() (map[string]bool, map[string]bool) {
		mu.Lock()
		defer mu.Unlock()
		return map[string]bool{}, maps.Clone(ended)
	}
	if err := ctl(t, w, "ctl", "policy k=3 m=2"); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		name := fmt.Sprintf("f%d", i)
		if err := styx.WriteFile(t.Context(), rootOf(t, w), name, randomData(t, 3*shard), 0600); err != nil {
			t.Fatal(err)
		}
		l, err := w.findList(t.Context(), w.files["/"+name].cap)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(l.Holders, gone) {
			t.Fatalf("a fragment of %s went to %s, whose contract ended: %v", name, gone, l.Holders)
		}
	}
	mu.Lock()
	delete(ended, gone)
	mu.Unlock()
	placed := false
	for i := range 8 { // with 6 candidates for 5 fragments, the file id decides
		name := fmt.Sprintf("g%d", i)
		if err := styx.WriteFile(t.Context(), rootOf(t, w), name, randomData(t, 3*shard), 0600); err != nil {
			t.Fatal(err)
		}
		l, _ := w.findList(t.Context(), w.files["/"+name].cap)
		placed = placed || slices.Contains(l.Holders, gone)
	}
	if !placed {
		t.Fatalf("no fragment of 8 files went to %s once it was a candidate again", gone)
	}
}

// TestReadsInFlight: reads in flight together that end out of order, as
// the kernel's read-ahead and a client's ReadAt send them, get the right
// bytes and fetch each stripe once (each stripe was fetched twice, and
// more with reads in flight together, when the stripes kept were counted
// from the one asked for).
func TestReadsInFlight(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 5, shard)
	w := c.nodes[0].s
	if err := ctl(t, w, "ctl", "policy k=3 m=2"); err != nil {
		t.Fatal(err)
	}
	const stripes = 40
	data := randomData(t, stripes*3*shard-100)
	if err := styx.WriteFile(t.Context(), rootOf(t, w), "big", data, 0600); err != nil {
		t.Fatalf("write: %v", err)
	}
	f, err := styx.WalkFile(t.Context(), rootOf(t, w), []string{"big"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Clunk()
	if _, err := f.Open(t.Context(), styx.OREAD); err != nil {
		t.Fatal(err)
	}
	c.reads.Store(0)
	const chunk = 5000 // not a piece, not a stripe
	got := make([]byte, len(data))
	errs := make(chan error, len(data)/chunk+1)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for off := 0; off < len(data); off += chunk {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			p := got[off:min(off+chunk, len(data))]
			if n, err := f.Read(t.Context(), p, int64(off)); err != nil || n != len(p) {
				errs <- fmt.Errorf("read at %d: %d bytes of %d: %v", off, n, len(p), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	// One Read a piece (4 KiB, under the iounit); a stripe's fetch asks
	// each of its 5 fragments at most once, its holder being slow or not.
	n := c.reads.Load()
	t.Logf("%d piece reads at the holders for %d stripes", n, stripes)
	if n > stripes*5 {
		t.Fatalf("%d piece reads at the holders for %d stripes: stripes fetched more than once", n, stripes)
	}
}

// TestUnalignedIO: content written in pieces of odd sizes (encrypted as
// it comes, a key stream a stripe) reads back whole, and reads at odd
// offsets and lengths, across piece and stripe boundaries, return the
// bytes there (decrypted as they are copied out).
func TestUnalignedIO(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, shard)
	w := c.nodes[0].s
	if err := ctl(t, w, "ctl", "policy k=2 m=1"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	stripe := 2 * shard
	data := randomData(t, 3*stripe+777)
	root := rootOf(t, w)
	d, err := styx.WalkFile(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := d.Create(ctx, "odd", 0600, styx.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{1, 15, 17, 3, shard - 5, 4096 + 9, 33, stripe + 1}
	for off, i := 0, 0; off < len(data); i++ {
		n := min(sizes[i%len(sizes)], len(data)-off)
		if got, err := f.Write(ctx, data[off:off+n], int64(off)); err != nil || got != n {
			t.Fatalf("write of %d at %d: %d, %v", n, off, got, err)
		}
		off += n
	}
	if err := f.Clunk(); err != nil {
		t.Fatalf("clunk: %v", err)
	}
	got, err := read(t, w, "odd")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v (%d bytes of %d)", err, len(got), len(data))
	}
	r, err := styx.WalkFile(ctx, root, []string{"odd"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Clunk()
	if _, err := r.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	for _, at := range [][2]int{{1, 1}, {7, 30}, {15, 2}, {shard - 3, 9}, {stripe - 1, 2}, {stripe + 13, shard + 5}, {3*stripe + 700, 200}, {len(data) - 1, 10}} {
		off, n := at[0], at[1]
		p := make([]byte, n)
		k, err := r.Read(ctx, p, int64(off))
		want := data[off:min(off+n, len(data))]
		if err != nil || !bytes.Equal(p[:k], want) {
			t.Errorf("read of %d at %d: %d bytes, %v; want %d bytes as written", n, off, k, err, len(want))
		}
	}
}
