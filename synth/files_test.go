package synth_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

func TestSnapshotConsistency(t *testing.T) {
	var mu sync.Mutex
	content := "version 1: " + strings.Repeat("one ", 20) + "\n"
	get := func() string { mu.Lock(); defer mu.Unlock(); return content }
	set := func(s string) { mu.Lock(); defer mu.Unlock(); content = s }

	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.String("string", 0444, func(context.Context) string { return get() })))
	must(t, root.Add(synth.Snapshot("snap", 0444, func(context.Context) ([]byte, error) { return []byte(get()), nil })))
	must(t, root.Add(synth.Ctl("ctl", 0664, nil, func(context.Context) string { return get() })))
	static := []byte("static content\n")
	must(t, root.Add(synth.Static("static", 0444, static)))
	static[0] = 'X' // Static keeps its own copy
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("glenda")

	for _, name := range []string{"string", "snap", "ctl"} {
		set("version 1: " + strings.Repeat("one ", 20) + "\n")
		want := get()
		f, err := e.open(fid, name, styx.OREAD)
		must(t, err)
		var got []byte
		buf := make([]byte, 7)
		for i := 0; ; i++ {
			// The content changes between every two reads; the fid keeps
			// the version of its open.
			set(strings.Repeat("v", i+2) + "\n")
			n, err := f.ReadOnce(e.ctx, buf, int64(len(got)))
			must(t, err)
			if n == 0 {
				break
			}
			got = append(got, buf[:n]...)
		}
		f.Clunk(e.ctx)
		if string(got) != want {
			t.Errorf("%s: read %q, want %q", name, got, want)
		}
		set("now eleven\n")
		if st, err := e.stat(fid, name); err != nil || st.Length != 11 {
			t.Errorf("%s: stat length %d, %v; want 11", name, st.Length, err)
		}
	}
	if s, err := e.read(fid, "static"); s != "static content\n" || err != nil {
		t.Errorf("static: %q, %v", s, err)
	}
	if st, _ := e.stat(fid, "static"); st.Length != 15 {
		t.Errorf("static: stat length %d", st.Length)
	}
	f, err := e.open(fid, "static", styx.OREAD)
	must(t, err)
	if n, err := f.ReadOnce(e.ctx, make([]byte, 10), 100); n != 0 || err != nil {
		t.Errorf("read past end: %d, %v", n, err)
	}
	f.Clunk(e.ctx)
}

func TestSnapshotError(t *testing.T) {
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Snapshot("broken", 0444, func(context.Context) ([]byte, error) {
		return nil, errors.New("broken: backend down")
	})))
	must(t, root.Add(synth.Static("ro", 0666, []byte("x"))))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("glenda")
	if _, err := e.read(fid, "broken"); errText(err) != "broken: backend down" {
		t.Errorf("read broken: %v", err)
	}
	if err := e.write(fid, "ro", styx.OWRITE, "y"); errText(err) != "permission denied" {
		t.Errorf("write to static: %v", err)
	}
}

// zone is a ReadWrite file's backing store that refuses content without
// a leading "zone" line.
type zone struct {
	mu   sync.Mutex
	data string
	sets int
}

func (z *zone) get(context.Context) ([]byte, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return []byte(z.data), nil
}

