package styx_test

// The abuse suite: hand-built frames on raw TCP connections. Each case
// checks that the server stays up, that a separate connection keeps
// working while the abusive one is open and after it is gone, and,
// where the abuse could cost memory, that the growth of the process's
// heap and stacks stays under a stated bound.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// memBound is the growth of heap and stacks allowed by the abuse
// cases. The design bound of one connection is 256 in-flight requests
// × 8 KiB small frames (2 MiB) + ConnMemory (16 MiB) + the goroutines
// of 256 requests and 64 flushes: about 21 MiB. The cases measure
// 16-20 MiB (with -race too); 32 MiB leaves room for GC lag and still
// catches buffers that cost twice what they are charged (34 MiB, before
// the pool's rounding was charged).
const memBound = 32 << 20

// rawConn is a client connection that writes frames as given.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func rawDial(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", hostPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 1<<16)}
}

func frame(t testing.TB, f *styx.Fcall) []byte {
	t.Helper()
	b, err := f.Bytes()
	if err != nil {
		t.Fatalf("marshal %v: %v", f, err)
	}
	return b
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	r.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawConn) send(f *styx.Fcall) { r.t.Helper(); r.write(frame(r.t, f)) }

// recv reads one reply, failing the test after 10 s.
func (r *rawConn) recv() *styx.Fcall {
	r.t.Helper()
	f, err := r.tryRecv(10 * time.Second)
	if err != nil {
		r.t.Fatalf("reading reply: %v", err)
	}
	return f
}

func (r *rawConn) tryRecv(timeout time.Duration) (*styx.Fcall, error) {
	r.nc.SetReadDeadline(time.Now().Add(timeout))
	var hdr [4]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n < 7 || n > styx.DefaultMsize {
		return nil, fmt.Errorf("bad reply size %d", n)
	}
	b := make([]byte, n)
	copy(b, hdr[:])
	if _, err := io.ReadFull(r.br, b[4:]); err != nil {
		return nil, err
	}
	f := new(styx.Fcall)
	if err := f.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("bad reply: %v", err)
	}
	return f, nil
}

func (r *rawConn) rpc(f *styx.Fcall) *styx.Fcall {
	r.t.Helper()
	r.send(f)
	rx := r.recv()
	if rx.Tag != f.Tag {
		r.t.Fatalf("reply %v to %v: tag mismatch", rx, f)
	}
	return rx
}

// expect sends f and checks that the reply is of type typ.
func (r *rawConn) expect(f *styx.Fcall, typ uint8) *styx.Fcall {
	r.t.Helper()
	rx := r.rpc(f)
	if rx.Type != typ {
		r.t.Fatalf("%v: got %v", f, rx)
	}
	return rx
}

func (r *rawConn) version(msize uint32) {
	r.t.Helper()
	rx := r.expect(&styx.Fcall{Type: styx.Tversion, Tag: styx.NoTag, Msize: msize, Version: styx.Version}, styx.Rversion)
	if rx.Version != styx.Version {
		r.t.Fatalf("version: %v", rx)
	}
}

// session negotiates the version and attaches fid 1 as glenda.
func (r *rawConn) session() {
	r.t.Helper()
	r.version(styx.DefaultMsize)
	r.expect(&styx.Fcall{Type: styx.Tattach, Tag: 1, Fid: 1, Afid: styx.NoFid, Uname: "glenda"}, styx.Rattach)
}

// closedByServer waits up to d for the server to close the connection
// and returns how long it took.
func (r *rawConn) closedByServer(d time.Duration) (time.Duration, error) {
	t0 := time.Now()
	r.nc.SetReadDeadline(t0.Add(d))
	_, err := io.Copy(io.Discard, r.br)
	if err == nil { // EOF
		return time.Since(t0), nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 0, fmt.Errorf("connection still open after %v", d)
	}
	return time.Since(t0), nil // reset: closed too
}

