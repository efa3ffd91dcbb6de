package synth_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// sampleTree is /a/b/f, /a/g, /top, with a 0700 /private owned by alice.
func sampleTree(t *testing.T) *synth.Server {
	t.Helper()
	root := synth.NewDir("/", 0555)
	a := synth.NewDir("a", 0555)
	b := synth.NewDir("b", 0555)
	must(t, b.Add(synth.Static("f", 0444, []byte("in b\n"))))
	must(t, a.Add(b))
	must(t, a.Add(synth.Static("g", 0444, []byte("in a\n"))))
	must(t, root.Add(a))
	must(t, root.Add(synth.Static("top", 0444, []byte("top\n"))))
	priv := synth.NewDir("private", 0700)
	priv.SetOwner("alice", "alice")
	must(t, priv.Add(synth.Static("x", 0444, []byte("secret\n"))))
	must(t, root.Add(priv))
	return synth.NewServer(root, synth.WithClock(pinned))
}

func TestWalkDotDot(t *testing.T) {
	e := newEnv(t, sampleTree(t))
	root := e.attach("glenda")
	qid := func(p string) styx.Qid {
		t.Helper()
		st, err := e.stat(root, p)
		if err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		return st.Qid
	}
	tests := []struct {
		walk []string
		want string // path of the file reached
	}{
		{[]string{".."}, "/"},
		{[]string{"..", ".."}, "/"},
		{[]string{"a", ".."}, "/"},
		{[]string{"a", "b", ".."}, "a"},
		{[]string{"a", "b", "..", "..", "..", "top"}, "top"},
		{[]string{"a", "..", "a", "b", "f"}, "a/b/f"},
	}
	for _, tt := range tests {
		qids, f, err := root.Walk(e.ctx, tt.walk...)
		if err != nil {
			t.Errorf("walk %q: %v", tt.walk, err)
			continue
		}
		if len(qids) != len(tt.walk) {
			t.Errorf("walk %q: %d qids", tt.walk, len(qids))
		}
		if got, want := f.Qid(), qid(tt.want); got.Path != want.Path {
			t.Errorf("walk %q reached %v, want %s %v", tt.walk, got, tt.want, want)
		}
		f.Clunk(e.ctx)
	}
	if _, _, err := root.Walk(e.ctx, "nope"); errText(err) != "file not found" {
		t.Errorf("walk nope: %v, want file not found", err)
	}
	if _, _, err := root.Walk(e.ctx, "top", "x"); err == nil {
		t.Errorf("walk top/x succeeded")
	}
}

func TestDirReadChunks(t *testing.T) {
	root := synth.NewDir("/", 0555)
	var want []string
	for i := range 40 {
		name := fmt.Sprintf("file%02d", i)
		want = append(want, name)
		must(t, root.Add(synth.Static(name, 0444, []byte(name))))
	}
	e := newEnv(t, synth.NewServer(root, synth.WithClock(pinned)))
	fid := e.attach("glenda")
	// Each entry is 49 fixed bytes, a 6-byte name and three 4-byte ids.
	for _, count := range []int{67, 133, 134, 300, 1 << 16} {
		f, err := e.open(fid, "", styx.OREAD)
		must(t, err)
		var names []string
		var off int64
		buf := make([]byte, count)
		for {
			n, err := f.ReadOnce(e.ctx, buf, off)
			if err != nil {
				t.Fatalf("count %d: read at %d: %v", count, off, err)
			}
			if n == 0 {
				break
			}
			ds, err := styx.UnmarshalDirs(buf[:n])
			if err != nil {
				t.Fatalf("count %d: %v", count, err)
			}
			for _, d := range ds {
				names = append(names, d.Name)
			}
			off += int64(n)
		}
		f.Clunk(e.ctx)
		if !slices.Equal(names, want) {
			t.Errorf("count %d: read %q, want %q", count, names, want)
		}
	}
}

