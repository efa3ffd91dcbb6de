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
