package tests

import (
	"context"
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
