package ns_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/ns"
	"cheshire/styx"
)

// TestViewSeesLaterExports: a remote key's view, attached once, shows
// an export added later and drops one removed, at the next walk from
// its root; an export whose path is gone (a restarted node's /tmp)
// waits in it, and shows once the path is made again.
func TestViewSeesLaterExports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, root := nsWithCtl(t)
	do := func(names []string, f func(styx.File) error) error {
		t.Helper()
		_, fd, err := root.Walk(ctx, names)
		if err != nil {
			return err
		}
		defer fd.Clunk()
		return f(fd)
	}
	// mkdir makes /tmp/NAME with a file f in it.
	mkdir := func(name string) {
		t.Helper()
		if err := do([]string{"tmp"}, func(d styx.File) error {
			nf, _, err := d.Create(ctx, name, styx.DMDIR|0755, styx.OREAD)
			if err != nil {
				return err
			}
			defer nf.Clunk()
			ff, _, err := nf.Create(ctx, "f", 0644, styx.OWRITE)
			if err == nil {
				ff.Clunk()
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	ctl := func(line string) {
		t.Helper()
		if err := do([]string{"ns", "ctl"}, func(f styx.File) error {
			if _, err := f.Open(ctx, styx.OWRITE); err != nil {
				return err
			}
			_, err := f.Write(ctx, []byte(line+"\n"), 0)
			return err
		}); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
	const key = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u"
	mkdir("a")
	mkdir("b")
	ctl("export /tmp/a to *")
	view, err := m.AttachRemote(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	defer view.Clunk()
	sees := func(name string) bool {
		t.Helper()
		qids, f, err := view.Walk(ctx, []string{"tmp", name, "f"})
		if f != nil {
			f.Clunk()
		}
		return err == nil && len(qids) == 3
	}
	if !sees("a") || sees("b") {
		t.Fatalf("view at attach: a %v, b %v; want a only", sees("a"), sees("b"))
	}
	ctl("export /tmp/b to " + key)
	if !sees("b") {
		t.Errorf("an export added after the attach is not in the view")
	}
	ctl("unexport /tmp/a")
	if sees("a") {
		t.Errorf("an export removed after the attach is still in the view")
	}
	// The exported path goes (as an in-memory /tmp does at a restart):
	// a new view attaches, and the export shows once the path is back.
	for _, p := range [][]string{{"tmp", "b", "f"}, {"tmp", "b"}} {
		if err := do(p, func(f styx.File) error { return f.Remove(ctx) }); err != nil {
			t.Fatal(err)
		}
	}
	view2, err := m.AttachRemote(ctx, key, "")
	if err != nil {
		t.Fatalf("attach with the exported path missing: %v", err)
	}
	defer view2.Clunk()
	if qids, f, err := view2.Walk(ctx, []string{"tmp", "b", "f"}); err == nil && len(qids) == 3 {
		f.Clunk()
		t.Errorf("walk into a missing export succeeded")
	}
	mkdir("b")
	if qids, f, err := view2.Walk(ctx, []string{"tmp", "b", "f"}); err != nil || len(qids) != 3 {
		t.Errorf("export once its path is back: %v", err)
	} else {
		f.Clunk()
	}
	if _, err := m.AttachRemote(ctx, strings.Repeat("y", 52), ""); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("key with nothing exported: %v", err)
	}
}

// TestExportsFollowTheFile: Exports parses the exports file again when
// a save replaces it and when it is edited by hand in place, and not
// otherwise (the parsed copy is not shared with callers).
func TestExportsFollowTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := ns.NewManager(ns.WithDir(dir))
	if err := m.AddExport(ns.Export{User: "glenda", Path: "/tmp", To: "*"}); err != nil {
		t.Fatal(err)
	}
	es, err := m.Exports()
	if err != nil || len(es) != 1 || es[0].Path != "/tmp" {
		t.Fatalf("Exports = %v, %v; want /tmp", es, err)
	}
	es[0].Path = "/changed-by-caller"
	if es, _ := m.Exports(); es[0].Path != "/tmp" {
		t.Fatalf("a caller's change reached the cache: %v", es)
	}
	// Edit in place, as an editor that writes through the file would.
	if err := os.WriteFile(filepath.Join(dir, "exports"), []byte("glenda /srv ro *\nglenda /tmp rw key1\n"), 0600); err != nil {
		t.Fatal(err)
	}
	es, err = m.Exports()
	if err != nil || len(es) != 2 || es[0].Path != "/srv" || !es[0].RO || es[1].To != "key1" {
		t.Fatalf("after a hand edit Exports = %v, %v", es, err)
	}
}

// TestRefusedHook: a key to which nothing is exported is refused, and
// WithRefused hears of it, with the path it asked for.
func TestRefusedHook(t *testing.T) {
	t.Parallel()
	const key = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u"
	var heard []string
	m := ns.NewManager(ns.WithRefused(func(ctx context.Context, k, aname string) { heard = append(heard, k+" "+aname) }))
	t.Cleanup(m.Close)
	if _, err := m.AttachRemote(context.Background(), key, "/tmp/x"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("attach with nothing exported: %v", err)
	}
	if len(heard) != 1 || heard[0] != key+" /tmp/x" {
		t.Fatalf("the hook heard %q", heard)
	}
}
