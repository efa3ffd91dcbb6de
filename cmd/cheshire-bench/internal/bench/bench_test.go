package bench_test

// Side-by-side benchmarks of our server, go9p's fs server and 9fans'
// srv9p, all driven by our client over TCP loopback, with the loopback
// round trip as the floor. cmd/cheshire-bench runs the same
// measurements (this package) and prints them as one table.
//
//	go test -run='^$' -bench=. -benchtime=2s ./cmd/cheshire-bench/internal/bench
//	go test -run='^$' -bench=SeqRead ./cmd/cheshire-bench/internal/bench -bench.size=64MiB

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/cmd/cheshire-bench/internal/bench"
	"cheshire/plan9"
	"cheshire/styx"

	"9fans.net/go/plan9/client"
)

var benchSize = flag.String("bench.size", "256MiB", "bytes of the sequential read and write benchmarks")

func benchBytes(b *testing.B) int64 {
	s := *benchSize
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("bad -bench.size %q", *benchSize)
	}
	return n * mult
}

// eachServer runs f as a sub-benchmark per server, each serving t.
func eachServer(b *testing.B, t bench.Tree, f func(b *testing.B, s *bench.Server)) {
	for _, name := range bench.Names {
		var s *bench.Server // started once, for all of b.Run's rounds
		b.Run(name, func(b *testing.B) {
			if s == nil {
				var err error
				if s, err = bench.Start(name, t); err != nil {
					b.Fatal(err)
				}
			}
			f(b, s)
		})
		if s != nil {
			s.Close()
		}
	}
}

func benchDial(b *testing.B, s *bench.Server) (*styx.Client, *styx.Fid) {
	c, root, err := bench.Dial(context.Background(), s)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c, root
}

// reportLatency adds p50 and ops/s metrics from per-op latencies.
func reportLatency(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
}

// parallelOps runs b.N ops spread over conns workers, each with its own
// op (and connection), recording every op's latency.
func parallelOps(b *testing.B, conns int, newOp func() func() error) {
	ops := make([]func() error, conns)
	for i := range ops {
		ops[i] = newOp()
		for range 20 {
			if err := ops[i](); err != nil {
				b.Fatal(err)
			}
		}
	}
	lats := make([][]time.Duration, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for w := range conns {
		n := b.N / conns
		if w < b.N%conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, n)
			for range n {
				s := time.Now()
				if err := ops[w](); err != nil {
					errs[w] = err
					return
				}
				lat = append(lat, time.Since(s))
			}
			lats[w] = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	reportLatency(b, slices.Concat(lats...), elapsed)
}

// BenchmarkSmallOp: walk to /small, open, read 128 bytes, clunk. The
// floors: the canned server (nothing behind its replies) and tcp-rtt,
// four 1-byte ping-pongs a op.
func BenchmarkSmallOp(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			op := func(b *testing.B, s *bench.Server) {
				parallelOps(b, conns, func() func() error {
					_, root := benchDial(b, s)
					buf := make([]byte, 128)
					return func() error {
						n, err := bench.SmallOp(context.Background(), root, buf)
						if err == nil && n != 128 {
							err = fmt.Errorf("read %d bytes", n)
						}
						return err
					}
				})
			}
			eachServer(b, bench.Tree{SmallSize: 128}, op)
			b.Run("canned", func(b *testing.B) { onCanned(b, op) })
			b.Run("tcp-rtt", func(b *testing.B) { fourRTT(b, conns) })
		})
	}
}

// BenchmarkSmallOp9fans is BenchmarkSmallOp on one connection driven
// by 9fans.net/go/plan9/client, a client we did not write (it reads
// replies on the caller's goroutine, electing a reader among callers,
// a frame in two reads from the socket). Its floors, in the same run:
// the canned server (bench.StartCanned: replies made up on the reading
// goroutine, nothing behind them) and four TCP round trips.
func BenchmarkSmallOp9fans(b *testing.B) {
	eachServer(b, bench.Tree{SmallSize: 128}, smallOp9fans)
	b.Run("canned", func(b *testing.B) { onCanned(b, smallOp9fans) })
	b.Run("tcp-rtt", func(b *testing.B) { fourRTT(b, 1) })
}

