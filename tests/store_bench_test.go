package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/styx"
)

// BenchmarkStore writes and reads a file of /store across 5 local node
// processes, k=3 m=2, written and read through node A's unix socket,
// against one-stream loopback TCP measured in the same run. It reports
// the write and the read as ratios of the TCP rate (targets ≥ 0.35 and
// ≥ 0.5); the floors of this machine beside them, as ratios of TCP and
// of the store to them (diskFloor: the fragments' bytes written and
// synced alone; writeFloor and readFloor: the work alone,
// store_floor_test.go); node A's RSS above idle during the write
// (target ≤ 128 MiB); the time to the first byte of a read against a
// read of the same file in /tmp; the clunk's time; and the CPU a MiB
// written and read that the 5 nodes, the benchmark's client and the
// whole machine (with the kernel's writeback) used, the steadier
// figures on a shared machine. STORE_BENCH_MIB sets the size (default
// 64); CHESHIRE_PROFILE_DIR=DIR has each node write CPU, blocking and
// mutex profiles there as it stops, its CPU profile cut into phases:
// cpu-PID.1.prof is the write, cpu-PID.2.prof the read. Run:
//
//	STORE_BENCH_MIB=256 go test -run '^$' -bench Store -benchtime 1x ./tests
func BenchmarkStore(b *testing.B) {
	size := 64 << 20
	if v, err := strconv.Atoi(os.Getenv("STORE_BENCH_MIB")); err == nil && v > 0 {
		size = v << 20
	}
	cl := startCluster(b, 5)
	storeMesh(b, cl)
	for _, m := range cl.nodes {
		m.published(1)
	}
	a := cl.nodes[0]
	if err := a.ctl("/store/ctl", "policy k=3 m=2"); err != nil {
		b.Fatal(err)
	}
	// Content no codec could shrink, made fast: crypto/rand took 12 s
	// for 1 GiB, in calls the GC could not stop.
	data := make([]byte, size)
	mrand.NewChaCha8([32]byte{1}).Read(data)
	local := filepath.Join(b.TempDir(), "local")
	if err := os.WriteFile(local, data, 0600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var wRate, rRate, tcp, disk, rss, ttfb, ttfbLocal, wCPU, rCPU, wAll, rAll, wSelf, rSelf, commit, wFloor, rFloor, wFloorCPU, rFloorCPU float64
	for i := range b.N {
		tcp += loopbackTCP(b, data)
		disk += diskFloor(b, size, 3, 2)
		rate, cpu := writeFloor(b, data, 3, 2)
		wFloor += rate
		wFloorCPU += cpu
		rate, cpu = readFloor(b, data, 3)
		rFloor += rate
		rFloorCPU += cpu
		idle := rssOf(a)
		stop := make(chan struct{})
		peak := make(chan int64)
		go func() {
			var max int64
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				if r := rssOf(a); r > max {
					max = r
				}
				select {
				case <-stop:
					peak <- max
					return
				case <-t.C:
				}
			}
		}()
		name := fmt.Sprintf("/store/big%d", i)
		phase(cl)
		cpu0, all0, self0 := cpuOf(cl), machineCPU(), testutil.SelfCPU().Seconds()
		start := time.Now()
		clunk, err := storeWriteTimed(b, a, name, data)
		if err != nil {
			b.Fatal(err)
		}
		wRate += float64(size) / time.Since(start).Seconds()
		commit += clunk.Seconds()
		cpu1, all1, self1 := cpuOf(cl), machineCPU(), testutil.SelfCPU().Seconds()
		wCPU += cpu1 - cpu0
		wAll += all1 - all0
		wSelf += self1 - self0
		close(stop)
		rss += float64(<-peak - idle)
		phase(cl)

		f, err := a.client(userName(b)).WalkPath(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		// The first 1 MiB alone (time to first byte), then 8 MiB
		// ReadAts: 8 Treads of 1 MiB in flight, as the kernel's
		// read-ahead keeps several.
		buf := make([]byte, 8<<20)
		// Its pages touched first, as they are for the read of /tmp
		// below: on this VM the faults of 1 MiB of fresh memory took
		// 5.6 ms, a quarter of the time to the first byte.
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1
		}
		start = time.Now()
		if err := f.Open(ctx, styx.OREAD); err != nil {
			b.Fatal(err)
		}
		total := 0
		for off := int64(0); ; {
			p := buf
			if off == 0 {
				p = buf[:1<<20]
			}
			k, err := f.ReadAt(ctx, p, off)
			if off == 0 {
				ttfb += time.Since(start).Seconds()
			}
			if !bytes.Equal(buf[:k], data[off:off+int64(k)]) {
				b.Fatalf("bytes at %d differ", off)
			}
			total += k
			off += int64(k)
			if err != nil || k == 0 {
				break
			}
		}
		rRate += float64(size) / time.Since(start).Seconds()
		rCPU += cpuOf(cl) - cpu1
		rAll += machineCPU() - all1
		rSelf += testutil.SelfCPU().Seconds() - self1
		phase(cl)
		f.Clunk(ctx)
		if total != size {
			b.Fatalf("read %d bytes of %d", total, size)
		}
		start = time.Now()
		lf, err := os.Open(local)
		if err != nil {
			b.Fatal(err)
		}
		lf.Read(buf[:1<<20])
		ttfbLocal += time.Since(start).Seconds()
		lf.Close()
	}
	n := float64(b.N)
	b.ReportMetric(wRate/n/1e6, "write-MB/s")
	b.ReportMetric(rRate/n/1e6, "read-MB/s")
	b.ReportMetric(tcp/n/1e6, "tcp-MB/s")
	b.ReportMetric(wRate/tcp, "write-ratio")
	b.ReportMetric(disk/n/1e6, "disk-floor-MB/s")
	b.ReportMetric(disk/tcp, "disk-floor-ratio")
	b.ReportMetric(wRate/disk, "write-vs-disk")
	b.ReportMetric(rRate/tcp, "read-ratio")
	b.ReportMetric(wFloor/n/1e6, "write-floor-MB/s")
	b.ReportMetric(wFloor/tcp, "write-floor-ratio")
	b.ReportMetric(wRate/wFloor, "write-vs-floor")
	b.ReportMetric(rFloor/n/1e6, "read-floor-MB/s")
	b.ReportMetric(rFloor/tcp, "read-floor-ratio")
	b.ReportMetric(rRate/rFloor, "read-vs-floor")
	b.ReportMetric(rss/n/(1<<20), "rss-MiB-above-idle")
	b.ReportMetric(ttfb/n*1e3, "ttfb-ms")
	b.ReportMetric(ttfbLocal/n*1e3, "ttfb-tmp-ms")
	b.ReportMetric(commit/n*1e3, "write-clunk-ms")
	perMiB := func(seconds float64) float64 { return seconds / n / float64(size>>20) * 1e3 }
	b.ReportMetric(perMiB(wCPU), "write-node-cpu-ms/MiB")
	b.ReportMetric(perMiB(rCPU), "read-node-cpu-ms/MiB")
	b.ReportMetric(perMiB(wAll), "write-all-cpu-ms/MiB")
	b.ReportMetric(perMiB(rAll), "read-all-cpu-ms/MiB")
	b.ReportMetric(perMiB(wSelf), "write-client-cpu-ms/MiB")
	b.ReportMetric(perMiB(rSelf), "read-client-cpu-ms/MiB")
	b.ReportMetric(perMiB(wFloorCPU), "write-floor-cpu-ms/MiB")
	b.ReportMetric(perMiB(rFloorCPU), "read-floor-cpu-ms/MiB")
}

