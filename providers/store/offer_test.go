package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"cheshire/plan9"
	"cheshire/styx"
)

// strangers makes the nodes of c know no one: DIR/users of each is
// empty, so each is untrusted at the others.
func strangers(c *cluster) {
	for _, n := range c.nodes {
		c.writeUsers(n, []*tnode{n})
	}
}

// putFragment creates, writes, seals and clunks fragment name at dir.
func putFragment(t *testing.T, dir styx.File, name string, data []byte) error {
	t.Helper()
	d, err := styx.WalkFile(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := d.Create(t.Context(), name, 0600, styx.OWRITE)
	if err != nil {
		d.Clunk()
		return err
	}
	if f != d {
		d.Clunk()
	}
	if len(data) > 0 {
		if _, err := f.Write(t.Context(), data, 0); err != nil {
			f.Clunk()
			return err
		}
	}
	if _, err := f.Write(t.Context(), nil, int64(len(data))); err != nil {
		f.Clunk()
		return err
	}
	return f.Clunk()
}

// listDir lists the directory d.
func listDir(t *testing.T, d styx.File) []styx.Dir {
	t.Helper()
	f, err := styx.WalkFile(t.Context(), d, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Clunk()
	if _, err := f.Open(t.Context(), styx.OREAD); err != nil {
		t.Fatal(err)
	}
	rd, ok := f.(interface {
		ReadDir(ctx context.Context) ([]styx.Dir, error)
	})
	if !ok {
		t.Fatalf("%T lists no directory", f)
	}
	ds, err := rd.ReadDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func holderRoot(t *testing.T, h *Store, key string) styx.File {
	t.Helper()
	r, err := h.HolderAttach(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Clunk() })
	return r
}

// TestIsolation: at a holder that offers space, a node that is not
// trusted stores fragments under its own key; another such node neither
// lists, reads, overwrites nor removes them, except that a node with
// the file's verify cap reads them as NAME@PUB and so verifies and
// repairs the file; a node the holder does not offer to is refused.
func TestIsolation(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, shard)
	h, a, b := c.nodes[0], c.nodes[1], c.nodes[2]
	strangers(c)
	if _, err := h.s.HolderAttach(t.Context(), a.key); err != nil {
		t.Fatal(err)
	}
	if err := putFragment(t, holderRoot(t, h.s, a.key), strings.Repeat("a", 64), []byte("x")); !errors.Is(err, plan9.ErrPerm) || !strings.Contains(err.Error(), "offers no space") {
		t.Fatalf("a fragment at a node that offers nothing: %v", err)
	}
	if err := ctl(t, h.s, "ctl", "offer 1G per-key 64M"); err != nil {
		t.Fatal(err)
	}
	// A writes a file k=1 m=1: a fragment at A, one at H.
	if err := ctl(t, a.s, "ctl", "holders add "+h.key); err != nil {
		t.Fatal(err)
	}
	if err := ctl(t, a.s, "ctl", "policy k=1 m=1"); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 3*shard+100)
	if err := styx.WriteFile(t.Context(), rootOf(t, a.s), "f", data, 0600); err != nil {
		t.Fatal(err)
	}
	l, err := a.s.findList(t.Context(), a.s.files["/f"].cap)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	if l.Holders[i] != h.key {
		i = 1
	}
	if l.Holders[i] != h.key {
		t.Fatalf("no fragment at the holder: %v", l.Holders)
	}
	name := l.Frags[i].Name
	if _, err := os.Stat(filepath.Join(h.dir, "store", "fragments", a.key, name)); err != nil {
		t.Fatalf("the fragment is not under the writer's key: %v", err)
	}
	// B, another stranger, does not see it, cannot read, overwrite or
	// remove it.
	rb := holderRoot(t, h.s, b.key)
	if _, err := styx.ReadFile(t.Context(), rb, name, -1); !errors.Is(err, plan9.ErrNotFound) {
		t.Fatalf("another key reads the fragment: %v", err)
	}
	if ents := listDir(t, rb); len(ents) != 0 {
		t.Fatalf("another key lists %d files", len(ents))
	}
	if ents := listDir(t, holderRoot(t, h.s, a.key)); len(ents) != 2 { // the fragment and the list
		t.Fatalf("the writer lists %d files", len(ents))
	}
	if f, err := styx.WalkFile(t.Context(), rb, []string{name}); err == nil {
		err = f.Remove(t.Context())
		t.Fatalf("another key walks to the fragment (remove: %v)", err)
	}
	if err := a.s.holder(h.key).Remove(t.Context(), strings.Repeat("c", 64)); !errors.Is(err, plan9.ErrNotFound) {
		t.Fatalf("remove of no fragment: %v", err)
	}
	// A wrong PUB proves nothing; the file's does, for reading only.
	wrong := hex.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if _, err := styx.ReadFile(t.Context(), rb, name+"@"+wrong, -1); !errors.Is(err, plan9.ErrNotFound) {
		t.Fatalf("read with a wrong key: %v", err)
	}
	if got, err := styx.ReadFile(t.Context(), rb, l.ref(i), -1); err != nil || int64(len(got)) != int64(l.Stripes())*int64(l.Shard) {
		t.Fatalf("read with the file's key: %d bytes, %v", len(got), err)
	}
	if f, err := styx.WalkFile(t.Context(), rb, []string{l.ref(i)}); err != nil {
		t.Fatal(err)
	} else if err := f.Remove(t.Context()); err == nil {
		t.Fatal("another key removed the fragment through its file's key")
	}
	// B, with the verify cap, verifies and repairs: A's own fragment is
	// lost, and is rebuilt from the one at H.
	if err := ctl(t, b.s, "ctl", "holders add "+h.key); err != nil {
		t.Fatal(err)
	}
	if err := ctl(t, b.s, "ctl", "import-cap "+capLine(t, a.s, "f", "verify")+" v"); err != nil {
		t.Fatal(err)
	}
	if err := ctl(t, b.s, "ctl", "verify v"); err != nil {
		t.Fatalf("verify by another key: %v", err)
	}
	c.kill(a.key)
	if err := ctl(t, b.s, "ctl", "repair v"); err != nil {
		t.Fatalf("repair by another key: %v", err)
	}
	if l, err = b.s.findList(t.Context(), b.s.files["/v"].cap); err != nil {
		t.Fatal(err)
	}
	for _, k := range l.Holders {
		if k == a.key {
			t.Fatalf("after the repair a fragment is still at the lost node: %v", l.Holders)
		}
	}
	if err := ctl(t, b.s, "ctl", "verify v"); err != nil {
		t.Fatalf("verify after the repair: %v", err)
	}
	// B's fragment of the same name is B's: A's is as it was.
	l, err = a.s.findList(t.Context(), a.s.files["/f"].cap)
	if err != nil {
		t.Fatal(err)
	}
	if err := putFragment(t, rb, name, []byte("forged")); err != nil {
		t.Fatalf("another key's fragment of the same name: %v", err)
	}
	if got, err := styx.ReadFile(t.Context(), holderRoot(t, h.s, a.key), name, -1); err != nil || int64(len(got)) != int64(l.Stripes())*int64(l.Shard) {
		t.Fatalf("the writer's fragment after another key wrote one of its name: %d bytes, %v", len(got), err)
	}
	// The owner of H, and the nodes it trusts, use every key's fragments.
	if _, err := styx.ReadFile(t.Context(), rootOf(t, h.s), "fragments/"+name, -1); err != nil {
		t.Fatalf("the owner reads a stranger's fragment: %v", err)
	}
}

