package tests

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"cheshire/styx"
)

// BenchmarkFUSESequentialRead reads a 256 MiB file of /tmp through
// `cheshire mount` with 1 MiB reads, against the same read of the same
// bytes from the page cache of a local file as the anchor. Run:
//
//	go test -run '^$' -bench FUSESequentialRead -benchtime 3x ./tests
func BenchmarkFUSESequentialRead(b *testing.B) {
	const size = 256 << 20
	n := startNode(b, shortTemp(b))
	root := n.client(userName(b))
	ctx := context.Background()
	d, err := root.WalkPath(ctx, "/tmp")
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
	local := b.TempDir() + "/big"
	os.WriteFile(local, data, 0644)
	m := mountB(b, n)
	read := func(p string) float64 {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
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
		if total != size {
			b.Fatalf("read %d bytes, want %d", total, size)
		}
		return float64(size) / time.Since(start).Seconds() / 1e9
	}
	var fuse, disk float64
	for i := 0; i < b.N; i++ {
		fuse += read(m + "/tmp/big")
		disk += read(local)
	}
	b.ReportMetric(fuse/float64(b.N), "fuse-GB/s")
	b.ReportMetric(disk/float64(b.N), "pagecache-GB/s")
	b.ReportMetric(fuse/disk, "ratio")
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