// phase starts the next CPU profile of each node when they profile
// (CHESHIRE_PROFILE_DIR; cmd/cheshire/profile.go).
func phase(cl *cluster) {
	if os.Getenv("CHESHIRE_PROFILE_DIR") == "" {
		return
	}
	for _, m := range cl.nodes {
		m.cmd.Process.Signal(syscall.SIGUSR1)
	}
}

// machineCPU is the CPU time the whole machine has used, in seconds:
// every process (the nodes, the benchmark's client, the kernel's
// threads that write to disk) and interrupts, all but idle and iowait
// (the cpu line of /proc/stat).
func machineCPU() float64 {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // guest time is counted in user already
			break
		}
		t, _ := strconv.ParseInt(v, 10, 64)
		ticks += t
	}
	return float64(ticks) / 100 // USER_HZ
}

// cpuOf is the CPU time, user and system, the nodes of cl have used, in
// seconds.
func cpuOf(cl *cluster) float64 {
	var ticks int64
	for _, m := range cl.nodes {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses:
		// utime and stime are the 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, v := range f[11:13] {
			t, _ := strconv.ParseInt(v, 10, 64)
			ticks += t
		}
	}
	return float64(ticks) / 100 // USER_HZ
}

// storeWriteTimed is storeWrite, and how long the clunk (the durable
// acknowledgement, after the last write) took.
func storeWriteTimed(b *testing.B, m *member, path string, data []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, name := filepath.Split(path)
	d, err := m.client(userName(b)).WalkPath(ctx, dir)
	if err != nil {
		return 0, err
	}
	if err := d.Create(ctx, name, 0600, styx.OWRITE); err != nil {
		return 0, err
	}
	if _, err := d.WriteAt(ctx, data, 0); err != nil {
		d.Clunk(ctx)
		return 0, err
	}
	start := time.Now()
	err = d.Clunk(ctx)
	return time.Since(start), err
}

// loopbackTCP sends data over one loopback TCP connection and returns
// bytes a second.
func loopbackTCP(b *testing.B, data []byte) float64 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	var got int64
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ = io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	c.Write(data)
	c.Close()
	wg.Wait()
	if got != int64(len(data)) {
		b.Fatalf("tcp: %d bytes of %d", got, len(data))
	}
	return float64(len(data)) / time.Since(start).Seconds()
}

// diskFloor is the floor of a durable write of size bytes coded k+m
// here: the k+m fragments' bytes ((k+m)/k of size) written by k+m
// writers at once, each to a file of its own in pieces of 256 KiB and
// then fsynced, as the holders do, with no network, hashing or coding.
// It returns content bytes a second (size over the time).
func diskFloor(b *testing.B, size, k, m int) float64 {
	dir := b.TempDir()
	piece := make([]byte, 256<<10)
	rand.Read(piece)
	per := size / k
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, k+m)
	for i := range k + m {
		wg.Go(func() {
			f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for off := 0; off < per; off += len(piece) {
				if _, err := f.WriteAt(piece[:min(len(piece), per-off)], int64(off)); err != nil {
					errs <- err
					return
				}
			}
			if err := f.Sync(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	os.RemoveAll(dir)
	return float64(size) / el.Seconds()
}

// rssOf is m's resident set in bytes.
func rssOf(m *member) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