// TestQuota: a stranger is held to the offer's per-key quota and the
// total, counted from the disk again after a restart; past it the write
// fails with "quota exceeded" (EDQUOT); a trusted node is not counted;
// a writer routes a fragment refused part way to another holder.
func TestQuota(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 4, shard)
	h, a, b, u := c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3]
	strangers(c)
	c.writeUsers(h, []*tnode{h, u}) // H trusts U alone
	if err := ctl(t, h.s, "ctl", "offer 10000 per-key 6000"); err != nil {
		t.Fatal(err)
	}
	if st := mustRead(t, h.s, "status"); !strings.Contains(st, "offer 10000 per-key 6000 others 0\n") {
		t.Fatalf("status: %s", st)
	}
	ra, rb, ru := holderRoot(t, h.s, a.key), holderRoot(t, h.s, b.key), holderRoot(t, h.s, u.key)
	frag := func(c byte) string { return strings.Repeat(string(c), 64) }
	if err := putFragment(t, ra, frag('a'), make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	err := putFragment(t, ra, frag('b'), make([]byte, 1001))
	if err == nil || !strings.Contains(err.Error(), "store: quota exceeded for key "+short(a.key)) {
		t.Fatalf("past the per-key quota: %v", err)
	}
	if e := plan9.Errno(err.Error()); e != syscall.EDQUOT {
		t.Fatalf("%q maps to %v, want EDQUOT", err, e)
	}
	if err := putFragment(t, ra, frag('b'), make([]byte, 1000)); err != nil {
		t.Fatalf("up to the per-key quota: %v", err)
	}
	if err := putFragment(t, rb, frag('c'), make([]byte, 4001)); err == nil || !strings.Contains(err.Error(), "quota exceeded for other nodes") {
		t.Fatalf("past the total: %v", err)
	}
	if err := putFragment(t, ru, frag('d'), make([]byte, 50000)); err != nil {
		t.Fatalf("a trusted node: %v", err)
	}
	// A removes a fragment: its bytes are free again.
	if f, err := styx.WalkFile(t.Context(), ra, []string{frag('b')}); err != nil {
		t.Fatal(err)
	} else if err := f.Remove(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := "key " + a.key + " guest held 5000\n"
	if st := mustRead(t, h.s, "status"); !strings.Contains(st, want) || !strings.Contains(st, "key "+u.key+" trusted held 50000\n") {
		t.Fatalf("status wants %q:\n%s", want, st)
	}
	// After a restart the bytes held are counted from the disk, and the
	// offer is as it was.
	h.s.Close()
	s2, err := New(Options{Dir: h.dir, Owner: owner, Self: h.key, Shard: shard, RepairEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s2.Close)
	if st := mustRead(t, s2, "status"); !strings.Contains(st, want) || !strings.Contains(st, "offer 10000 per-key 6000 others 55000\n") {
		t.Fatalf("status after a restart wants %q:\n%s", want, st)
	}
	ra2 := holderRoot(t, s2, a.key)
	if err := putFragment(t, ra2, frag('e'), make([]byte, 1001)); err == nil || !strings.Contains(err.Error(), "quota exceeded") {
		t.Fatalf("past the quota after a restart: %v", err)
	}
	// The total (others hold 55000 with U's) now refuses any stranger.
	if err := putFragment(t, holderRoot(t, s2, b.key), frag('f'), make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "quota exceeded for other nodes") {
		t.Fatalf("past the total after a restart: %v", err)
	}
	if err := ctl(t, s2, "ctl", "offer off"); err != nil {
		t.Fatal(err)
	}
	if err := putFragment(t, ra2, frag('9'), nil); err == nil || !strings.Contains(err.Error(), "offers no space") {
		t.Fatalf("after offer off: %v", err)
	}
}

// TestQuotaRoutedAround: a holder whose per-key quota is smaller than a
// fragment refuses it part way; the commit rebuilds it at another
// holder, and the write has every ack.
func TestQuotaRoutedAround(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 4, shard)
	w := c.nodes[0]
	strangers(c)
	for _, n := range c.nodes[1:] {
		if err := ctl(t, n.s, "ctl", "offer 1G"); err != nil {
			t.Fatal(err)
		}
		if err := ctl(t, w.s, "ctl", "holders add "+n.key); err != nil {
			t.Fatal(err)
		}
	}
	small := c.nodes[1]
	if err := ctl(t, small.s, "ctl", "offer 1G per-key 10000"); err != nil {
		t.Fatal(err)
	}
	if err := ctl(t, w.s, "ctl", "policy k=2 m=2"); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 2*8*shard) // fragments of 8 pieces, 32 KiB
	if err := styx.WriteFile(t.Context(), rootOf(t, w.s), "f", data, 0600); err != nil {
		t.Fatalf("write: %v", err)
	}
	if h := healthOf(t, w.s, "/f"); !strings.Contains(h, "acks 4 ") || !strings.Contains(h, " healthy") {
		t.Fatalf("health: %s", h)
	}
	l, err := w.s.findList(t.Context(), w.s.files["/f"].cap)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range l.Holders {
		if k == small.key {
			t.Fatalf("the holder over quota holds a fragment: %v", l.Holders)
		}
	}
	if got := mustRead(t, w.s, "f"); got != string(data) {
		t.Fatal("read back differs")
	}
	if st := mustRead(t, small.s, "status"); strings.Contains(st, "key "+w.key) {
		t.Fatalf("the refused fragment is counted at the holder:\n%s", st)
	}
	if st := mustRead(t, w.s, "status"); !strings.Contains(st, "holder "+small.key+" down") || !strings.Contains(st, "quota exceeded") {
		t.Fatalf("the writer's status does not say why:\n%s", st)
	}
}

