package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cheshire/styx"
)

// watchLines opens /ns/watch on root, writes line to it, and returns a
// channel of the event lines read from it until the test ends.
func watchLines(t *testing.T, root *styx.Fid, line string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := root.WalkPath(ctx, "/ns/watch")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(ctx, styx.ORDWR); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteOnce(ctx, []byte(line), 0); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		buf := make([]byte, 8192)
		for {
			n, err := w.ReadOnce(ctx, buf, 0)
			if err != nil || n == 0 {
				return
			}
			for _, l := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n") {
				ch <- l
			}
		}
	}()
	return ch
}

// nextLine waits for the next line of ch; the bound only turns a hang
// into a failure.
func nextLine(t *testing.T, ch <-chan string, what string) string {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatalf("the watch ended while waiting for %s", what)
		}
		return l
	case <-time.After(2 * time.Minute):
		t.Fatalf("no event while waiting for %s", what)
	}
	return ""
}

// TestWatchAcrossImport: node A imports node B's export /tmp/pub and
// watches it; a file written on B is an event on A with A's path. B
// killed with SIGKILL and restarted: the watch resumes by itself, says
// "lost" once for the gap, and tells B's changes again.
func TestWatchAcrossImport(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2)
	a, b := cl.nodes[0], cl.nodes[1]
	must9p(t, b.node, "create", "/tmp/pub/")
	if err := b.ctl("/ns/ctl", "export /tmp/pub rw to *"); err != nil {
		t.Fatal(err)
	}
	b.published(1)
	if _, err := a.run("", "import", b.key, "/n/b"); err != nil {
		t.Fatalf("import: %v\n%s", err, a.logs)
	}
	root := a.client(ownerName(t))
	events := watchLines(t, root, "watch /n/b/tmp/pub")

	if _, err := b.run("from b\n", "9p", "write", "/tmp/pub/x"); err != nil {
		t.Fatal(err)
	}
	if got := nextLine(t, events, "the create on B"); got != "create /n/b/tmp/pub/x" {
		t.Errorf("first event %q, want create /n/b/tmp/pub/x", got)
	}
	if got := nextLine(t, events, "the write on B"); !strings.HasPrefix(got, "write /n/b/tmp/pub/x ") {
		t.Errorf("second event %q, want a write of /n/b/tmp/pub/x", got)
	}

	// A watch of a path B does not have is refused at once.
	ctx := context.Background()
	w, err := root.WalkPath(ctx, "/ns/watch")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(ctx, styx.ORDWR); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteOnce(ctx, []byte("watch /n/b/tmp/pub/nonexistent"), 0); err == nil || !strings.Contains(err.Error(), "file not found") {
		t.Errorf("watch of a path B lacks: %v", err)
	}
	w.Clunk(ctx)

	b.kill()
	b.restart()
	must9p(t, b.node, "create", "/tmp/pub/") // tmp is in memory: B comes back without it
	for {
		got := nextLine(t, events, "lost, after B's restart")
		if got == "lost /n/b/tmp/pub" {
			break
		}
		if !strings.HasPrefix(got, "write /n/b/tmp/pub/x") {
			t.Errorf("event %q before lost", got)
		}
	}
	if _, err := b.run("again\n", "9p", "write", "/tmp/pub/y"); err != nil {
		t.Fatal(err)
	}
	if got := nextLine(t, events, "the create after the restart"); got != "create /n/b/tmp/pub/y" {
		t.Errorf("after lost: %q, want create /n/b/tmp/pub/y\nA's log:\n%s", got, a.logs)
	}
}

// TestWatchGitPush: a ref a push moves (a change git makes by itself,
// not through a 9P request) reaches a watch of the repository's refs.
func TestWatchGitPush(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t))
	if _, err := n.run("create w\n", "9p", "write", "/git/ctl"); err != nil {
		t.Fatal(err)
	}
	addr, rootPEM, owner, token := gitHTTPS(t, n)
	events := watchLines(t, n.client(owner), "watch /git/w/refs recursive")
	work := t.TempDir()
	src := filepath.Join(work, "src")
	gitCmd(t, work, "init", "-q", "-b", "main", src)
	os.WriteFile(filepath.Join(src, "a"), []byte("a\n"), 0644)
	gitCmd(t, src, "add", ".")
	gitCmd(t, src, "commit", "-q", "-m", "a")
	url := "https://" + owner + ":" + token + "@" + addr + "/git/w"
	if out, err := gitTry(t, src, []string{"GIT_SSL_CAINFO=" + rootPEM}, "push", url, "main"); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if l := nextLine(t, events, "the pushed ref"); l != "create /git/w/refs/heads/main" {
		t.Errorf("event %q, want create /git/w/refs/heads/main", l)
	}
}
