package styx_test

// Fuzz targets. Run one at a time, e.g.
//
//	go test -run='^$' -fuzz='^FuzzUnmarshal$' -fuzztime=10s ./styx
//	go test -run='^$' -fuzz='^FuzzUnmarshalDir$' -fuzztime=10s ./styx
//	go test -run='^$' -fuzz='^FuzzServer$' -fuzztime=10s ./styx
//
// (anchor the pattern: FuzzUnmarshal is a prefix of FuzzUnmarshalDir).
// Without -fuzz, go test runs each target on its seeds.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/styx"
)

var seedDir = styx.Dir{Type: 1, Dev: 2, Qid: styx.Qid{Type: styx.QTDIR, Vers: 3, Path: 4}, Mode: styx.DMDIR | 0755,
	Atime: 5, Mtime: 6, Length: 7, Name: "name", Uid: "glenda", Gid: "bunny", Muid: "rsc"}

// sampleFcalls has one message of every type.
func sampleFcalls() []*styx.Fcall {
	q := styx.Qid{Type: styx.QTFILE, Vers: 1, Path: 2}
	return []*styx.Fcall{
		{Type: styx.Tversion, Tag: styx.NoTag, Msize: 8192, Version: "9P2000"},
		{Type: styx.Rversion, Tag: styx.NoTag, Msize: 8192, Version: "9P2000"},
		{Type: styx.Tauth, Tag: 1, Afid: 3, Uname: "glenda", Aname: "main"},
		{Type: styx.Rauth, Tag: 1, Qid: styx.Qid{Type: styx.QTAUTH}},
		{Type: styx.Tattach, Tag: 1, Fid: 1, Afid: styx.NoFid, Uname: "glenda"},
		{Type: styx.Rattach, Tag: 1, Qid: q},
		{Type: styx.Rerror, Tag: 1, Ename: "file not found"},
		{Type: styx.Tflush, Tag: 2, Oldtag: 1},
		{Type: styx.Rflush, Tag: 2},
		{Type: styx.Twalk, Tag: 1, Fid: 1, Newfid: 2, Wname: []string{"a", "b", ".."}},
		{Type: styx.Twalk, Tag: 1, Fid: 1, Newfid: 2},
		{Type: styx.Rwalk, Tag: 1, Wqid: []styx.Qid{q, q}},
		{Type: styx.Rwalk, Tag: 1},
		{Type: styx.Topen, Tag: 1, Fid: 2, Mode: styx.ORDWR | styx.OTRUNC},
		{Type: styx.Ropen, Tag: 1, Qid: q, Iounit: 8168},
		{Type: styx.Tcreate, Tag: 1, Fid: 2, Name: "new", Perm: 0644, Mode: styx.OWRITE},
		{Type: styx.Rcreate, Tag: 1, Qid: q},
		{Type: styx.Tread, Tag: 1, Fid: 2, Offset: 100, Count: 200},
		{Type: styx.Rread, Tag: 1, Data: []byte("hello")},
		{Type: styx.Twrite, Tag: 1, Fid: 2, Offset: 5, Data: []byte("world")},
		{Type: styx.Rwrite, Tag: 1, Count: 5},
		{Type: styx.Tclunk, Tag: 1, Fid: 2},
		{Type: styx.Rclunk, Tag: 1},
		{Type: styx.Tremove, Tag: 1, Fid: 2},
		{Type: styx.Rremove, Tag: 1},
		{Type: styx.Tstat, Tag: 1, Fid: 2},
		{Type: styx.Rstat, Tag: 1, Stat: seedDir.Bytes()},
		{Type: styx.Twstat, Tag: 1, Fid: 2, Stat: seedDir.Bytes()},
		{Type: styx.Rwstat, Tag: 1},
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, fc := range sampleFcalls() {
		b, err := fc.Bytes()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{7, 0, 0, 0, 200, 0, 0})
	f.Add([]byte{17, 0, 0, 0, styx.Twalk, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 16, 0})
	f.Add([]byte{9, 0, 0, 0, styx.Rstat, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fc styx.Fcall
		if err := fc.Unmarshal(b); err != nil {
			return
		}
		_ = fc.String()
		out, err := fc.Append(nil)
		if err != nil {
			t.Fatalf("Append of decoded %v: %v", &fc, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip of %v:\n in  %x\n out %x", &fc, b, out)
		}
	})
}

func FuzzUnmarshalDir(f *testing.F) {
	f.Add(seedDir.Bytes())
	f.Add(append(seedDir.Bytes(), seedDir.Bytes()...))
	null := styx.NullDir()
	f.Add(null.Bytes())
	f.Add((&styx.Dir{Name: strings.Repeat("x", 300)}).Bytes())
	f.Add([]byte{0, 0})
	// Owners shared with the entry before, in other fields.
	f.Add(append((&styx.Dir{Name: "a", Uid: "u", Gid: "g", Muid: "m"}).Bytes(),
		(&styx.Dir{Name: "b", Uid: "g", Gid: "u", Muid: "g"}).Bytes()...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := styx.UnmarshalDir(b); err == nil {
			_ = d.String()
			if out := d.Bytes(); !bytes.Equal(out, b) {
				t.Fatalf("round trip of %v:\n in  %x\n out %x", d, b, out)
			}
			if d.Size() != len(b) {
				t.Fatalf("Size %d of a %d-byte entry", d.Size(), len(b))
			}
		}
		ds, err := styx.UnmarshalDirs(b)
		var out []byte
		for i := range ds {
			out = ds[i].Append(out)
		}
		if err == nil && !bytes.Equal(out, b) || err != nil && !bytes.HasPrefix(b, out) {
			t.Fatalf("UnmarshalDirs round trip (err %v):\n in  %x\n out %x", err, b, out)
		}
	})
}

// fuzzConn is the server's side of a connection whose client sends the
// fuzzer's bytes and then hangs up. It checks every reply as it is
// written: one whole, well-formed R-message for a tag that was sent.
type fuzzConn struct {
	in   *bytes.Reader
	tags map[uint16]bool

	mu  sync.Mutex
	err error
	n   int
}

func (c *fuzzConn) Read(p []byte) (int, error) { return c.in.Read(p) }

// Write checks the replies in p: whole frames, one or more (replies
// run on the reading goroutine go out together).
func (c *fuzzConn) Write(p []byte) (int, error) {
	var err error
	n := 0
	for b := p; err == nil && len(b) > 0; n++ {
		size := len(b)
		if len(b) >= 4 {
			size = min(size, int(binary.LittleEndian.Uint32(b)))
		}
		err = c.check(b[:size])
		b = b[size:]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && c.err == nil {
		c.err = err
	}
	c.n += n
	return len(p), nil
}

// check checks one reply.
func (c *fuzzConn) check(p []byte) error {
	var f styx.Fcall
	err := f.Unmarshal(p)
	switch {
	case err != nil:
		err = fmt.Errorf("malformed reply %x: %v", p[:min(len(p), 64)], err)
	case f.Type%2 != 1 || f.Type < styx.Rversion || f.Type > styx.Rwstat:
		err = fmt.Errorf("reply of type %d: %v", f.Type, &f)
	case !c.tags[f.Tag]:
		err = fmt.Errorf("reply for tag %d, which was never sent: %v", f.Tag, &f)
	}
	return err
}

func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return fuzzAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return fuzzAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

type fuzzAddr struct{}

func (fuzzAddr) Network() string { return "fuzz" }
func (fuzzAddr) String() string  { return "fuzz" }

// frameTags lists the tags of the frames in b, split the way the server
// splits them.
func frameTags(b []byte) map[uint16]bool {
	tags := map[uint16]bool{}
	for len(b) >= 7 {
		n := binary.LittleEndian.Uint32(b)
		if n < 7 || n > styx.DefaultMsize {
			break
		}
		tags[binary.LittleEndian.Uint16(b[5:])] = true
		if uint32(len(b)) < n {
			break
		}
		b = b[n:]
	}
	return tags
}

// panicCounter counts the handler panics the server recovers from.
type panicCounter struct {
	mu sync.Mutex
	n  int
	s  []string
}

func (p *panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.n++
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		p.s = append(p.s, b.String())
		p.mu.Unlock()
	}
	return nil
}
func (p *panicCounter) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicCounter) WithGroup(string) slog.Handler      { return p }

// fuzzSession is a sequence of requests that exercises most of the
// server: a seed for FuzzServer.
func fuzzSession() []byte {
	nd := styx.NullDir()
	nd.Name = "b"
	var b []byte
	for _, f := range []*styx.Fcall{
		{Type: styx.Tversion, Tag: styx.NoTag, Msize: 8192, Version: "9P2000"},
		{Type: styx.Tattach, Tag: 1, Fid: 1, Afid: styx.NoFid, Uname: "glenda"},
		{Type: styx.Twalk, Tag: 2, Fid: 1, Newfid: 2},
		{Type: styx.Tcreate, Tag: 3, Fid: 2, Name: "a", Perm: 0644, Mode: styx.ORDWR},
		{Type: styx.Twrite, Tag: 4, Fid: 2, Offset: 0, Data: []byte("hello, world")},
		{Type: styx.Tread, Tag: 5, Fid: 2, Offset: 0, Count: 100},
		{Type: styx.Tflush, Tag: 6, Oldtag: 5},
		{Type: styx.Tstat, Tag: 7, Fid: 2},
		{Type: styx.Twstat, Tag: 8, Fid: 2, Stat: nd.Bytes()},
		{Type: styx.Tclunk, Tag: 9, Fid: 2},
		{Type: styx.Twalk, Tag: 10, Fid: 1, Newfid: 3, Wname: []string{"b"}},
		{Type: styx.Topen, Tag: 11, Fid: 3, Mode: styx.OREAD | styx.ORCLOSE},
		{Type: styx.Tread, Tag: 12, Fid: 3, Offset: 7, Count: 5},
		{Type: styx.Twalk, Tag: 13, Fid: 1, Newfid: 4},
		{Type: styx.Topen, Tag: 14, Fid: 4, Mode: styx.OREAD},
		{Type: styx.Tread, Tag: 15, Fid: 4, Offset: 0, Count: 8192},
		{Type: styx.Tremove, Tag: 16, Fid: 3},
		{Type: styx.Tauth, Tag: 17, Afid: 5, Uname: "glenda"},
	} {
		b, _ = f.Append(b)
	}
	return b
}

func FuzzServer(f *testing.F) {
	f.Add(fuzzSession())
	f.Add(fuzzSession()[:200])
	var bad []byte
	bad = binary.LittleEndian.AppendUint32(bad, 1000)
	bad = append(bad, styx.Twrite, 0, 0, 1, 2, 3, 4)
	f.Add(bad)
	f.Add([]byte{3, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, styx.Tstat, 0, 0})
	for _, fc := range sampleFcalls() {
		b, _ := fc.Bytes()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		pc := &panicCounter{}
		s := &styx.Server{
			Attacher: newMemFSMax("glenda", 1<<20),
			Log:      slog.New(pc),
		}
		c := &fuzzConn{in: bytes.NewReader(in), tags: frameTags(in)}
		done := make(chan struct{})
		go func() { s.ServeConn(context.Background(), c); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("server still serving 10 s after the client hung up")
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil {
			t.Fatal(c.err)
		}
		// A panic in a handler is recovered and answered with an Rerror.
		// It is a bug all the same, but it may be the provider's (tmp
		// panics on a Twrite whose offset+count overflows int64, and on
		// a Twstat of length ≥ 2^63), so it is logged, not failed.
		if pc.n > 0 {
			t.Logf("server recovered %d handler panics: %s", pc.n, strings.Join(pc.s, ";"))
		}
	})
}
