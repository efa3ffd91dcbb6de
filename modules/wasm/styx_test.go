package wasm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/plan9"
	"cheshire/styx"
)

// serve serves a over 9P on a loopback listener and returns a client's
// attach as user.
func serve(t testing.TB, a styx.Attacher, user string) *styx.Fid {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &styx.Server{Attacher: a}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, l)
	}()
	host, port, _ := net.SplitHostPort(l.Addr().String())
	c, err := styx.Dial(ctx, "tcp!"+host+"!"+port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		cancel()
		<-done
	})
	root, err := c.Attach(ctx, nil, user, "")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestKVOver9P(t *testing.T) {
	ctx := context.Background()
	s := start(t, "kv", "")
	root := serve(t, s, "glenda")

	write := func(path string, mode uint8, data string) error {
		f, err := root.WalkPath(ctx, path)
		if err != nil {
			return err
		}
		if err := f.Open(ctx, mode); err != nil {
			f.Clunk(ctx)
			return err
		}
		_, err = f.WriteAt(ctx, []byte(data), 0)
		if cerr := f.Clunk(ctx); err == nil {
			err = cerr
		}
		return err
	}
	read := func(path string) (string, error) {
		f, err := root.WalkPath(ctx, path)
		if err != nil {
			return "", err
		}
		defer f.Clunk(ctx)
		if err := f.Open(ctx, plan9.OREAD); err != nil {
			return "", err
		}
		b, err := f.ReadAll(ctx)
		return string(b), err
	}

	ok(t, "set", write("/ctl", plan9.OWRITE, "set k v1"))
	if got, err := read("/keys/k"); err != nil || got != "v1" {
		t.Fatalf("read k: %q, %v", got, err)
	}
	// A value larger than one message, written with pipelined writes.
	big := strings.Repeat("0123456789abcdef", 20000)
	ok(t, "write big", write("/keys/k", plan9.OWRITE|plan9.OTRUNC, big))
	if got, err := read("/keys/k"); err != nil || got != big {
		t.Fatalf("read big: %d bytes, %v", len(got), err)
	}

	// Create and remove.
	d, err := root.WalkPath(ctx, "/keys")
	ok(t, "walk keys", err)
	ok(t, "create", d.Create(ctx, "n", 0o666, plan9.ORDWR))
	_, err = d.WriteAt(ctx, []byte("new"), 0)
	ok(t, "write new", err)
	ok(t, "clunk new", d.Clunk(ctx))
	if got, err := read("/keys/n"); err != nil || got != "new" {
		t.Fatalf("read n: %q, %v", got, err)
	}
	f, err := root.WalkPath(ctx, "/keys/n")
	ok(t, "walk n", err)
	st, err := f.Stat(ctx)
	ok(t, "stat n", err)
	if st.Name != "n" || st.Length != 3 || st.Mode != 0o666 || st.Uid != "kv" || st.Qid.Type != styx.QTFILE {
		t.Errorf("stat n: %v", st)
	}
	ok(t, "remove n", f.Remove(ctx))
	_, err = read("/keys/n")
	wantErr(t, "read removed", err, "file not found")

	ls, err := root.WalkPath(ctx, "/keys")
	ok(t, "walk keys", err)
	ok(t, "open keys", ls.Open(ctx, plan9.OREAD))
	ds, err := ls.ReadDir(ctx)
	ok(t, "readdir", err)
	ls.Clunk(ctx)
	if len(ds) != 1 || ds[0].Name != "k" || ds[0].Length != uint64(len(big)) {
		t.Errorf("ls /keys: %v", ds)
	}

	// Permission bits are the module's: the root is read-only, ctl may
	// not be removed.
	r2, err := root.WalkPath(ctx, "/")
	ok(t, "clone", err)
	wantErr(t, "create in root", r2.Create(ctx, "x", 0o666, plan9.OWRITE), "permission denied")
	c, err := root.WalkPath(ctx, "/ctl")
	ok(t, "walk ctl", err)
	wantErr(t, "remove ctl", c.Remove(ctx), "permission denied")
}