func TestStatMatchesDirRead(t *testing.T) {
	e := newEnv(t, sampleTree(t))
	root := e.attach("glenda")
	d, err := e.open(root, "a", styx.OREAD)
	must(t, err)
	ents, err := d.ReadDir(e.ctx)
	must(t, err)
	d.Clunk(e.ctx)
	if len(ents) != 2 {
		t.Fatalf("a has %d entries, want 2", len(ents))
	}
	for _, ent := range ents {
		st, err := e.stat(root, "a/"+ent.Name)
		must(t, err)
		if st != ent {
			t.Errorf("stat a/%s = %v, entry %v", ent.Name, st, ent)
		}
	}
	st, err := e.stat(root, "a/g")
	must(t, err)
	want := styx.Dir{Qid: st.Qid, Mode: 0444, Atime: uint32(epoch.Unix()), Mtime: uint32(epoch.Unix()),
		Length: 5, Name: "g", Uid: "none", Gid: "none", Muid: "none"}
	if st != want {
		t.Errorf("stat a/g = %v, want %v", st, want)
	}
}

func TestPermissions(t *testing.T) {
	root := synth.NewDir("/", 0775)
	root.SetOwner("alice", "alice")
	data := "old"
	rw := synth.ReadWrite("file", 0644,
		func(context.Context) ([]byte, error) { return []byte(data), nil },
		func(_ context.Context, b []byte) error { data = string(b); return nil })
	rw.SetOwner("alice", "staff")
	must(t, root.Add(rw))
	grp := synth.Static("grp", 0640, []byte("group\n"))
	grp.SetOwner("alice", "staff")
	must(t, root.Add(grp))
	priv := synth.NewDir("private", 0700)
	priv.SetOwner("alice", "")
	must(t, priv.Add(synth.Static("x", 0444, []byte("secret\n"))))
	must(t, root.Add(priv))
	member := func(user, group string) bool { return group == "staff" && user == "bob" }
	e := newEnv(t, synth.NewServer(root, synth.WithClock(pinned), synth.WithMember(member)))
	alice, bob, carol := e.attach("alice"), e.attach("bob"), e.attach("carol")

	tests := []struct {
		who  *styx.Fid
		user string
		path string
		mode uint8
		err  string
	}{
		{alice, "alice", "file", styx.OWRITE, ""},
		{alice, "alice", "file", styx.ORDWR | styx.OTRUNC, ""},
		{bob, "bob", "file", styx.OREAD, ""},
		{bob, "bob", "file", styx.OWRITE, "permission denied"},
		{bob, "bob", "file", styx.OREAD | styx.OTRUNC, "permission denied"},
		{bob, "bob", "file", styx.OEXEC, "permission denied"},
		{bob, "bob", "grp", styx.OREAD, ""},
		{carol, "carol", "grp", styx.OREAD, "permission denied"},
		{alice, "alice", "private", styx.OREAD, ""},
		{alice, "alice", "private/x", styx.OREAD, ""},
		{bob, "bob", "private", styx.OREAD, "permission denied"},
		{alice, "alice", "file", styx.OREAD | styx.ORCLOSE, "remove prohibited"},
		{bob, "bob", "grp", styx.OREAD | styx.ORCLOSE, "permission denied"},
	}
	for _, tt := range tests {
		f, err := e.open(tt.who, tt.path, tt.mode)
		if errText(err) != tt.err {
			t.Errorf("%s: open %s mode %#x: %v, want %q", tt.user, tt.path, tt.mode, err, tt.err)
		}
		if f != nil {
			f.Clunk(e.ctx)
		}
	}

	// Walking into a directory needs search permission on it.
	p, err := bob.WalkPath(e.ctx, "private")
	must(t, err)
	if _, _, err := p.Walk(e.ctx, "x"); errText(err) != "permission denied" {
		t.Errorf("bob: walk private/x: %v, want permission denied", err)
	}
	if _, _, err := p.Walk(e.ctx, ".."); errText(err) != "permission denied" {
		t.Errorf("bob: walk private/..: %v, want permission denied", err)
	}
	p.Clunk(e.ctx)

	if err := e.write(alice, "file", styx.OWRITE|styx.OTRUNC, "new"); err != nil || data != "new" {
		t.Errorf("alice: write file: %v, content %q", err, data)
	}
	if err := e.write(bob, "file", styx.OWRITE, "bob's"); errText(err) != "permission denied" || data != "new" {
		t.Errorf("bob: write file: %v, content %q", err, data)
	}
}