// TestMigration: fragments and lists of the layout before keys (every
// file in DIR/store/fragments) move under this node's key at start,
// also after a start that stopped part way; nothing is lost and the
// files read back.
func TestMigration(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, shard)
	n := c.nodes[0]
	data := randomData(t, 5*3*shard)
	if err := styx.WriteFile(t.Context(), rootOf(t, n.s), "f", data, 0600); err != nil {
		t.Fatal(err)
	}
	n.s.Close()
	frags := filepath.Join(n.dir, "store", "fragments")
	own := filepath.Join(frags, n.key)
	ents, err := os.ReadDir(own)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for i, e := range ents {
		b, err := os.ReadFile(filepath.Join(own, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		before[e.Name()] = string(b)
		// The old layout; the first file as a stop part way left it:
		// in both places.
		if i > 0 {
			if err := os.Rename(filepath.Join(own, e.Name()), filepath.Join(frags, e.Name())); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(frags, e.Name()), b, 0600); err != nil {
			t.Fatal(err)
		}
	}
	if len(before) != 6 { // 5 fragments and a list
		t.Fatalf("%d files held, want 6", len(before))
	}
	if err := os.WriteFile(filepath.Join(frags, ".tmp-0123abcd-1"), []byte("half"), 0600); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{Dir: n.dir, Owner: owner, Self: n.key, Shard: shard, RepairEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s2.Close)
	left, err := os.ReadDir(frags)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].Name() != n.key {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Fatalf("left in the flat layout: %v", names)
	}
	for name, b := range before {
		got, err := os.ReadFile(filepath.Join(own, name))
		if err != nil || string(got) != b {
			t.Fatalf("%s after the migration: %v", name, err)
		}
	}
	if got := mustRead(t, s2, "f"); got != string(data) {
		t.Fatal("read after the migration differs")
	}
	if st := mustRead(t, s2, "status"); !strings.Contains(st, "fragments 5\n") {
		t.Fatalf("status: %s", st)
	}
}