// abuseServer serves a tmp tree holding /f64k (64 KiB) and /dir/x.
func abuseServer(t testing.TB, opts ...func(*styx.Server)) string {
	t.Helper()
	addr := serve(t, newMemFS("glenda"), opts...)
	ctx := context.Background()
	c, root := dialAttach(t, addr, "glenda")
	defer c.Close()
	_, f, _ := root.Walk(ctx)
	if err := f.Create(ctx, "f64k", 0644, styx.OWRITE); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(ctx, testData(64<<10), 0); err != nil {
		t.Fatal(err)
	}
	f.Clunk(ctx)
	_, f, _ = root.Walk(ctx)
	if err := f.Create(ctx, "dir", styx.DMDIR|0755, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	f.Clunk(ctx)
	_, f, _ = root.Walk(ctx, "dir")
	if err := f.Create(ctx, "x", 0644, styx.OREAD); err != nil {
		t.Fatal(err)
	}
	f.Clunk(ctx)
	return addr
}

// probe checks, on a new connection, that the server answers a walk,
// a stat and a clunk within 10 s.
func probe(t testing.TB, addr, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := func() error {
		c, err := styx.Dial(ctx, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		root, err := c.Attach(ctx, nil, "probe", "")
		if err != nil {
			return err
		}
		_, f, err := root.Walk(ctx, "dir", "x")
		if err != nil {
			return err
		}
		d, err := f.Stat(ctx)
		if err != nil {
			return err
		}
		if d.Name != "x" {
			return fmt.Errorf("stat gave %v", d)
		}
		return f.Clunk(ctx)
	}()
	if err != nil {
		t.Fatalf("probe %s: %v", when, err)
	}
}

// memWatch samples the heap and stack in use while an abuse runs.
type memWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func inUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

func watchMem() *memWatch {
	runtime.GC()
	m := &memWatch{base: inUse(), stop: make(chan struct{}), done: make(chan struct{})}
	m.peak.Store(m.base)
	go func() {
		defer close(m.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
				if v := inUse(); v > m.peak.Load() {
					m.peak.Store(v)
				}
			}
		}
	}()
	return m
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// check stops the watch and fails the test if the peak growth passed
// bound; it logs the growth at the peak and after a GC.
func (m *memWatch) check(t testing.TB, what string, bound int64) {
	t.Helper()
	close(m.stop)
	<-m.done
	if v := inUse(); v > m.peak.Load() {
		m.peak.Store(v)
	}
	peak := int64(m.peak.Load()) - int64(m.base)
	runtime.GC()
	after := int64(inUse()) - int64(m.base)
	t.Logf("%s: heap+stack growth %s at peak, %s after GC (bound %s)", what, mib(peak), mib(after), mib(bound))
	if peak > bound {
		t.Errorf("%s: memory grew by %s, bound %s", what, mib(peak), mib(bound))
	}
}

// settle waits up to 10 s for the goroutine count to fall back to
// about base: the server has let go of a closed connection.
func settle(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 10 s after the connection closed, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pipeline writes frames back to back from a goroutine, giving up when
// a write stalls for 3 s (the server pushing back); it then reports how
// many whole frames were written.
func pipeline(nc net.Conn, frames [][]byte) <-chan int {
	ch := make(chan int, 1)
	go func() {
		var all []byte
		for _, b := range frames {
			all = append(all, b...)
		}
		written := 0
		for written < len(all) {
			nc.SetWriteDeadline(time.Now().Add(3 * time.Second))
			n, err := nc.Write(all[written:min(written+64<<10, len(all))])
			written += n
			if err != nil {
				break
			}
		}
		n := 0
		for _, b := range frames {
			if written < len(b) {
				break
			}
			written -= len(b)
			n++
		}
		ch <- n
	}()
	return ch
}

func TestAbusePipelinedStatsUnread(t *testing.T) {
	addr := abuseServer(t)
	base := runtime.NumGoroutine()
	r := rawDial(t, addr)
	r.session()
	m := watchMem()
	const n = 10000
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = frame(t, &styx.Fcall{Type: styx.Tstat, Tag: uint16(i), Fid: 1})
	}
	sent := <-pipeline(r.nc, frames)
	time.Sleep(200 * time.Millisecond) // let the server fill its pipeline
	probe(t, addr, "during")
	m.check(t, fmt.Sprintf("%d pipelined Tstat (%d written), replies unread", n, sent), memBound)
	r.nc.Close()
	settle(t, base)
	probe(t, addr, "after")
}

func TestAbusePipelinedReadsUnread(t *testing.T) {
	addr := abuseServer(t)
	base := runtime.NumGoroutine()
	r := rawDial(t, addr)
	r.session()
	r.expect(&styx.Fcall{Type: styx.Twalk, Tag: 1, Fid: 1, Newfid: 2, Wname: []string{"f64k"}}, styx.Rwalk)
	r.expect(&styx.Fcall{Type: styx.Topen, Tag: 1, Fid: 2, Mode: styx.OREAD}, styx.Ropen)
	m := watchMem()
	const n = 10000
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = frame(t, &styx.Fcall{Type: styx.Tread, Tag: uint16(i), Fid: 2, Count: 64 << 10})
	}
	done := pipeline(r.nc, frames)
	time.Sleep(300 * time.Millisecond) // the server blocks on its full socket
	probe(t, addr, "during")
	m.check(t, fmt.Sprintf("%d pipelined 64 KiB Tread, replies unread", n), memBound)
	r.nc.Close()
	t.Logf("%d of %d Treads written before the server pushed back or the close", <-done, n)
	settle(t, base)
	probe(t, addr, "after")
}

// TestAbuseBigDirReadsUnread pipelines 1 MiB reads of a directory
// holding about 1 MiB of entries, without reading the replies: the
// server builds each directory Rread itself, and that memory must be
// bounded like a file read's.
func TestAbuseBigDirReadsUnread(t *testing.T) {
	ctx := context.Background()
	fs := newMemFS("glenda")
	root, _ := fs.Attach(ctx, "glenda", "", nil)
	dir, _, err := root.Create(ctx, "big", styx.DMDIR|0777, styx.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 250) // names of at most 255 bytes
	for i := range 4000 {            // 4000 entries of about 320 bytes
		if _, _, err := dir.Create(ctx, fmt.Sprintf("%s%04d", long, i), 0644, styx.OREAD); err != nil {
			t.Fatal(err)
		}
	}
	d, _, _ := root.Create(ctx, "dir", styx.DMDIR|0777, styx.OREAD)
	d.Create(ctx, "x", 0644, styx.OREAD) // for probe
	addr := serve(t, fs)
	base := runtime.NumGoroutine()
	r := rawDial(t, addr)
	r.session()
	r.expect(&styx.Fcall{Type: styx.Twalk, Tag: 1, Fid: 1, Newfid: 2, Wname: []string{"big"}}, styx.Rwalk)
	r.expect(&styx.Fcall{Type: styx.Topen, Tag: 1, Fid: 2, Mode: styx.OREAD}, styx.Ropen)
	m := watchMem()
	const n = 2000
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = frame(t, &styx.Fcall{Type: styx.Tread, Tag: uint16(i), Fid: 2, Count: 1 << 20})
	}
	done := pipeline(r.nc, frames)
	time.Sleep(time.Second)
	probe(t, addr, "during")
	m.check(t, fmt.Sprintf("%d pipelined 1 MiB Tread of a 1 MiB directory, replies unread", n), memBound)
	r.nc.Close()
	<-done
	settle(t, base)
	probe(t, addr, "after")
}