func TestDynamicDir(t *testing.T) {
	root := synth.NewDir("/", 0555)
	recs := synth.NewDir("records", 0555)
	var mu sync.Mutex
	names := []string{"a", "b", "c"}
	gens := 0
	recs.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		mu.Lock()
		defer mu.Unlock()
		gens++
		var ns []synth.Node
		for _, n := range names {
			ns = append(ns, synth.String(n, 0444, func(context.Context) string { return "record " + n + "\n" }))
		}
		return ns, nil
	})
	must(t, recs.Add(synth.Static("README", 0444, []byte("records\n"))))
	must(t, root.Add(recs))
	e := newEnv(t, synth.NewServer(root, synth.WithClock(pinned)))
	fid := e.attach("glenda")

	list := func() map[string]styx.Dir {
		t.Helper()
		d, err := e.open(fid, "records", styx.OREAD)
		must(t, err)
		defer d.Clunk(e.ctx)
		ents, err := d.ReadDir(e.ctx)
		must(t, err)
		m := make(map[string]styx.Dir)
		var order []string
		for _, ent := range ents {
			m[ent.Name] = ent
			order = append(order, ent.Name)
		}
		m[""] = styx.Dir{Name: fmt.Sprint(order)}
		return m
	}
	first := list()
	if got := first[""].Name; got != "[README a b c]" {
		t.Errorf("listing %s, want [README a b c]", got)
	}
	if s, err := e.read(fid, "records/b"); s != "record b\n" || err != nil {
		t.Errorf("read records/b: %q, %v", s, err)
	}
	stB, err := e.stat(fid, "records/b")
	must(t, err)
	if stB.Qid.Path != first["b"].Qid.Path || stB.Length != 9 {
		t.Errorf("stat records/b = %v, listing said %v", stB, first["b"])
	}
	stRecs, err := e.stat(fid, "records")
	must(t, err)

	mu.Lock()
	names = []string{"b", "c", "d"}
	mu.Unlock()
	second := list()
	if got := second[""].Name; got != "[README b c d]" {
		t.Errorf("listing %s, want [README b c d]", got)
	}
	for _, n := range []string{"README", "b", "c"} {
		if first[n].Qid.Path != second[n].Qid.Path {
			t.Errorf("%s: qid path changed from %#x to %#x", n, first[n].Qid.Path, second[n].Qid.Path)
		}
	}
	for _, n := range []string{"a", "b", "c", "README"} {
		if second["d"].Qid.Path == first[n].Qid.Path {
			t.Errorf("d has the qid path of %s", n)
		}
	}
	if _, err := e.stat(fid, "records/a"); errText(err) != "file not found" {
		t.Errorf("stat records/a after it went: %v", err)
	}
	st2, err := e.stat(fid, "records")
	must(t, err)
	if st2.Qid.Vers == stRecs.Qid.Vers {
		t.Errorf("records qid version %d did not change when its children did", st2.Qid.Vers)
	}

	mu.Lock()
	before := gens
	mu.Unlock()
	if _, err := e.read(fid, "records/README"); err != nil {
		t.Error(err)
	}
	mu.Lock()
	if gens != before {
		t.Errorf("walk to an added child ran the generator")
	}
	mu.Unlock()
}

