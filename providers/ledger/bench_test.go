package ledger

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// benchClients is how many clients send at once (raft batches their
// entries).
const benchClients = 16

// reportLatency reports ops/s and the p50 and p99 of lat.
func reportLatency(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkTransfers: committed transfers on a 3-node group over
// loopback TLS, from 16 clients at once, each through a node in turn
// (two of three forwarded to the leader). Compare BenchmarkRawRaft.
func BenchmarkTransfers(b *testing.B) {
	nodes := []*testNode{startNode(b), startNode(b), startNode(b)}
	ctx := b.Context()
	clients := make([]account, benchClients)
	var allocs []string
	for i := range clients {
		clients[i] = newAccount(b)
		allocs = append(allocs, clients[i].key, "1000000000")
	}
	if err := nodes[0].l.bootstrap(ctx, allocs); err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if err := nodes[0].l.add(ctx, []string{n.g.ID(), n.g.Addr()}, nil, true); err != nil {
			b.Fatal(err)
		}
	}
	per := (b.N + benchClients - 1) / benchClients
	lines := make([][]string, benchClients)
	for c := range clients {
		for i := range per {
			to := clients[(c+1)%benchClients].key
			lines[c] = append(lines[c], clients[c].sign(b, fmt.Sprintf("transfer %s %s 1 %d", clients[c].key, to, i+1)))
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, per)
			for i, line := range lines[c] {
				t0 := time.Now()
				if _, err := nodes[(c+i)%3].l.Submit(ctx, line); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, lat, elapsed)
}

// nopFSM is raft's floor: it applies nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

// BenchmarkRawRaft: hashicorp/raft alone, 3 nodes on loopback TCP (no
// TLS), raft-boltdb stores, applying an 8-byte no-op from 16 clients at
// once, all at the leader: the engine's floor for BenchmarkTransfers.
func BenchmarkRawRaft(b *testing.B) {
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})
	var rafts []*raft.Raft
	var servers []raft.Server
	for i := range 3 {
		dir := b.TempDir()
		store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			b.Fatal(err)
		}
		trans, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 4, 2*time.Second, logger)
		if err != nil {
			b.Fatal(err)
		}
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(fmt.Sprint(i))
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond, 5*time.Millisecond
		c.BatchApplyCh = true
		c.Logger = logger
		r, err := raft.NewRaft(c, nopFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Shutdown().Error(); trans.Close(); store.Close() })
		rafts = append(rafts, r)
		servers = append(servers, raft.Server{ID: c.LocalID, Address: trans.LocalAddr()})
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		b.Fatal(err)
	}
	var leader *raft.Raft
	testutil.WaitFor(b, "a leader", func() bool {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				leader = r
				return true
			}
		}
		return false
	})
	per := (b.N + benchClients - 1) / benchClients
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, per)
			for range per {
				t0 := time.Now()
				if err := leader.Apply([]byte("nop-nop!"), 10*time.Second).Error(); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, lat, elapsed)
}