func (z *zone) set(_ context.Context, b []byte) error {
	if !bytes.HasPrefix(b, []byte("zone ")) {
		return errors.New("dns: zone file must begin with a zone line")
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.data = string(b)
	z.sets++
	return nil
}

func (z *zone) content() (string, int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.data, z.sets
}

func TestReadWriteCommitAtClunk(t *testing.T) {
	z := &zone{data: "zone example.org\na 1.2.3.4\n"}
	root := synth.NewDir("/", 0555)
	rw := synth.ReadWrite("zone", 0666, z.get, z.set)
	must(t, root.Add(rw))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("glenda")

	// Nothing changes before the clunk, and a reader sees the old content.
	before, _ := e.stat(fid, "zone")
	f, err := e.open(fid, "zone", styx.OWRITE|styx.OTRUNC)
	must(t, err)
	_, err = f.WriteAt(e.ctx, []byte("zone example.org\n"), 0)
	must(t, err)
	_, err = f.WriteAt(e.ctx, []byte("b 5.6.7.8\n"), 17)
	must(t, err)
	if s, _ := z.content(); s != "zone example.org\na 1.2.3.4\n" {
		t.Errorf("content changed before clunk: %q", s)
	}
	if s, err := e.read(fid, "zone"); s != "zone example.org\na 1.2.3.4\n" || err != nil {
		t.Errorf("read during write: %q, %v", s, err)
	}
	must(t, e.clunk(f))
	if s, n := z.content(); s != "zone example.org\nb 5.6.7.8\n" || n != 1 {
		t.Errorf("after commit: %q (%d sets)", s, n)
	}
	after, _ := e.stat(fid, "zone")
	if after.Qid.Vers != before.Qid.Vers+2 {
		t.Errorf("qid version %d after two writes, was %d", after.Qid.Vers, before.Qid.Vers)
	}
	if after.Length != uint64(len("zone example.org\nb 5.6.7.8\n")) {
		t.Errorf("stat length %d", after.Length)
	}

	// Bad content is refused at the clunk, with set's error, and the old
	// content stays.
	err = e.write(fid, "zone", styx.OWRITE|styx.OTRUNC, "garbage\n")
	if errText(err) != "dns: zone file must begin with a zone line" {
		t.Errorf("bad content: %v", err)
	}
	if s, n := z.content(); s != "zone example.org\nb 5.6.7.8\n" || n != 1 {
		t.Errorf("after refused commit: %q (%d sets)", s, n)
	}

	// Without OTRUNC the fid starts from the content; writes land at
	// their offsets.
	must(t, e.write(fid, "zone", styx.ORDWR, "zone EXAMPLE.ORG"))
	if s, _ := z.content(); s != "zone EXAMPLE.ORG\nb 5.6.7.8\n" {
		t.Errorf("overwrite at offset 0: %q", s)
	}

	// Opening for writing and clunking without a write commits nothing;
	// OTRUNC alone commits the empty file, which this zone refuses.
	g, err := e.open(fid, "zone", styx.OWRITE)
	must(t, err)
	must(t, e.clunk(g))
	if _, n := z.content(); n != 2 {
		t.Errorf("clunk without writes called set: %d sets", n)
	}
	if err := e.write(fid, "zone", styx.OWRITE|styx.OTRUNC, ""); err == nil {
		t.Errorf("empty commit accepted")
	}

	// Truncation by wstat, as Linux does after opening with O_TRUNC,
	// cuts the open fids' copies, committed at their clunk.
	h, err := e.open(fid, "zone", styx.OWRITE)
	must(t, err)
	w, err := fid.WalkPath(e.ctx, "zone")
	must(t, err)
	d := styx.NullDir()
	d.Length = 0
	must(t, w.Wstat(e.ctx, d))
	if s, _ := z.content(); s != "zone EXAMPLE.ORG\nb 5.6.7.8\n" {
		t.Errorf("wstat with a fid open for writing changed the content: %q", s)
	}
	_, err = h.WriteAt(e.ctx, []byte("zone x\n"), 0)
	must(t, err)
	must(t, e.clunk(h))
	if s, _ := z.content(); s != "zone x\n" {
		t.Errorf("after truncate and write: %q", s)
	}
	// With no fid open, wstat truncates at once.
	d.Length = 5
	must(t, w.Wstat(e.ctx, d))
	if s, _ := z.content(); s != "zone " {
		t.Errorf("after truncate to 5: %q", s)
	}
	w.Clunk(e.ctx)

	// A fid holds at most MaxReadWrite bytes.
	big, err := e.open(fid, "zone", styx.OWRITE)
	must(t, err)
	if _, err := big.WriteAt(e.ctx, []byte("x"), synth.MaxReadWrite); errText(err) != "file too big" {
		t.Errorf("write past the limit: %v", err)
	}
	must(t, e.clunk(big))
}

func TestClone(t *testing.T) {
	root := synth.NewDir("/", 0555)
	conns := synth.NewDir("tcp", 0555)
	must(t, root.Add(conns))
	var mu sync.Mutex
	ctlLog := map[int][]string{}
	clone := synth.Clone("clone", 0666, conns, func(ctx context.Context, n int) (*synth.Dir, error) {
		d := synth.NewDir("ignored", 0555)
		cmds := []synth.Cmd{{Name: "connect", Min: 1, Max: 1, Usage: "connect addr", Run: func(ctx context.Context, args []string) error {
			mu.Lock()
			defer mu.Unlock()
			ctlLog[n] = append(ctlLog[n], "connect "+args[0])
			return nil
		}}}
		if err := d.Add(synth.Ctl("ctl", 0660, cmds, nil)); err != nil {
			return nil, err
		}
		if err := d.Add(synth.String("status", 0444, func(context.Context) string { return "Idle\n" })); err != nil {
			return nil, err
		}
		return d, nil
	})
	must(t, conns.Add(clone))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("none")

	c0, err := e.open(fid, "tcp/clone", styx.ORDWR)
	must(t, err)
	c1, err := e.open(fid, "tcp/clone", styx.OREAD)
	must(t, err)
	for i, c := range []*styx.Fid{c0, c1} {
		b, err := c.ReadAll(e.ctx)
		if want := []string{"0\n", "1\n"}[i]; string(b) != want || err != nil {
			t.Errorf("clone %d reads %q, %v; want %q", i, b, err, want)
		}
	}
	d, err := e.open(fid, "tcp", styx.OREAD)
	must(t, err)
	ents, err := d.ReadDir(e.ctx)
	must(t, err)
	d.Clunk(e.ctx)
	var names []string
	for _, ent := range ents {
		names = append(names, ent.Name)
	}
	if strings.Join(names, " ") != "clone 0 1" {
		t.Errorf("tcp holds %q", names)
	}
	if s, err := e.read(fid, "tcp/1/status"); s != "Idle\n" || err != nil {
		t.Errorf("read tcp/1/status: %q, %v", s, err)
	}

	if _, err := c0.WriteAt(e.ctx, []byte("connect 10.0.0.1!80\n"), 0); err != nil {
		t.Errorf("write to clone: %v", err)
	}
	if _, err := c0.WriteAt(e.ctx, []byte("hangup\n"), 0); errText(err) != `unknown control message "hangup"` {
		t.Errorf("bad write to clone: %v", err)
	}
	must(t, e.clunk(c0))
	must(t, c1.Clunk(e.ctx))
	mu.Lock()
	if got := strings.Join(ctlLog[0], ","); got != "connect 10.0.0.1!80" {
		t.Errorf("session 0 ctl got %q", got)
	}
	mu.Unlock()
	if _, err := e.stat(fid, "tcp/0"); err != nil {
		t.Errorf("session 0 gone after clunk: %v", err)
	}
	must(t, conns.Remove("0"))
	if _, err := e.stat(fid, "tcp/0"); errText(err) != "file not found" {
		t.Errorf("session 0 after remove: %v", err)
	}
	c2, err := e.open(fid, "tcp/clone", styx.OREAD)
	must(t, err)
	if b, _ := c2.ReadAll(e.ctx); string(b) != "2\n" {
		t.Errorf("third clone reads %q", b)
	}
	c2.Clunk(e.ctx)
}
