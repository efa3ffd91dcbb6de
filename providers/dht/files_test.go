package dht

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/styx"
)

// client serves s on 127.0.0.1 with a styx.Server and attaches to it.
func client(t *testing.T, s styx.Attacher) (context.Context, *styx.Fid) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &styx.Server{Attacher: s}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	c, err := styx.Dial(ctx, "tcp!127.0.0.1!"+testutil.PortOf(ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("styx server did not stop")
		}
	})
	root, err := c.Attach(ctx, nil, "glenda", "")
	if err != nil {
		t.Fatal(err)
	}
	return ctx, root
}

// open walks to p from root and opens it.
func open(t *testing.T, ctx context.Context, root *styx.Fid, p string, mode uint8) *styx.Fid {
	t.Helper()
	_, f, err := root.Walk(ctx, styx.SplitPath(p)...)
	if err != nil {
		t.Fatalf("walk %s: %v", p, err)
	}
	if err := f.Open(ctx, mode); err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	t.Cleanup(func() { f.Clunk(context.Background()) })
	return f
}

func readFile(t *testing.T, ctx context.Context, root *styx.Fid, p string) string {
	t.Helper()
	f := open(t, ctx, root, p, styx.OREAD)
	b, err := f.ReadAll(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

// command writes cmd to ctl on f and reads the answer from offset 0 of
// the same fid.
func command(ctx context.Context, f *styx.Fid, cmd string) (string, error) {
	if _, err := f.WriteAt(ctx, []byte(cmd), 0); err != nil {
		return "", err
	}
	b, err := f.ReadAll(ctx)
	return string(b), err
}

// TestFiles: node a publishes and announces, b's files show it.
func TestFiles(t *testing.T) {
	t.Parallel()
	nodes := newSwarm(t, 6)
	a, b := nodes[2], nodes[4]
	if _, err := a.Publish(opCtx(t), []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Announce(opCtx(t), "/n/cheshire/music", 5640); err != nil {
		t.Fatal(err)
	}
	for range 50 { // the store takes the announce in a goroutine
		if peers, err := b.Find(opCtx(t), "/n/cheshire/music"); err != nil || len(peers) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, root := client(t, Files(b, "glenda"))
	akey := nodekey.Encode(a.PublicKey())

	status := readFile(t, ctx, root, "status")
	for _, want := range []string{"key " + nodekey.Encode(b.PublicKey()) + "\n", "listen udp!127.0.0.1!", "nodes ", "good ", "forged ", "stale "} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	peers := readFile(t, ctx, root, "peers")
	if n := strings.Count(peers, "\n"); n < 4 || !strings.Contains(peers, " udp!127.0.0.1!") {
		t.Errorf("peers:\n%s", peers)
	}

	ctl := open(t, ctx, root, "ctl", styx.ORDWR)
	ans, err := command(ctx, ctl, "lookup "+akey)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if !strings.Contains(ans, "key "+akey+"\n") || !strings.Contains(ans, `value "fresh"`) || !strings.Contains(ans, "from ") {
		t.Errorf("lookup answer:\n%s", ans)
	}
	// A second open has its own answer.
	other := open(t, ctx, root, "ctl", styx.ORDWR)
	ans2, err := command(ctx, other, "find /n/cheshire/music")
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	if ans2 != "tcp!127.0.0.1!5640\n" {
		t.Errorf("find answer: %q", ans2)
	}
	if again, _ := ctl.ReadAll(ctx); string(again) != ans {
		t.Errorf("first fid's answer changed to %q", again)
	}
	if _, err := command(ctx, ctl, "lookup nonsense"); err == nil || !strings.HasPrefix(err.Error(), "lookup: ") {
		t.Errorf("lookup of a bad key: %v", err)
	}
	if _, err := command(ctx, ctl, "frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown control message") {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := command(ctx, ctl, "announce"); err == nil || err.Error() != `bad # args to command "announce": usage: announce PATH [PORT]` {
		t.Errorf("announce without path: %v", err)
	}
	if _, err := command(ctx, ctl, "find /a\nlookup nonsense\n"); err == nil || !strings.HasPrefix(err.Error(), "line 2: lookup: ") {
		t.Errorf("a failing second line: %v", err)
	}
	if ans, err := command(ctx, ctl, "announce /n/b/files 5641"); err != nil || !strings.HasPrefix(ans, "announced /n/b/files to ") {
		t.Errorf("announce: %q, %v", ans, err)
	}

	rec := readFile(t, ctx, root, "records/"+akey)
	if !strings.Contains(rec, `value "fresh"`) || !strings.Contains(rec, "seq ") || !strings.Contains(rec, "age ") {
		t.Errorf("records/%s:\n%s", akey, rec)
	}
	_, d, err := root.Walk(ctx, "records")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Clunk(ctx)
	if err := d.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	ents, err := d.ReadDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range ents {
		found = found || e.Name == akey
	}
	if !found {
		t.Errorf("records/ lacks %s: %v", akey, ents)
	}

	// The publisher's own record shows how many nodes stored it.
	actx, aroot := client(t, Files(a, "glenda"))
	own := readFile(t, actx, aroot, "records/"+akey)
	if !strings.Contains(own, "stored ") {
		t.Errorf("own record:\n%s", own)
	}
	actl := open(t, actx, aroot, "ctl", styx.ORDWR)
	if ans, err := command(actx, actl, "republish"); err != nil || !strings.HasPrefix(ans, "republished to ") {
		t.Errorf("republish: %q, %v", ans, err)
	}
}