// backToBack sends n requests without waiting while a goroutine reads
// the replies; every tag must be answered once, with the right type.
func backToBack(t *testing.T, n int) {
	addr := abuseServer(t)
	r := rawDial(t, addr)
	r.session()
	r.expect(&styx.Fcall{Type: styx.Twalk, Tag: 1, Fid: 1, Newfid: 2, Wname: []string{"f64k"}}, styx.Rwalk)
	r.expect(&styx.Fcall{Type: styx.Topen, Tag: 1, Fid: 2, Mode: styx.OREAD}, styx.Ropen)
	want := make(map[uint16]uint8, n)
	frames := make([][]byte, n)
	for i := range frames {
		tag := uint16(i)
		var f *styx.Fcall
		switch i % 3 {
		case 0:
			f = &styx.Fcall{Type: styx.Tstat, Fid: 1}
		case 1:
			f = &styx.Fcall{Type: styx.Twalk, Fid: 1, Newfid: uint32(100 + i), Wname: []string{"dir", "x"}}
		case 2:
			f = &styx.Fcall{Type: styx.Tread, Fid: 2, Offset: uint64(i), Count: 512}
		}
		f.Tag = tag
		want[tag] = f.Type + 1
		frames[i] = frame(t, f)
	}
	got := make(chan error, 1)
	go func() {
		seen := make(map[uint16]bool, n)
		for len(seen) < n {
			rx, err := r.tryRecv(20 * time.Second)
			if err != nil {
				got <- fmt.Errorf("after %d replies: %v", len(seen), err)
				return
			}
			typ, ok := want[rx.Tag]
			switch {
			case !ok:
				got <- fmt.Errorf("reply with unknown tag: %v", rx)
				return
			case seen[rx.Tag]:
				got <- fmt.Errorf("second reply for tag %d: %v", rx.Tag, rx)
				return
			case rx.Type != typ:
				got <- fmt.Errorf("wrong reply for tag %d: %v", rx.Tag, rx)
				return
			}
			seen[rx.Tag] = true
		}
		got <- nil
	}()
	t0 := time.Now()
	if sent := <-pipeline(r.nc, frames); sent != n {
		t.Fatalf("wrote %d of %d requests", sent, n)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d back-to-back requests answered in %v", n, time.Since(t0))
	probe(t, addr, "after")
}

func TestAbuseBackToBack300(t *testing.T)  { backToBack(t, 300) }
func TestAbuseBackToBack1000(t *testing.T) { backToBack(t, 1000) }

// TestAbuseBadSize sends frames whose size field is impossible: the
// server must close that connection at once, without allocating for
// the size it was told.
func TestAbuseBadSize(t *testing.T) {
	addr := abuseServer(t)
	for _, size := range []uint32{0, 3, 6, 0xFFFFFFFF, styx.DefaultMsize + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r := rawDial(t, addr)
			r.session()
			m := watchMem()
			var b [11]byte
			binary.LittleEndian.PutUint32(b[:], size)
			b[4] = styx.Tstat
			r.write(b[:])
			probe(t, addr, "during")
			if _, err := r.closedByServer(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			m.check(t, fmt.Sprintf("size field %#x", size), 8<<20)
			probe(t, addr, "after")
		})
	}
}

