package tests

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"cheshire/styx"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fuseBenchSize is the file BenchmarkFUSESequentialRead and
// BenchmarkFUSESequentialWrite move through each path.
const fuseBenchSize = 1 << 30

// BenchmarkFUSESequentialRead reads a 1 GiB file of the node's /tmp
// through `cheshire mount` with 1 MiB read(2)s, each time from a cold
// page cache (the mount's pages of the file are dropped first), and in
// the same iteration the anchors: the same bytes in a tmpfs file read
// through go-fuse's own loopback file system (fs.NewLoopbackRoot, also
// cold: it does not keep the cache across opens), and read directly
// (the kernel's page-cache copy, the floor). Run:
//
//	go build -o cheshire ./cmd/cheshire
//	CHESHIRE_BIN=$PWD/cheshire go test -run '^$' -bench FUSESequential -benchtime 1x -count 5 ./tests
func BenchmarkFUSESequentialRead(b *testing.B) {
	n, data, shm, loop := fuseBenchSetup(b)
	ctx := context.Background()
	d, err := n.client(userName(b)).WalkPath(ctx, "/tmp")
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Create(ctx, "big", 0644, styx.OWRITE); err != nil {
		b.Fatal(err)
	}
	if _, err := d.WriteAt(ctx, data, 0); err != nil {
		b.Fatal(err)
	}
	if err := d.Clunk(ctx); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(shm+"/big", data, 0644); err != nil {
		b.Fatal(err)
	}
	m := mountB(b, n)
	paths := []string{m + "/tmp/big", loop + "/big", shm + "/big"}
	var sum [3]float64
	for b.Loop() {
		for i, p := range paths {
			sum[i] += fuseBenchRead(b, p)
		}
	}
	fuseBenchReport(b, sum)
}

// BenchmarkFUSESequentialWrite writes a new 1 GiB file with 1 MiB
// write(2)s through `cheshire mount` into the node's /tmp, closing it
// within the time, against the same through go-fuse's loopback over
// tmpfs and directly into tmpfs, in the same iteration. Run as
// BenchmarkFUSESequentialRead.
func BenchmarkFUSESequentialWrite(b *testing.B) {
	n, data, shm, loop := fuseBenchSetup(b)
	m := mountB(b, n)
	paths := []string{m + "/tmp/w", loop + "/w", shm + "/w"}
	var sum [3]float64
	for b.Loop() {
		for i, p := range paths {
			sum[i] += fuseBenchWrite(b, p, data)
		}
	}
	fuseBenchReport(b, sum)
}

// fuseBenchSetup starts a node and returns it, the benchmark's bytes, a
// tmpfs directory and the mount point of go-fuse's loopback file system
// over that directory (MaxWrite 1 MiB as `cheshire mount`, no
// passthrough; go-fuse's defaults otherwise, splice included).
func fuseBenchSetup(b *testing.B) (n *node, data []byte, shm, loop string) {
	b.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skip("no /dev/fuse")
	}
	var err error
	shm, err = os.MkdirTemp("/dev/shm", "chbench")
	if err != nil {
		b.Skipf("no tmpfs at /dev/shm: %v", err)
	}
	b.Cleanup(func() { os.RemoveAll(shm) })
	n = startNode(b, shortTemp(b))
	data = make([]byte, fuseBenchSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	root, err := fs.NewLoopbackRoot(shm)
	if err != nil {
		b.Fatal(err)
	}
	loop = shortTemp(b) + "/loop"
	if err := os.Mkdir(loop, 0755); err != nil {
		b.Fatal(err)
	}
	srv, err := fs.Mount(loop, root, &fs.Options{MountOptions: fuse.MountOptions{
		MaxWrite:    1 << 20,
		DirectMount: os.Geteuid() == 0,
		FsName:      "loopback",
		// Passthrough (the kernel reading the backing file itself,
		// as root on Linux 6.9 and later) would measure tmpfs, not
		// a FUSE server.
		DisabledCapabilities: fuse.CAP_PASSTHROUGH,
	}})
	if err != nil {
		b.Fatalf("loopback mount: %v", err)
	}
	b.Cleanup(func() { srv.Unmount() })
	return n, data, shm, loop
}