// TestOfferCtl: the offer's arguments, and the state file keeping it.
func TestOfferCtl(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, shard)
	s := c.nodes[0].s
	for _, bad := range []string{"offer", "offer 0", "offer -1", "offer 1X", "offer 1G per-key 2G", "offer 1G per key 1M", "offer 1G per-key"} {
		if err := ctl(t, s, "ctl", bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if e := plan9.Errno(err.Error()); e == syscall.EIO {
			t.Errorf("%q: %q maps to EIO", bad, err)
		}
	}
	if err := ctl(t, s, "ctl", "offer 2GiB per-key 512m"); err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(filepath.Join(c.nodes[0].dir, "store", "state"))
	if err != nil || !strings.Contains(string(st), "offer "+strconv.Itoa(2<<30)+" "+strconv.Itoa(512<<20)+"\n") {
		t.Fatalf("state: %q %v", st, err)
	}
	if err := ctl(t, s, "ctl", "holders discover on"); err == nil || plan9.Errno(err.Error()) == syscall.EIO {
		t.Fatalf("discover on without a dht: %v", err)
	}
}

// TestListCopies: a stranger that stores a copy of a file's list at the
// writer's node, of the same version with other places (they are not
// signed), does not send the writer's reads there: of one version, this
// node's and trusted nodes' copies come first.
func TestListCopies(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, shard)
	a, b := c.nodes[0], c.nodes[1]
	strangers(c)
	if err := ctl(t, a.s, "ctl", "offer 1G"); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 4*3*shard)
	if err := styx.WriteFile(t.Context(), rootOf(t, a.s), "f", data, 0600); err != nil {
		t.Fatal(err)
	}
	cp := a.s.files["/f"].cap
	name := cp.IDHex() + ".list"
	own, err := a.s.local.GetList(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseList(own)
	if err != nil {
		t.Fatal(err)
	}
	for i := range l.Holders {
		l.Holders[i] = b.key
	}
	if err := styx.WriteFile(t.Context(), holderRoot(t, a.s, b.key), name, l.Marshal(), 0600); err != nil {
		t.Fatalf("the stranger's copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "store", "fragments", b.key, name)); err != nil {
		t.Fatalf("the stranger's copy is not kept apart: %v", err)
	}
	if got, err := a.s.local.GetList(t.Context(), name); err != nil || !bytes.Equal(got, own) {
		t.Fatalf("the writer's list after a stranger's copy: %v", err)
	}
	if got := mustRead(t, a.s, "f"); got != string(data) {
		t.Fatal("read after a stranger's copy of the list differs")
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1": 1, "1b": 1, "1B": 1, "2k": 2 << 10, "2KiB": 2 << 10, "2kb": 2 << 10,
		"3M": 3 << 20, "4g": 4 << 30, "5TiB": 5 << 40, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "b", "k", "12ib", "1.5G", "-1", "1 G", "0x10", "1P", "9223372036854775807k", "ib"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
}
