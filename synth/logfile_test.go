package synth_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

// TestLog: the File reads the kept history and ends; the FollowFile
// waits at the end for the next line; a reader behind the history gets
// an overflow line; the length is what was ever written.
func TestLog(t *testing.T) {
	t.Parallel()
	l := synth.NewLog(64)
	root := synth.NewDir("/", 0555)
	must(t, root.Add(l.File("log", 0444)))
	must(t, root.Add(l.FollowFile("follow", 0444)))
	e := newEnv(t, synth.NewServer(root))
	r := e.attach("glenda")
	fmt.Fprintf(l, "one\ntwo\n")
	if got, err := e.read(r, "log"); err != nil || got != "one\ntwo\n" {
		t.Errorf("read log: %q %v", got, err)
	}
	nf, err := e.open(r, "log", styx.OREAD)
	must(t, err)
	if n, _ := nf.ReadAt(e.ctx, make([]byte, 10), 8); n != 0 { // at the end: the end
		t.Errorf("read at the end of log: %d bytes", n)
	}
	nf.Clunk(e.ctx)
	f, err := e.open(r, "follow", styx.OREAD)
	must(t, err)
	defer f.Clunk(e.ctx)
	buf := make([]byte, 100)
	// ReadAt, like io.ReaderAt, says io.EOF of a short read.
	if n, _ := f.ReadAt(e.ctx, buf, 0); string(buf[:n]) != "one\ntwo\n" {
		t.Fatalf("follow, history: %q", buf[:n])
	}
	got := make(chan string)
	go func() {
		n, _ := f.ReadAt(e.ctx, buf, 8)
		got <- string(buf[:n])
	}()
	fmt.Fprintf(l, "three\n") // the waiting read returns it
	if s := <-got; s != "three\n" {
		t.Errorf("follow, at the end: %q", s)
	}
	fmt.Fprintf(l, "%s\n", strings.Repeat("x", 99)) // pushes everything out
	if got, err := e.read(r, "log"); err != nil || !strings.HasPrefix(got, "overflow: ") || !strings.HasSuffix(got, "xx\n") {
		t.Errorf("read after overflow: %q %v", got, err)
	}
	if d, err := e.stat(r, "log"); err != nil || d.Length != 8+6+100 {
		t.Errorf("length %d, want %d: %v", d.Length, 8+6+100, err)
	}
}

// TestGeneratedVersion: a generated file whose text changes but not its
// length gets another qid version at stat, so that clients caching by
// version (FUSE's page cache) do not serve the old text.
func TestGeneratedVersion(t *testing.T) {
	t.Parallel()
	text := "version 1.0.0\n"
	var mu sync.Mutex
	get := func(context.Context) string { mu.Lock(); defer mu.Unlock(); return text }
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.String("status", 0444, get)))
	must(t, root.Add(synth.Ctl("ctl", 0644, nil, get)))
	e := newEnv(t, synth.NewServer(root))
	r := e.attach("glenda")
	for _, name := range []string{"status", "ctl"} {
		mu.Lock()
		text = "version 1.0.0\n"
		mu.Unlock()
		before, err := e.stat(r, name)
		must(t, err)
		mu.Lock()
		text = "version 1.0.1\n"
		mu.Unlock()
		after, err := e.stat(r, name)
		must(t, err)
		if before.Length != after.Length || before.Qid.Vers == after.Qid.Vers {
			t.Errorf("%s: length %d then %d, qid.vers %d then %d: want the same length, another version", name, before.Length, after.Length, before.Qid.Vers, after.Qid.Vers)
		}
	}
}
