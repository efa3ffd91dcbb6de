package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/styx"
)

// Dial connects styx's client to s and attaches as User.
func Dial(ctx context.Context, s *Server) (*styx.Client, *styx.Fid, error) {
	c, err := styx.Dial(ctx, s.DialString())
	if err != nil {
		return nil, nil, err
	}
	root, err := c.Attach(ctx, nil, User, "")
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, root, nil
}

// SmallOp is the small operation: walk to /small, open it, read up to
// len(buf) bytes from offset 0 and clunk — four round trips.
func SmallOp(ctx context.Context, root *styx.Fid, buf []byte) (int, error) {
	_, f, err := root.Walk(ctx, "small")
	if err != nil {
		return 0, err
	}
	if err := f.Open(ctx, styx.OREAD); err != nil {
		f.Clunk(ctx)
		return 0, err
	}
	n, err := f.ReadOnce(ctx, buf, 0)
	if cerr := f.Clunk(ctx); err == nil {
		err = cerr
	}
	return n, err
}

// Latency summarizes timed operations.
type Latency struct {
	N        int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// PerSec is the rate of operations.
func (l Latency) PerSec() float64 {
	if l.Elapsed <= 0 {
		return 0
	}
	return float64(l.N) / l.Elapsed.Seconds()
}

func summarize(lat []time.Duration, elapsed time.Duration) Latency {
	slices.Sort(lat)
	l := Latency{N: len(lat), Elapsed: elapsed}
	if len(lat) > 0 {
		l.P50 = lat[len(lat)/2]
		l.P99 = lat[len(lat)*99/100]
	}
	return l
}

// runWorkers runs op on conns workers for dur (after warm ops each),
// and returns the latency of every op.
func runWorkers(conns int, dur time.Duration, warm int, setup func(i int) (op func() error, done func(), err error)) (Latency, error) {
	ops := make([]func() error, conns)
	for i := range ops {
		op, done, err := setup(i)
		if err != nil {
			return Latency{}, err
		}
		defer done()
		for range warm {
			if err := op(); err != nil {
				return Latency{}, err
			}
		}
		ops[i] = op
	}
	lats := make([][]time.Duration, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	var stop atomic.Bool
	start := time.Now()
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<16)
			for !stop.Load() {
				t0 := time.Now()
				if err := op(); err != nil {
					errs[i] = err
					return
				}
				lat = append(lat, time.Since(t0))
			}
			lats[i] = lat
		}()
	}
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for i := range lats {
		if errs[i] != nil {
			return Latency{}, errs[i]
		}
		all = append(all, lats[i]...)
	}
	return summarize(all, elapsed), nil
}

// MeasureSmallOp runs SmallOp reading 128 bytes on conns connections,
// one goroutine each, for dur.
func MeasureSmallOp(s *Server, conns int, dur time.Duration) (Latency, error) {
	ctx := context.Background()
	return runWorkers(conns, dur, 50, func(int) (func() error, func(), error) {
		c, root, err := Dial(ctx, s)
		if err != nil {
			return nil, nil, err
		}
		buf := make([]byte, 128)
		op := func() error {
			n, err := SmallOp(ctx, root, buf)
			if err == nil && n != 128 {
				err = fmt.Errorf("%s: small op read %d bytes, want 128", s.Name, n)
			}
			return err
		}
		return op, func() { c.Close() }, nil
	})
}

// StartEcho starts a loopback TCP server that echoes every byte; it
// returns its address and a function that stops it.
func StartEcho() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(nc, nc)
				nc.Close()
			}()
		}
	}()
	stop := func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	return l.Addr().String(), stop, nil
}

// MeasureRTTAt measures the loopback TCP round trip, a 1-byte
// ping-pong, against the echo server at addr (see StartEcho) on conns
// connections for dur: the floor under any 9P round trip.
func MeasureRTTAt(addr string, conns int, dur time.Duration) (Latency, error) {
	return runWorkers(conns, dur, 100, func(int) (func() error, func(), error) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		var b [1]byte
		op := func() error {
			if _, err := nc.Write(b[:]); err != nil {
				return err
			}
			_, err := io.ReadFull(nc, b[:])
			return err
		}
		return op, func() { nc.Close() }, nil
	})
}

// Throughput is the result of a sequential transfer.
type Throughput struct {
	Bytes   int64
	Elapsed time.Duration
}

// GBps is the rate in decimal gigabytes per second.
func (t Throughput) GBps() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Bytes) / t.Elapsed.Seconds() / 1e9
}

// MeasureSeqRead reads /big (size bytes) from offset 0 to the end with
// Fid.ReadAt, which keeps 8 Treads of an iounit each in flight (1 MiB
// against cheshire and srv9p, go9p's 16 KiB iounit against go9p),
// reps times over one connection, and checks the data once.
func MeasureSeqRead(s *Server, size int64, reps int) (Throughput, error) {
	ctx := context.Background()
	c, root, err := Dial(ctx, s)
	if err != nil {
		return Throughput{}, err
	}
	defer c.Close()
	_, f, err := root.Walk(ctx, "big")
	if err != nil {
		return Throughput{}, err
	}
	if err := f.Open(ctx, styx.OREAD); err != nil {
		return Throughput{}, err
	}
	buf := make([]byte, size)
	var elapsed time.Duration
	for i := 0; i < reps; i++ {
		t0 := time.Now()
		n, err := f.ReadAt(ctx, buf, 0)
		elapsed += time.Since(t0)
		if err != nil && err != io.EOF || int64(n) != size {
			return Throughput{}, fmt.Errorf("%s: read %d of %d bytes: %v", s.Name, n, size, err)
		}
		if i == 0 && !bytes.Equal(buf, Pattern(size)) {
			return Throughput{}, fmt.Errorf("%s: /big read back wrong", s.Name)
		}
	}
	return Throughput{Bytes: size * int64(reps), Elapsed: elapsed}, nil
}