func TestRemoveWhileOpen(t *testing.T) {
	root := synth.NewDir("/", 0777)
	must(t, root.Add(synth.Static("f", 0444, []byte("still here\n"))))
	sub := synth.NewDir("sub", 0555)
	must(t, sub.Add(synth.Static("g", 0444, []byte("g\n"))))
	must(t, root.Add(sub))
	e := newEnv(t, synth.NewServer(root, synth.WithClock(pinned)))
	fid := e.attach("glenda")
	f, err := e.open(fid, "f", styx.OREAD)
	must(t, err)
	s, err := fid.WalkPath(e.ctx, "sub")
	must(t, err)
	before, err := e.stat(fid, "")
	must(t, err)

	must(t, root.Remove("f"))
	must(t, root.Remove("sub"))
	if err := root.Remove("f"); !errors.Is(err, plan9.ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	if _, err := e.stat(fid, "f"); errText(err) != "file not found" {
		t.Errorf("walk to removed file: %v", err)
	}
	b, err := f.ReadAll(e.ctx)
	if string(b) != "still here\n" || err != nil {
		t.Errorf("read of open removed file: %q, %v", b, err)
	}
	if _, err := f.Stat(e.ctx); err != nil {
		t.Errorf("stat of open removed file: %v", err)
	}
	must(t, f.Clunk(e.ctx))
	if _, _, err := s.Walk(e.ctx, ".."); errText(err) != "file not found" {
		t.Errorf("walk .. from removed dir: %v", err)
	}
	s.Clunk(e.ctx)
	after, err := e.stat(fid, "")
	must(t, err)
	if after.Qid.Vers == before.Qid.Vers {
		t.Errorf("root qid version did not change on remove")
	}
}

func TestCreateRemoveRename(t *testing.T) {
	root := synth.NewDir("/", 0775)
	root.SetOwner("alice", "staff")
	notes := synth.NewDir("notes", 0775)
	notes.SetOwner("alice", "staff")
	must(t, root.Add(notes))
	var mu sync.Mutex
	content := map[string]string{}
	var log []string
	notes.SetCreate(func(ctx context.Context, name string, perm uint32, mode uint8) (synth.Node, error) {
		if perm&styx.DMDIR != 0 {
			return nil, errors.New("notes: no directories")
		}
		mu.Lock()
		log = append(log, "create "+name+" by "+synth.User(ctx))
		mu.Unlock()
		return synth.ReadWrite(name, perm&0664,
			func(context.Context) ([]byte, error) { mu.Lock(); defer mu.Unlock(); return []byte(content[name]), nil },
			func(_ context.Context, b []byte) error {
				mu.Lock()
				defer mu.Unlock()
				content[name] = string(b)
				return nil
			}), nil
	})
	notes.SetRemove(func(ctx context.Context, name string) error {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, "remove "+name)
		return nil
	})
	notes.SetRename(func(ctx context.Context, oldname, newname string) error {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, "rename "+oldname+" "+newname)
		return nil
	})
	e := newEnv(t, synth.NewServer(root, synth.WithClock(pinned)))
	alice, bob := e.attach("alice"), e.attach("bob")

	if _, err := createIn(e, alice, "x", 0644); errText(err) != "create prohibited" {
		t.Errorf("create in root: %v", err)
	}
	if _, err := createIn(e, bob, "notes/x", 0644); errText(err) != "permission denied" {
		t.Errorf("bob: create in notes: %v", err)
	}
	if _, err := createIn(e, alice, "notes/d", styx.DMDIR|0755); errText(err) != "notes: no directories" {
		t.Errorf("create dir: %v", err)
	}
	f, err := createIn(e, alice, "notes/todo", 0666)
	must(t, err)
	_, err = f.WriteAt(e.ctx, []byte("milk\n"), 0)
	must(t, err)
	must(t, e.clunk(f))
	st, err := e.stat(alice, "notes/todo")
	must(t, err)
	if st.Uid != "alice" || st.Gid != "staff" || st.Mode != 0664 || st.Length != 5 {
		t.Errorf("created file: %v", st)
	}
	if _, err := createIn(e, alice, "notes/todo", 0644); errText(err) != "file already exists" {
		t.Errorf("create existing: %v", err)
	}

	// Rename the way Linux v9fs does: name set, muid "nobody", the rest
	// don't-touch.
	g, err := alice.WalkPath(e.ctx, "notes/todo")
	must(t, err)
	d := styx.NullDir()
	d.Name, d.Muid = "done", "nobody"
	must(t, g.Wstat(e.ctx, d))
	if st2, err := e.stat(alice, "notes/done"); err != nil || st2.Qid.Path != st.Qid.Path {
		t.Errorf("after rename: %v, %v", st2, err)
	}
	if _, err := e.stat(alice, "notes/todo"); errText(err) != "file not found" {
		t.Errorf("old name after rename: %v", err)
	}
	if s, err := e.read(alice, "notes/done"); s != "milk\n" || err != nil {
		t.Errorf("read renamed: %q, %v", s, err)
	}
	top, err := alice.WalkPath(e.ctx, "notes")
	must(t, err)
	d = styx.NullDir()
	d.Name = "n2"
	if err := top.Wstat(e.ctx, d); errText(err) != "wstat prohibited" {
		t.Errorf("rename without hook: %v", err)
	}
	top.Clunk(e.ctx)

	b, err := bob.WalkPath(e.ctx, "notes/done")
	must(t, err)
	if err := b.Remove(e.ctx); errText(err) != "permission denied" {
		t.Errorf("bob: remove: %v", err)
	}
	must(t, g.Remove(e.ctx))
	if _, err := e.stat(alice, "notes/done"); errText(err) != "file not found" {
		t.Errorf("after remove: %v", err)
	}
	n, err := alice.WalkPath(e.ctx, "notes")
	must(t, err)
	if err := n.Remove(e.ctx); errText(err) != "remove prohibited" {
		t.Errorf("remove without hook: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"create todo by alice", "rename todo done", "remove done"}
	if !slices.Equal(log, want) {
		t.Errorf("hooks ran %q, want %q", log, want)
	}
}

// createIn walks from root to the directory of p and creates p's last
// element in it, open for writing (reading for a directory).
func createIn(e *env, root *styx.Fid, p string, perm uint32) (*styx.Fid, error) {
	names := styx.SplitPath(p)
	_, d, err := root.Walk(e.ctx, names[:len(names)-1]...)
	if err != nil {
		return nil, err
	}
	mode := styx.OWRITE
	if perm&styx.DMDIR != 0 {
		mode = styx.OREAD
	}
	if err := d.Create(e.ctx, names[len(names)-1], perm, mode); err != nil {
		d.Clunk(e.ctx)
		return nil, err
	}
	return d, nil
}

func TestWstat(t *testing.T) {
	root := synth.NewDir("/", 0775)
	f := synth.Static("f", 0644, []byte("12345"))
	f.SetOwner("alice", "staff")
	must(t, root.Add(f))
	sub := synth.NewDir("sub", 0755)
	must(t, root.Add(sub))
	e := newEnv(t, synth.NewServer(root, synth.WithClock(pinned)))
	alice, bob, staff := e.attach("alice"), e.attach("bob"), e.attach("staff")

	with := func(change func(*styx.Dir)) styx.Dir {
		d := styx.NullDir()
		change(&d)
		return d
	}
	tests := []struct {
		name string
		who  *styx.Fid
		path string
		d    styx.Dir
		err  string
	}{
		{"nothing", bob, "f", styx.NullDir(), ""},
		{"fsync-like all null with muid", bob, "f", with(func(d *styx.Dir) { d.Muid = "nobody" }), ""},
		{"same values", bob, "f", with(func(d *styx.Dir) { d.Mode, d.Gid, d.Length, d.Name = 0644, "staff", 5, "f" }), ""},
		{"mode by other", bob, "f", with(func(d *styx.Dir) { d.Mode = 0600 }), "permission denied"},
		{"mode by owner", alice, "f", with(func(d *styx.Dir) { d.Mode = 0600 }), ""},
		{"dir bit", alice, "f", with(func(d *styx.Dir) { d.Mode = styx.DMDIR | 0600 }), "wstat can't convert between files and directories"},
		{"mtime by other", bob, "f", with(func(d *styx.Dir) { d.Mtime = 42 }), "permission denied"},
		{"mtime by owner", alice, "f", with(func(d *styx.Dir) { d.Mtime = 42 }), ""},
		{"gid by other", bob, "f", with(func(d *styx.Dir) { d.Gid = "bob" }), "permission denied"},
		{"gid by leader", staff, "f", with(func(d *styx.Dir) { d.Gid = "web" }), ""},
		{"gid by owner", alice, "f", with(func(d *styx.Dir) { d.Gid = "staff" }), ""},
		{"uid", alice, "f", with(func(d *styx.Dir) { d.Uid = "bob" }), "permission denied"},
		{"length without truncate", alice, "f", with(func(d *styx.Dir) { d.Length = 0 }), "permission denied"},
		{"dir length 0", alice, "sub", with(func(d *styx.Dir) { d.Length = 0 }), ""},
		{"dir mode keeps DMDIR", e.attach("none"), "sub", with(func(d *styx.Dir) { d.Mode = styx.DMDIR | 0700 }), ""},
		{"rename root", alice, "", with(func(d *styx.Dir) { d.Name = "x" }), "permission denied"},
	}
	for _, tt := range tests {
		fid, err := tt.who.WalkPath(e.ctx, tt.path)
		must(t, err)
		if err := fid.Wstat(e.ctx, tt.d); errText(err) != tt.err {
			t.Errorf("%s: wstat: %v, want %q", tt.name, err, tt.err)
		}
		fid.Clunk(e.ctx)
	}
	st, err := e.stat(alice, "f")
	must(t, err)
	if st.Mode != 0600 || st.Mtime != 42 || st.Gid != "staff" || st.Uid != "alice" || st.Length != 5 {
		t.Errorf("after wstats: %v", st)
	}
	if st, _ := e.stat(alice, "sub"); st.Mode != styx.DMDIR|0700 {
		t.Errorf("sub mode %#o", st.Mode)
	}
}

func TestExclusive(t *testing.T) {
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Static("lock", styx.DMEXCL|0444, []byte("x"))))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("glenda")
	f, err := e.open(fid, "lock", styx.OREAD)
	must(t, err)
	if f.Qid().Type&styx.QTEXCL == 0 {
		t.Errorf("qid %v lacks QTEXCL", f.Qid())
	}
	if _, err := e.open(fid, "lock", styx.OREAD); errText(err) != "file in use" {
		t.Errorf("second open: %v", err)
	}
	must(t, f.Clunk(e.ctx))
	g, err := e.open(fid, "lock", styx.OREAD)
	must(t, err)
	g.Clunk(e.ctx)
}

