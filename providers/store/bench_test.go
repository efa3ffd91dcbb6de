package store

import (
	"testing"

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
		got, err := styx.ReadFile(b.Context(), root, "big", -1)
		if err != nil || len(got) != size {
			b.Fatal(err)
		}
		root.Clunk()
	}
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