// TestAbuseTruncatedFrame declares 1000 bytes and sends 11: the server
// must drop the connection once FrameTimeout has passed.
func TestAbuseTruncatedFrame(t *testing.T) {
	const timeout = 300 * time.Millisecond
	addr := abuseServer(t, func(s *styx.Server) { s.FrameTimeout = timeout })
	r := rawDial(t, addr)
	r.session()
	var b [11]byte
	binary.LittleEndian.PutUint32(b[:], 1000)
	b[4] = styx.Twrite
	t0 := time.Now()
	r.write(b[:])
	probe(t, addr, "during")
	if _, err := r.closedByServer(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	d := time.Since(t0)
	t.Logf("connection closed %v after the partial frame (FrameTimeout %v)", d, timeout)
	if d < timeout/2 {
		t.Errorf("connection closed after %v, before FrameTimeout %v", d, timeout)
	}
	probe(t, addr, "after")

	// An idle connection, between frames, is not timed out.
	r = rawDial(t, addr)
	r.session()
	time.Sleep(2 * timeout)
	r.expect(&styx.Fcall{Type: styx.Tstat, Tag: 2, Fid: 1}, styx.Rstat)
}

// TestAbuseMalformed sends frames that are wrong inside: each gets an
// Rerror and the connection goes on.
func TestAbuseMalformed(t *testing.T) {
	addr := abuseServer(t)
	r := rawDial(t, addr)
	r.session()
	alive := func() {
		t.Helper()
		r.expect(&styx.Fcall{Type: styx.Tstat, Tag: 9, Fid: 1}, styx.Rstat)
	}
	raw := func(typ uint8, tag uint16, body ...byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(7+len(body)))
		b = append(b, typ)
		b = binary.LittleEndian.AppendUint16(b, tag)
		return append(b, body...)
	}
	le32 := func(x uint32) []byte { return binary.LittleEndian.AppendUint32(nil, x) }
	for _, c := range []struct {
		name  string
		frame []byte
		ename string // expected Rerror text, or a prefix of it ending in "*"
	}{
		{"walk of 16 names with none present", raw(styx.Twalk, 3, append(append(le32(1), le32(2)...), 16, 0)...), "malformed Twalk: *"},
		{"walk of 17 names", raw(styx.Twalk, 3, append(append(le32(1), le32(2)...), 17, 0)...), "malformed Twalk: *"},
		{"type 200", raw(200, 4, 1, 2, 3), "malformed type200: *"},
		{"type 0, empty", raw(0, 4), "malformed type0: *"},
		{"Terror", raw(styx.Terror, 5), "malformed Terror: *"},
		{"reply type as request", frame(t, &styx.Fcall{Type: styx.Rclunk, Tag: 6}), "bad message type Rclunk"},
		{"stat with trailing bytes", raw(styx.Tstat, 7, append(le32(1), 0)...), "malformed Tstat: *"},
		{"string past the end", raw(styx.Tcreate, 8, append(le32(1), 0xff, 0xff, 'a')...), "malformed Tcreate: *"},
		{"stat of unknown fid", frame(t, &styx.Fcall{Type: styx.Tstat, Tag: 10, Fid: 77}), string(plan9.ErrUnknownFid)},
		{"clunk of unknown fid", frame(t, &styx.Fcall{Type: styx.Tclunk, Tag: 11, Fid: 77}), string(plan9.ErrUnknownFid)},
		{"read of unknown fid", frame(t, &styx.Fcall{Type: styx.Tread, Tag: 12, Fid: 77, Count: 10}), string(plan9.ErrUnknownFid)},
		{"duplicate fid on attach", frame(t, &styx.Fcall{Type: styx.Tattach, Tag: 13, Fid: 1, Afid: styx.NoFid, Uname: "glenda"}), string(plan9.ErrDupFid)},
		{"attach of NOFID", frame(t, &styx.Fcall{Type: styx.Tattach, Tag: 14, Fid: styx.NoFid, Afid: styx.NoFid, Uname: "glenda"}), string(plan9.ErrDupFid)},
		{"walk to a used newfid", frame(t, &styx.Fcall{Type: styx.Twalk, Tag: 15, Fid: 1, Newfid: 1, Wname: []string{"dir"}}), ""},
		{"tag NOTAG", frame(t, &styx.Fcall{Type: styx.Tstat, Tag: styx.NoTag, Fid: 1}), string(plan9.ErrDupTag)},
		{"auth", frame(t, &styx.Fcall{Type: styx.Tauth, Tag: 16, Afid: 5, Uname: "glenda"}), "authentication not required"},
		{"read of unopened fid", frame(t, &styx.Fcall{Type: styx.Tread, Tag: 17, Fid: 1, Count: 10}), string(plan9.ErrNotOpen)},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			r.t = t
			r.write(c.frame)
			rx := r.recv()
			tag := binary.LittleEndian.Uint16(c.frame[5:])
			if rx.Tag != tag {
				t.Fatalf("reply tag %d, want %d: %v", rx.Tag, tag, rx)
			}
			if c.ename == "" { // walking fid 1 to itself is allowed
				if rx.Type != styx.Rwalk {
					t.Fatalf("got %v", rx)
				}
				return
			}
			if rx.Type != styx.Rerror {
				t.Fatalf("got %v, want Rerror", rx)
			}
			if p, ok := strings.CutSuffix(c.ename, "*"); ok && !strings.HasPrefix(rx.Ename, p) || !ok && rx.Ename != c.ename {
				t.Fatalf("ename %q, want %q", rx.Ename, c.ename)
			}
			alive()
		})
	}
	r.t = t
	probe(t, addr, "after")
}