// MeasureSeqWrite creates /w/seqN and writes size bytes to it with
// Fid.WriteAt (8 Twrites of an iounit each in flight), reps times,
// removing each file afterwards (untimed).
func MeasureSeqWrite(s *Server, size int64, reps int) (Throughput, error) {
	ctx := context.Background()
	c, root, err := Dial(ctx, s)
	if err != nil {
		return Throughput{}, err
	}
	defer c.Close()
	data := Pattern(size)
	var elapsed time.Duration
	for i := 0; i < reps; i++ {
		_, f, err := root.Walk(ctx, "w")
		if err != nil {
			return Throughput{}, err
		}
		t0 := time.Now()
		if err := f.Create(ctx, fmt.Sprintf("seq%d", i), 0666, styx.OWRITE); err != nil {
			return Throughput{}, err
		}
		n, err := f.WriteAt(ctx, data, 0)
		elapsed += time.Since(t0)
		if err != nil || int64(n) != size {
			return Throughput{}, fmt.Errorf("%s: wrote %d of %d bytes: %v", s.Name, n, size, err)
		}
		if err := f.Remove(ctx); err != nil {
			return Throughput{}, fmt.Errorf("%s: remove: %v", s.Name, err)
		}
	}
	return Throughput{Bytes: size * int64(reps), Elapsed: elapsed}, nil
}

// MeasureStat stats the n files of /stat, each by walking to it from
// the root (one Twalk of two names), Tstat and Tclunk: three round
// trips a file. With par > 1, par goroutines share the files and the
// one connection, pipelining their requests. It returns the median
// time of reps passes.
func MeasureStat(s *Server, n, par, reps int) (time.Duration, error) {
	ctx := context.Background()
	c, root, err := Dial(ctx, s)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stat1 := func(i int) error {
		_, f, err := root.Walk(ctx, "stat", StatName(i))
		if err != nil {
			return err
		}
		d, err := f.Stat(ctx)
		if cerr := f.Clunk(ctx); err == nil {
			err = cerr
		}
		if err == nil && d.Name != StatName(i) {
			err = fmt.Errorf("%s: stat of %s gave %q", s.Name, StatName(i), d.Name)
		}
		return err
	}
	pass := func() error {
		var next atomic.Int64
		errs := make([]error, par)
		var wg sync.WaitGroup
		for w := range par {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					if err := stat1(i); err != nil {
						errs[w] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	return medianOf(reps, pass)
}

// MeasureList lists /list (n entries): walk, open, read the whole
// directory and clunk. It returns the median time of reps listings.
func MeasureList(s *Server, n, reps int) (time.Duration, error) {
	ctx := context.Background()
	c, root, err := Dial(ctx, s)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return medianOf(reps, func() error {
		_, f, err := root.Walk(ctx, "list")
		if err != nil {
			return err
		}
		defer f.Clunk(ctx)
		if err := f.Open(ctx, styx.OREAD); err != nil {
			return err
		}
		ds, err := f.ReadDir(ctx)
		if err != nil {
			return err
		}
		if len(ds) != n {
			return fmt.Errorf("%s: listed %d entries, want %d", s.Name, len(ds), n)
		}
		return nil
	})
}

func medianOf(reps int, f func() error) (time.Duration, error) {
	if err := f(); err != nil { // warm-up
		return 0, err
	}
	ds := make([]time.Duration, 0, reps)
	for range reps {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// MeasureStream measures the loopback TCP floor under the sequential
// transfers: size bytes sent in 1 MiB writes from one in-memory buffer
// and read into another with io.ReadFull, from a server goroutine
// (the read floor) and to it (the write floor), reps times each.
func MeasureStream(size int64, reps int) (read, write Throughput, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	defer l.Close()
	src := Pattern(size)
	sink := make([]byte, size)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		var cmd [1]byte
		for {
			if _, err := io.ReadFull(nc, cmd[:]); err != nil {
				return
			}
			if cmd[0] == 'r' { // send size bytes
				for off := int64(0); off < size; off += 1 << 20 {
					if _, err := nc.Write(src[off:min(off+1<<20, size)]); err != nil {
						return
					}
				}
				continue
			}
			if _, err := io.ReadFull(nc, sink); err != nil { // receive, then ack
				return
			}
			if _, err := nc.Write(cmd[:]); err != nil {
				return
			}
		}
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return
	}
	defer nc.Close()
	dst := make([]byte, size)
	for i := 0; i <= reps; i++ { // the first pass warms up
		t0 := time.Now()
		if _, err = nc.Write([]byte{'r'}); err != nil {
			return
		}
		if _, err = io.ReadFull(nc, dst); err != nil {
			return
		}
		if i > 0 {
			read.Elapsed += time.Since(t0)
			read.Bytes += size
		}
	}
	var ack [1]byte
	for i := 0; i <= reps; i++ {
		t0 := time.Now()
		if _, err = nc.Write([]byte{'w'}); err != nil {
			return
		}
		for off := int64(0); off < size; off += 1 << 20 {
			if _, err = nc.Write(src[off:min(off+1<<20, size)]); err != nil {
				return
			}
		}
		if _, err = io.ReadFull(nc, ack[:]); err != nil {
			return
		}
		if i > 0 {
			write.Elapsed += time.Since(t0)
			write.Bytes += size
		}
	}
	return read, write, nil
}
