package styx_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"cheshire/styx"
)

// gate is a File whose Open and Create wait until released, so a test
// can clunk the fid while they are in progress.
type gate struct {
	blocker
	started chan struct{}
	release chan struct{}
	clunks  *atomic.Int32
}

func (g *gate) Qid() styx.Qid { return styx.Qid{Type: styx.QTDIR} }

func (g *gate) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	return nil, g, nil
}

func (g *gate) wait() {
	g.started <- struct{}{}
	<-g.release
}

func (g *gate) Open(ctx context.Context, mode uint8) (uint32, error) { g.wait(); return 0, nil }

func (g *gate) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	g.wait()
	return g, 0, nil
}

func (g *gate) Clunk() error { g.clunks.Add(1); return nil }

// TestClunkDuringOpen clunks a fid while a Topen or Tcreate of it is in
// the File: the open's reply must still come, and the File be clunked
// once the open has let go of it. (The open's reference is dropped just
// before its reply; that used to happen with the fid's lock held, and
// being the last reference, decref then waited for that lock for ever.)
func TestClunkDuringOpen(t *testing.T) {
	for _, typ := range []uint8{styx.Topen, styx.Tcreate} {
		t.Run(map[uint8]string{styx.Topen: "open", styx.Tcreate: "create"}[typ], func(t *testing.T) {
			g := &gate{started: make(chan struct{}), release: make(chan struct{}), clunks: new(atomic.Int32)}
			addr := serve(t, styx.AttachFunc(func(ctx context.Context, u, a string, auth styx.File) (styx.File, error) {
				return g, nil
			}))
			r := rawDial(t, addr)
			r.session()
			r.expect(&styx.Fcall{Type: styx.Twalk, Tag: 1, Fid: 1, Newfid: 2}, styx.Rwalk)
			r.send(&styx.Fcall{Type: typ, Tag: 2, Fid: 2, Name: "x", Perm: 0644})
			<-g.started
			r.expect(&styx.Fcall{Type: styx.Tclunk, Tag: 3, Fid: 2}, styx.Rclunk)
			close(g.release)
			rx, err := r.tryRecv(5 * time.Second)
			if err != nil {
				t.Fatalf("no reply to the open: %v", err)
			}
			if rx.Tag != 2 || rx.Type != typ+1 {
				t.Fatalf("got %v", rx)
			}
			r.expect(&styx.Fcall{Type: styx.Tstat, Tag: 4, Fid: 1}, styx.Rstat) // still serving
			want := int32(1)
			if typ == styx.Tcreate {
				want = 2 // the directory's File, replaced, and the new one
			}
			if n := g.clunks.Load(); n != want {
				t.Errorf("File clunked %d times, want %d", n, want)
			}
		})
	}
}
