package synth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"cheshire/styx"
	"cheshire/synth"
)

// eventEnv serves an Events of the queue size as /events.
func eventEnv(t *testing.T, queue int) (*env, *styx.Fid, *synth.Events) {
	t.Helper()
	ev := synth.NewEvents(queue)
	root := synth.NewDir("/", 0555)
	must(t, root.Add(ev.File("events", 0444)))
	e := newEnv(t, synth.NewServer(root))
	return e, e.attach("glenda"), ev
}

// readN reads from f until it has n bytes.
func readN(t *testing.T, e *env, f *styx.Fid, n int) string {
	t.Helper()
	var b []byte
	buf := make([]byte, 8192)
	for len(b) < n {
		m, err := f.ReadOnce(e.ctx, buf, 0)
		if err != nil || m == 0 {
			t.Fatalf("read after %q: %d, %v", b, m, err)
		}
		b = append(b, buf[:m]...)
	}
	return string(b)
}

func TestEventsReaders(t *testing.T) {
	e, fid, ev := eventEnv(t, 0)
	ev.Publish([]byte("before any reader\n"))
	r1, err := e.open(fid, "events", styx.OREAD)
	must(t, err)
	r2, err := e.open(fid, "events", styx.OREAD)
	must(t, err)
	var want strings.Builder
	for i := range 20 {
		ev.Publishf("event %d\n", i)
		fmt.Fprintf(&want, "event %d\n", i)
	}
	for i, r := range []*styx.Fid{r1, r2} {
		if got := readN(t, e, r, want.Len()); got != want.String() {
			t.Errorf("reader %d got %q, want %q", i, got, want.String())
		}
	}
	if _, err := e.open(fid, "events", styx.OWRITE); errText(err) != "permission denied" {
		t.Errorf("open for writing: %v", err)
	}
	must(t, r2.Clunk(e.ctx))

	// Whole events as fit; one longer than the read is split.
	ev.Publish([]byte("aaa\n"))
	ev.Publish([]byte("bbb\n"))
	ev.Publish([]byte("cc\n"))
	for _, tt := range []struct {
		count int
		want  string
	}{{9, "aaa\nbbb\n"}, {2, "cc"}, {10, "\n"}} {
		buf := make([]byte, tt.count)
		n, err := r1.ReadOnce(e.ctx, buf, 12345)
		if err != nil || string(buf[:n]) != tt.want {
			t.Errorf("read of %d: %q, %v; want %q", tt.count, buf[:n], err, tt.want)
		}
	}
	must(t, r1.Clunk(e.ctx))
}

func TestEventsFlush(t *testing.T) {
	e, fid, ev := eventEnv(t, 0)
	r, err := e.open(fid, "events", styx.OREAD)
	must(t, err)
	ctx, cancel := context.WithCancel(e.ctx)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := r.ReadOnce(ctx, make([]byte, 100), 0)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		t.Fatalf("read with no event returned %d, %v", res.n, res.err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel() // the client sends Tflush
	select {
	case res := <-done:
		if !errors.Is(res.err, context.Canceled) {
			t.Errorf("flushed read: %d, %v", res.n, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flushed read did not end")
	}
	// The fid still works, and the flushed read took nothing.
	ev.Publish([]byte("after flush\n"))
	if got := readN(t, e, r, 12); got != "after flush\n" {
		t.Errorf("read after flush: %q", got)
	}

	// Close ends blocked reads with end of file.
	go func() {
		n, err := r.ReadOnce(e.ctx, make([]byte, 100), 0)
		done <- result{n, err}
	}()
	time.Sleep(20 * time.Millisecond)
	ev.Close()
	select {
	case res := <-done:
		if res.n != 0 || res.err != nil {
			t.Errorf("read at close: %d, %v", res.n, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not end at close")
	}
	ev.Publish([]byte("after close\n"))
	if n, err := r.ReadOnce(e.ctx, make([]byte, 100), 0); n != 0 || err != nil {
		t.Errorf("read after close: %d, %v", n, err)
	}
	must(t, r.Clunk(e.ctx))
}

func TestEventsOverflow(t *testing.T) {
	const queue = 4
	e, fid, ev := eventEnv(t, queue)
	r, err := e.open(fid, "events", styx.OREAD)
	must(t, err)
	for i := range 10 {
		ev.Publishf("e%d\n", i)
	}
	want := "e0\ne1\ne2\ne3\noverflow: 6 events dropped\n"
	if got := readN(t, e, r, len(want)); got != want {
		t.Errorf("after overflow read %q, want %q", got, want)
	}
	ev.Publish([]byte("e10\n"))
	if got := readN(t, e, r, 4); got != "e10\n" {
		t.Errorf("after catching up read %q", got)
	}

	// An event published once the reader has room again comes after
	// the overflow line of those it lost.
	for i := range 6 {
		ev.Publishf("f%d\n", i)
	}
	buf := make([]byte, 3)
	if n, err := r.ReadOnce(e.ctx, buf, 0); string(buf[:n]) != "f0\n" || err != nil {
		t.Errorf("read %q, %v; want f0", buf[:n], err)
	}
	ev.Publish([]byte("g\n"))
	want = "f1\nf2\nf3\noverflow: 2 events dropped\ng\n"
	if got := readN(t, e, r, len(want)); got != want {
		t.Errorf("read %q, want %q", got, want)
	}
	must(t, r.Clunk(e.ctx))
}
