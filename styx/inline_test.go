package styx_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"cheshire/styx"
)

// goid is the id of the calling goroutine, from its stack's first line.
func goid() uint64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := bytes.Fields(b[:n])
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}

// where is a file that records the goroutine each Read runs on, and
// says it is Inline if inline is set.
type where struct {
	blocker
	inline bool
	mu     sync.Mutex
	ids    []uint64
}

func (w *where) Inline() bool { return w.inline }
func (w *where) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	return nil, w, nil
}
func (w *where) Read(ctx context.Context, p []byte, off int64) (int, error) {
	w.mu.Lock()
	w.ids = append(w.ids, goid())
	w.mu.Unlock()
	return copy(p, "x"), nil
}

// TestInline reads an Inline file three times and a plain one three
// times: the first's reads all run on one goroutine (the connection's
// reader), the second's each on a goroutine of its own. A Tflush of an
// inline read that has been answered gets its Rflush after the Rread;
// a large read of an Inline file gets a goroutine all the same.
func TestInline(t *testing.T) {
	t.Parallel()
	for _, inline := range []bool{true, false} {
		w := &where{inline: inline}
		addr := serve(t, styx.AttachFunc(func(ctx context.Context, u, a string, auth styx.File) (styx.File, error) {
			return w, nil
		}))
		r := rawDial(t, addr)
		r.session()
		r.expect(&styx.Fcall{Type: styx.Topen, Tag: 1, Fid: 1, Mode: styx.OREAD}, styx.Ropen)
		for range 3 {
			r.expect(&styx.Fcall{Type: styx.Tread, Tag: 2, Fid: 1, Count: 100}, styx.Rread)
		}
		r.expect(&styx.Fcall{Type: styx.Tread, Tag: 2, Fid: 1, Count: 1 << 20}, styx.Rread)
		w.mu.Lock()
		ids := w.ids
		w.mu.Unlock()
		same := ids[0] == ids[1] && ids[1] == ids[2]
		if inline && (!same || ids[3] == ids[0]) || !inline && (ids[0] == ids[1] || ids[1] == ids[2]) {
			t.Fatalf("inline %v: reads ran on goroutines %v", inline, ids)
		}
		if !inline { // the flush may then come first: either order is 9P
			continue
		}
		r.send(&styx.Fcall{Type: styx.Tread, Tag: 3, Fid: 1, Count: 100})
		r.send(&styx.Fcall{Type: styx.Tflush, Tag: 4, Oldtag: 3})
		if rx := r.recv(); rx.Type != styx.Rread || rx.Tag != 3 {
			t.Fatalf("inline %v: %v before the Rflush", inline, rx)
		}
		if rx := r.recv(); rx.Type != styx.Rflush || rx.Tag != 4 {
			t.Fatalf("inline %v: %v, want Rflush", inline, rx)
		}
	}
}

// TestClientElection has one caller blocked in a read that never ends,
// so it is the one reading replies, while another's Stat is answered:
// the blocked caller reads that reply and hands it over. Then the
// blocked read is cancelled (Tflush) and the client goes on working.
func TestClientElection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	addr := serve(t, styx.AttachFunc(func(ctx context.Context, u, a string, auth styx.File) (styx.File, error) {
		return &blocker{started: started, cancelled: cancelled}, nil
	}))
	_, root := dialAttach(t, addr, "glenda")
	_, f, err := root.Walk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(ctx, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := f.ReadOnce(rctx, make([]byte, 10), 0)
		errc <- err
	}()
	<-started
	for range 20 { // answered while the reader waits for its own reply
		if _, err := root.Stat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	<-cancelled
	if _, err := root.Stat(ctx); err != nil {
		t.Fatal(err)
	}
	if _, g, err := root.Walk(ctx); err != nil {
		t.Fatalf("walk after the flush: %v", err)
	} else if err := g.Clunk(ctx); err != nil {
		t.Fatal(err)
	}
}