// Many clients at once on one instance: the calls are serialized, all
// answered, and the race detector sees no race.
func TestConcurrentClients(t *testing.T) {
	ctx := context.Background()
	s := start(t, "kv", "")
	root := attach(t, s, "glenda")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i)
			for j := range 10 {
				val := fmt.Sprintf("%d-%d", i, j)
				if err := writeFile(ctx, root, "/ctl", plan9.OWRITE, "set "+key+" "+val); err != nil {
					errs <- err
					return
				}
				got, err := testutil.ReadFile(ctx, root, "/keys/"+key)
				if err != nil || got != val {
					errs <- fmt.Errorf("read %s: %q, %v", key, got, err)
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
	names, err := readDirNames(ctx, root, "/keys")
	if err != nil || len(names) != 8 {
		t.Errorf("ls /keys: %q, %v", names, err)
	}
}

// A module whose namespace call reaches its own files fails that call
// instead of waiting for itself.
func TestNamespaceIntoItself(t *testing.T) {
	ctx := context.Background()
	var self styx.Attacher
	ns := styx.AttachFunc(func(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
		return self.Attach(ctx, uname, aname, auth)
	})
	s := startEnv(t, "nsprobe", "allow read /tmp/granted\nallow write /tmp/out", t.TempDir(), ns)
	self = s
	root := attach(t, s, "glenda")
	_, err := filter(ctx, root, "/read", "/tmp/granted/x")
	wantErr(t, "read own files", err, "its own files")
	// The instance is still fine.
	_, err = filter(ctx, root, "/read", "/tmp/secret")
	wantErr(t, "denied", err, "permission denied")
}

func TestMarkdown(t *testing.T) {
	ctx := context.Background()
	fs, nsroot := nsTree(t)
	ok(t, "doc", create(ctx, nsroot, "/tmp", "doc.md", 0o644, "# Title\n\nSome *text*.\n"))
	ok(t, "sub", create(ctx, nsroot, "/tmp", "sub", plan9.DMDIR|0o777, ""))
	ok(t, "notes", create(ctx, nsroot, "/tmp/sub", "notes.md", 0o644, "- one\n- two\n"))
	ok(t, "other", create(ctx, nsroot, "/tmp/sub", "image.png", 0o644, "png"))
	s := startEnv(t, "markdown", "allow read /tmp", t.TempDir(), fs)
	root := attach(t, s, "glenda")

	got, err := filter(ctx, root, "/render", "Hello, **world**")
	if err != nil || got != "<p>Hello, <strong>world</strong></p>\n" {
		t.Errorf("render: %q, %v", got, err)
	}
	got, err = testutil.ReadFile(ctx, root, "/ns/tmp/doc.html")
	if err != nil || got != "<h1>Title</h1>\n<p>Some <em>text</em>.</p>\n" {
		t.Errorf("ns/tmp/doc.html: %q, %v", got, err)
	}
	got, err = testutil.ReadFile(ctx, root, "/ns/tmp/sub/notes.html")
	if err != nil || !strings.Contains(got, "<li>one</li>") {
		t.Errorf("ns/tmp/sub/notes.html: %q, %v", got, err)
	}
	names, err := readDirNames(ctx, root, "/ns/tmp")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"doc.html", "granted", "out", "sub"}) {
		t.Errorf("ls /ns/tmp: %q, %v", names, err)
	}
	names, err = readDirNames(ctx, root, "/ns/tmp/sub")
	if err != nil || !slices.Equal(names, []string{"notes.html"}) {
		t.Errorf("ls /ns/tmp/sub: %q, %v", names, err)
	}
	_, err = testutil.ReadFile(ctx, root, "/ns/tmp/missing.html")
	wantErr(t, "missing page", err, "file not found")
	// Outside what the module may read.
	_, err = testutil.ReadFile(ctx, root, "/ns/etc/passwd.html")
	wantErr(t, "outside the grant", err, "permission denied")
	if errors.Is(err, plan9.ErrNotFound) {
		t.Error("denied read reported as not found")
	}
}