func TestAbuseVersions(t *testing.T) {
	addr := abuseServer(t)
	for _, c := range []struct {
		ask, want string
		msize     uint32
	}{
		{"9P2000", "9P2000", 8192},
		{"9P2000.L", "9P2000", 8192},
		{"9P2000.u", "9P2000", 8192},
		{"9P2000.anything", "9P2000", 8192},
		{"9P2025", "unknown", 8192},
		{"foo", "unknown", 8192},
		{"", "unknown", 8192},
		{"9P2000", "9P2000", 0xFFFFFFFF},
	} {
		r := rawDial(t, addr)
		rx := r.expect(&styx.Fcall{Type: styx.Tversion, Tag: styx.NoTag, Msize: c.msize, Version: c.ask}, styx.Rversion)
		if rx.Version != c.want || rx.Msize != min(c.msize, styx.DefaultMsize) {
			t.Errorf("Tversion %q msize %d: got %v, want version %q", c.ask, c.msize, rx, c.want)
		}
	}
	// Too small an msize is refused, and the connection goes on.
	r := rawDial(t, addr)
	rx := r.rpc(&styx.Fcall{Type: styx.Tversion, Tag: styx.NoTag, Msize: 100, Version: "9P2000"})
	if rx.Type != styx.Rerror {
		t.Errorf("msize 100: got %v", rx)
	}
	r.session()
	// A second Tversion resets the session: fid 1 is gone.
	r.version(8192)
	if rx := r.rpc(&styx.Fcall{Type: styx.Tstat, Tag: 1, Fid: 1}); rx.Type != styx.Rerror || rx.Ename != string(plan9.ErrUnknownFid) {
		t.Errorf("stat after re-version: %v", rx)
	}
	// The new msize holds: a frame larger than 8192 ends the connection.
	r.write(frame(t, &styx.Fcall{Type: styx.Twrite, Tag: 1, Fid: 1, Data: make([]byte, 9000)}))
	if _, err := r.closedByServer(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	probe(t, addr, "after")
}

// slowWriter is a tree of one file whose writes take a while.
type slowWriter struct {
	blocker
	delay time.Duration
	mu    sync.Mutex
	got   int
}

func (w *slowWriter) Write(ctx context.Context, p []byte, off int64) (int, error) {
	select {
	case <-time.After(w.delay):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	w.mu.Lock()
	w.got += len(p)
	w.mu.Unlock()
	return len(p), nil
}

// TestAbuseBackpressureIsNotTimeout: a client whose large frames wait
// for connection memory, because the server is slow, is not the slow
// one — the wait must not count against FrameTimeout, even when the
// frame's first bytes arrived in a segment of their own.
func TestAbuseBackpressureIsNotTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	w := &slowWriter{delay: 3 * timeout}
	addr := serve(t, styx.AttachFunc(func(ctx context.Context, u, a string, auth styx.File) (styx.File, error) {
		return w, nil
	}), func(s *styx.Server) {
		s.FrameTimeout = timeout
		s.ConnMemory = 1 // the minimum: two buffers of msize, 2 MiB each, four 1 MiB frames
	})
	r := rawDial(t, addr)
	r.session()
	r.expect(&styx.Fcall{Type: styx.Topen, Tag: 1, Fid: 1, Mode: styx.OWRITE}, styx.Ropen)
	data := make([]byte, 1<<20-100)
	for tag := uint16(10); tag < 14; tag++ {
		r.send(&styx.Fcall{Type: styx.Twrite, Tag: tag, Fid: 1, Data: data})
	}
	// The fifth frame's start comes alone, then the rest: the server
	// has read its header and waits for memory held by the first four.
	last := frame(t, &styx.Fcall{Type: styx.Twrite, Tag: 14, Fid: 1, Data: data})
	time.Sleep(50 * time.Millisecond)
	r.write(last[:2])
	time.Sleep(50 * time.Millisecond)
	r.write(last[2:])
	for range 5 {
		rx := r.recv()
		if rx.Type != styx.Rwrite || rx.Count != uint32(len(data)) {
			t.Fatalf("got %v", rx)
		}
	}
}

// TestAbuseNoGoroutineLeak opens and abandons connections mid-request.
func TestAbuseNoGoroutineLeak(t *testing.T) {
	addr := abuseServer(t)
	base := runtime.NumGoroutine()
	for i := range 50 {
		r := rawDial(t, addr)
		r.session()
		r.send(&styx.Fcall{Type: styx.Twalk, Tag: 1, Fid: 1, Newfid: 2, Wname: []string{"f64k"}})
		r.send(&styx.Fcall{Type: styx.Topen, Tag: 2, Fid: 2})
		r.send(&styx.Fcall{Type: styx.Tread, Tag: 3, Fid: 2, Count: 1 << 16})
		if i%2 == 0 {
			r.write(frame(t, &styx.Fcall{Type: styx.Tflush, Tag: 4, Oldtag: 3})[:5])
		}
		r.nc.Close()
	}
	settle(t, base)
	probe(t, addr, "after")
}