// fuseBenchRead reads p whole with 1 MiB reads from a cold page cache
// and returns GB/s.
func fuseBenchRead(b *testing.B, p string) float64 {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// Drop the pages of the file: on a FUSE mount the next read goes
	// to the file system (on tmpfs this does nothing).
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatalf("fadvise %s: %v", p, err)
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	total := 0
	for {
		k, err := f.Read(buf)
		total += k
		if err != nil || k == 0 {
			break
		}
	}
	el := time.Since(start)
	if total != fuseBenchSize {
		b.Fatalf("%s: read %d bytes, want %d", p, total, fuseBenchSize)
	}
	return float64(total) / el.Seconds() / 1e9
}

// fuseBenchWrite writes data to a new file p with 1 MiB writes, closes
// it and returns GB/s; it then removes p.
func fuseBenchWrite(b *testing.B, p string, data []byte) float64 {
	b.Helper()
	start := time.Now()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0644)
	if err != nil {
		b.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := f.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			b.Fatalf("write %s: %v", p, err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatalf("close %s: %v", p, err)
	}
	el := time.Since(start)
	if err := os.Remove(p); err != nil {
		b.Fatal(err)
	}
	return float64(len(data)) / el.Seconds() / 1e9
}

// fuseBenchReport reports the mean GB/s of cheshire, the loopback and
// tmpfs, and cheshire's ratios to the other two.
func fuseBenchReport(b *testing.B, sum [3]float64) {
	k := float64(b.N)
	b.ReportMetric(sum[0]/k, "cheshire-GB/s")
	b.ReportMetric(sum[1]/k, "loopback-GB/s")
	b.ReportMetric(sum[2]/k, "tmpfs-GB/s")
	b.ReportMetric(sum[0]/sum[1], "x-loopback")
	b.ReportMetric(sum[0]/sum[2], "x-tmpfs")
}

func userName(t testing.TB) string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

func mountB(b *testing.B, n *node) string {
	b.Helper()
	mnt := shortTemp(b) + "/mnt"
	os.Mkdir(mnt, 0755)
	if _, err := n.run("", "mount", mnt); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.run("", "umount", mnt) })
	return mnt
}

// BenchmarkRemoteSequentialRead reads a 64 MiB file of node B from node
// A's namespace, where A imported B's export by key (9P over mutual TLS
// between the two processes), against the anchor in the same run: the
// same file read from B's own namespace on its unix socket. Both reads
// use the same client and 1 MiB Treads, one at a time and eight in
// flight. The target is a ratio of at least 0.7. Run:
//
//	go test -run '^$' -bench RemoteSequentialRead -benchtime 5x ./tests
func BenchmarkRemoteSequentialRead(b *testing.B) {
	const size = 64 << 20
	cl := startCluster(b, 2)
	bn, an := cl.nodes[0], cl.nodes[1]
	ctx := context.Background()
	broot := bn.client(userName(b))
	if _, err := bn.run("", "9p", "create", "/tmp/pub/"); err != nil {
		b.Fatal(err)
	}
	d, err := broot.WalkPath(ctx, "/tmp/pub")
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Create(ctx, "big", 0644, styx.OWRITE); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := d.WriteAt(ctx, data, 0); err != nil {
		b.Fatal(err)
	}
	d.Clunk(ctx)
	if err := bn.ctl("/ns/ctl", "export /tmp/pub rw to *"); err != nil {
		b.Fatal(err)
	}
	bn.published(1)
	if _, err := an.run("", "import", bn.key, "/n/b"); err != nil {
		b.Fatal(err)
	}
	aroot := an.client(userName(b))
	read := func(root *styx.Fid, p string, chunk int) float64 {
		f, err := root.WalkPath(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Clunk(ctx)
		if err := f.Open(ctx, styx.OREAD); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, chunk)
		start := time.Now()
		total := 0
		for off := int64(0); ; {
			k, err := f.ReadAt(ctx, buf, off)
			total += k
			off += int64(k)
			if err != nil || k == 0 {
				break
			}
		}
		if total != size {
			b.Fatalf("%s: read %d bytes, want %d", p, total, size)
		}
		return float64(size) / time.Since(start).Seconds() / 1e9
	}
	// One 1 MiB Tread at a time, then eight (a reader with readahead).
	for _, inflight := range []int{1, 8} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			var remote, local float64
			for range b.N {
				remote += read(aroot, "/n/b/tmp/pub/big", inflight<<20)
				local += read(broot, "/tmp/pub/big", inflight<<20)
			}
			b.ReportMetric(remote/float64(b.N), "remote-GB/s")
			b.ReportMetric(local/float64(b.N), "local-GB/s")
			b.ReportMetric(remote/local, "ratio")
		})
	}
}
