package store

import (
	"context"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/styx"
)

// BenchmarkInProcess writes and reads 64 MiB across 5 in-process stores
// (k=3 m=2, 256 KiB pieces), no network: the store's own costs
// (cipher, hashes, coding, the synth tree). For where time goes:
//
//	go test -run '^$' -bench InProcess -cpuprofile cpu.prof ./providers/store
func BenchmarkInProcess(b *testing.B) {
	const size = 64 << 20
	c := newCluster(b, 5, DefaultShard)
	w := c.nodes[0].s
	data, got := make([]byte, size), make([]byte, size)
	b.SetBytes(size)
	var wCPU, rCPU time.Duration
	for range b.N {
		root, err := w.Attach(b.Context(), owner, "", nil)
		if err != nil {
			b.Fatal(err)
		}
		c0 := testutil.SelfCPU()
		if err := styx.WriteFile(b.Context(), root, "big", data, 0600); err != nil {
			b.Fatal(err)
		}
		c1 := testutil.SelfCPU()
		if n, err := readInto(b.Context(), root, "big", got); err != nil || n != size {
			b.Fatalf("read %d bytes of %d: %v", n, size, err)
		}
		wCPU, rCPU = wCPU+c1-c0, rCPU+testutil.SelfCPU()-c1
		root.Clunk()
	}
	mib := float64(b.N) * size / (1 << 20)
	b.ReportMetric(float64(wCPU.Microseconds())/1e3/mib, "write-cpu-ms/MiB")
	b.ReportMetric(float64(rCPU.Microseconds())/1e3/mib, "read-cpu-ms/MiB")
}

// readInto reads file name of root into p, 1 MiB a Read, as a client
// with its buffer in hand does (styx.ReadFile, growing its buffer as it
// goes, spent more on copying it than the store on the read).
func readInto(ctx context.Context, root styx.File, name string, p []byte) (int, error) {
	f, err := styx.WalkFile(ctx, root, []string{name})
	if err != nil {
		return 0, err
	}
	defer f.Clunk()
	if _, err := f.Open(ctx, styx.OREAD); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		k, err := f.Read(ctx, p[n:min(n+1<<20, len(p))], int64(n))
		n += k
		if err != nil || k == 0 {
			return n, err
		}
	}
	return n, nil
}

// BenchmarkWriteRoutedAround writes 32 MiB (k=3 m=2, 256 KiB pieces)
// across 5 in-process stores that know each other only by the offers of
// four: "accepted" with every holder taking its fragment, "over-quota"
// with one holder's per-key quota of 1 MiB, so that its fragment is
// refused part way and rebuilt at the commit from the others: the cost
// of routing around.
func BenchmarkWriteRoutedAround(b *testing.B) {
	const size = 32 << 20
	for _, quota := range []string{"accepted", "over-quota"} {
		b.Run(quota, func(b *testing.B) {
			c := newCluster(b, 5, DefaultShard)
			w := c.nodes[0].s
			for _, n := range c.nodes {
				c.writeUsers(n, []*tnode{n})
			}
			for i, n := range c.nodes[1:] {
				offer := "offer 1T"
				if i == 0 && quota == "over-quota" {
					offer = "offer 1T per-key 1M"
				}
				if err := benchCtl(b, n.s, offer); err != nil {
					b.Fatal(err)
				}
				if err := benchCtl(b, w, "holders add "+n.key); err != nil {
					b.Fatal(err)
				}
			}
			data := make([]byte, size)
			b.SetBytes(size)
			for range b.N {
				root, err := w.Attach(b.Context(), owner, "", nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := styx.WriteFile(b.Context(), root, "big", data, 0600); err != nil {
					b.Fatal(err)
				}
				root.Clunk()
			}
		})
	}
}

func benchCtl(b *testing.B, s *Store, line string) error {
	root, err := s.Attach(b.Context(), owner, "", nil)
	if err != nil {
		return err
	}
	defer root.Clunk()
	return styx.WriteFile(b.Context(), root, "ctl", []byte(line+"\n"), 0600)
}