func TestAddErrors(t *testing.T) {
	d := synth.NewDir("d", 0555)
	other := synth.NewDir("o", 0555)
	f := synth.Static("f", 0444, nil)
	must(t, d.Add(f))
	sub := synth.NewDir("sub", 0555)
	must(t, d.Add(sub))
	tests := []struct {
		n    synth.Node
		into *synth.Dir
		err  string
	}{
		{synth.Static("f", 0444, nil), d, "file already exists"},
		{synth.Static("", 0444, nil), d, "bad character in file name"},
		{synth.Static("a/b", 0444, nil), d, "bad character in file name"},
		{synth.Static("..", 0444, nil), d, "bad character in file name"},
		{f, other, "synth: node is already in a directory"},
		{d, d, "synth: node is already in a directory"},
		{d, sub, "synth: node is already in a directory"},
	}
	for _, tt := range tests {
		if err := tt.into.Add(tt.n); errText(err) != tt.err {
			t.Errorf("add %q: %v, want %q", tt.n.Name(), err, tt.err)
		}
	}
	must(t, d.Remove("f"))
	must(t, other.Add(f))
	if n, ok := other.Lookup("f"); !ok || n != synth.Node(f) {
		t.Errorf("lookup after move: %v, %v", n, ok)
	}
}

func TestConcurrentReaders(t *testing.T) {
	root := synth.NewDir("/", 0555)
	var mu sync.Mutex
	gen := 0
	must(t, root.Add(synth.String("status", 0444, func(context.Context) string {
		mu.Lock()
		defer mu.Unlock()
		gen++
		return fmt.Sprintf("generation %d\n%s", gen, "padding padding padding\n")
	})))
	must(t, root.Add(synth.Static("static", 0444, []byte("static\n"))))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("glenda")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for range 10 {
				p := "static"
				if i%2 == 0 {
					p = "status"
				}
				s, err := e.read(fid, p)
				if err != nil || (p == "static" && s != "static\n") || (p == "status" && len(s) < 30) {
					errs <- fmt.Errorf("read %s: %q, %v", p, s, err)
					return
				}
				d, err := e.open(fid, "", styx.OREAD)
				if err != nil {
					errs <- err
					return
				}
				ents, err := d.ReadDir(e.ctx)
				d.Clunk(e.ctx)
				if err != nil || len(ents) != 2 {
					errs <- fmt.Errorf("readdir: %d entries, %v", len(ents), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