// onCanned runs op against the canned server, serving 128 bytes.
func onCanned(b *testing.B, op func(b *testing.B, s *bench.Server)) {
	s, err := bench.StartCanned(128)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	op(b, s)
}

// fourRTT is the floor of the small op: four 1-byte ping-pongs with
// an echo server an op, on conns connections.
func fourRTT(b *testing.B, conns int) {
	addr, stop, err := bench.StartEcho()
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	parallelOps(b, conns, func() func() error {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { nc.Close() })
		var p [1]byte
		return func() error {
			for range 4 {
				if _, err := nc.Write(p[:]); err != nil {
					return err
				}
				if _, err := io.ReadFull(nc, p[:]); err != nil {
					return err
				}
			}
			return nil
		}
	})
}

// smallOp9fans is the small op by the 9fans client, on one connection.
func smallOp9fans(b *testing.B, s *bench.Server) {
	parallelOps(b, 1, func() func() error {
		conn, err := client.Dial("tcp", s.Addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		root, err := conn.Attach(nil, bench.User, "")
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 128)
		return func() error {
			f, err := root.Open("small", plan9.OREAD) // walk, open
			if err != nil {
				return err
			}
			n, err := f.ReadAt(buf, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil && n != 128 {
				err = fmt.Errorf("read %d bytes", n)
			}
			return err
		}
	})
}

// BenchmarkSeqRead reads /big from start to end with ReadAt (8 Treads
// of an iounit in flight) per op.
func BenchmarkSeqRead(b *testing.B) {
	size := benchBytes(b)
	eachServer(b, bench.Tree{SmallSize: 128, BigSize: size}, func(b *testing.B, s *bench.Server) {
		ctx := context.Background()
		_, root := benchDial(b, s)
		_, f, err := root.Walk(ctx, "big")
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Open(ctx, styx.OREAD); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, size)
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			if n, err := f.ReadAt(ctx, buf, 0); int64(n) != size {
				b.Fatalf("read %d bytes: %v", n, err)
			}
		}
	})
}

// BenchmarkSeqWrite creates a file in /w and writes size bytes to it
// with WriteAt (8 Twrites of an iounit in flight) per op.
func BenchmarkSeqWrite(b *testing.B) {
	size := benchBytes(b)
	data := bench.Pattern(size)
	eachServer(b, bench.Tree{SmallSize: 128}, func(b *testing.B, s *bench.Server) {
		ctx := context.Background()
		_, root := benchDial(b, s)
		b.SetBytes(size)
		b.ResetTimer()
		for i := range b.N {
			_, f, err := root.Walk(ctx, "w")
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Create(ctx, fmt.Sprint("seq", i), 0666, styx.OWRITE); err != nil {
				b.Fatal(err)
			}
			if n, err := f.WriteAt(ctx, data, 0); int64(n) != size || err != nil {
				b.Fatalf("wrote %d bytes: %v", n, err)
			}
			b.StopTimer()
			if err := f.Remove(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

// BenchmarkStat1000 stats the 1,000 files of /stat one after another
// (walk, stat, clunk each) per op.
func BenchmarkStat1000(b *testing.B) {
	const n = 1000
	eachServer(b, bench.Tree{SmallSize: 128, NStat: n}, func(b *testing.B, s *bench.Server) {
		ctx := context.Background()
		_, root := benchDial(b, s)
		b.ResetTimer()
		for range b.N {
			for i := range n {
				_, f, err := root.Walk(ctx, "stat", bench.StatName(i))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.Stat(ctx); err != nil {
					b.Fatal(err)
				}
				f.Clunk(ctx)
			}
		}
	})
}

// BenchmarkList10000 lists the 10,000 entries of /list per op.
func BenchmarkList10000(b *testing.B) {
	const n = 10000
	eachServer(b, bench.Tree{SmallSize: 128, NList: n}, func(b *testing.B, s *bench.Server) {
		ctx := context.Background()
		_, root := benchDial(b, s)
		b.ResetTimer()
		for range b.N {
			_, f, err := root.Walk(ctx, "list")
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Open(ctx, styx.OREAD); err != nil {
				b.Fatal(err)
			}
			ds, err := f.ReadDir(ctx)
			if err != nil || len(ds) != n {
				b.Fatalf("listed %d entries: %v", len(ds), err)
			}
			f.Clunk(ctx)
		}
	})
}
