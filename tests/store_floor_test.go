package tests

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cheshire/nodekey"

	"github.com/klauspost/reedsolomon"
	"github.com/zeebo/blake3"
)

// The floors of a store read and write on this machine: the work the
// issue asks of them and nothing else, in one process, with no 9P, no
// requests and answers, no lists, no placement. A read takes k data
// fragments (one from its own disk, the others streamed by holders over
// TLS between node keys, as nodekey.Conn sends them), checks each
// 256 KiB piece's BLAKE3 hash, decrypts it (AES-256-CTR) and hands the
// content to a client over a unix socket. A write takes the content from
// a client over a unix socket, encrypts it, codes each stripe k+m
// (klauspost/reedsolomon), hashes every piece, keeps one fragment and
// streams the others to holders over TLS, which write them to disk,
// syncing as they go and at the end, as the store's holders do. Every
// part runs on a goroutine of its own, so both CPUs are used. No store
// can be faster than its floor here; BenchmarkStore reports both.

const floorShard = 256 << 10

// floorKeys makes the AES key and the two node identities of a floor.
func floorKeys(b *testing.B) (cipher.Block, *tls.Config, *tls.Config) {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	a, err := nodekey.Load(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	h, err := nodekey.Load(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	srv, err := h.ServerTLS()
	if err != nil {
		b.Fatal(err)
	}
	cli, err := a.ClientTLS(h.Public)
	if err != nil {
		b.Fatal(err)
	}
	return block, srv, cli
}

// floorLinks opens n TLS connections over loopback: the dialling ends
// (a node) and the accepting ends (its holders).
func floorLinks(b *testing.B, n int, srv, cli *tls.Config) (node, holders []net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	tl := nodekey.NewListener(l, srv)
	for range n {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		nc := nodekey.Client(c, cli)
		done := make(chan error, 1)
		go func() { done <- nc.Handshake() }()
		h, err := tl.Accept()
		if err != nil {
			b.Fatal(err)
		}
		if tc, ok := nodekey.TLS(h); ok {
			if err := tc.Handshake(); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		node, holders = append(node, nc), append(holders, h)
		b.Cleanup(func() { nc.Close(); h.Close() })
	}
	return node, holders
}

// unixPair is the two ends of a unix socket connection.
func unixPair(b *testing.B) (client, server net.Conn) {
	p := filepath.Join(b.TempDir(), "s")
	l, err := net.Listen("unix", p)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("unix", p)
	if err != nil {
		b.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// ctr is the key stream of content from offset off (a multiple of 16).
func ctr(block cipher.Block, off int) cipher.Stream {
	var iv [16]byte
	n := uint64(off / 16)
	for i := 15; i >= 8; i-- {
		iv[i] = byte(n)
		n >>= 8
	}
	return cipher.NewCTR(block, iv[:])
}

// readFloor is the floor of a read of data stored k-of-(k+m), in content
// bytes a second, and the CPU seconds the machine spent on it: the holders' pieces (ciphertext, hashed) are on disk
// before the clock starts, in the page cache as the store's are when
// BenchmarkStore reads.
func readFloor(b *testing.B, data []byte, k int) (rate, cpu float64) {
	block, srv, cli := floorKeys(b)
	stripe := k * floorShard
	stripes := (len(data) + stripe - 1) / stripe
	// The fragments: fragment i is piece i of every stripe.
	enc := make([]byte, stripes*stripe)
	ks := ctr(block, 0)
	for off := 0; off < len(data); off += stripe { // a call a stripe: the GC can stop it between
		ks.XORKeyStream(enc[off:min(off+stripe, len(data))], data[off:min(off+stripe, len(data))])
	}
	dir := b.TempDir()
	sums := make([][][32]byte, k)
	files := make([]*os.File, k)
	defer os.RemoveAll(dir) // its pages free again for what comes next
	defer closeAll(files)
	for i := range k {
		frag := make([]byte, 0, stripes*floorShard)
		for s := range stripes {
			p := enc[s*stripe+i*floorShard : s*stripe+(i+1)*floorShard]
			frag = append(frag, p...)
			sums[i] = append(sums[i], blake3.Sum256(p))
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(frag); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil { // nothing left for the disk to do meanwhile
			b.Fatal(err)
		}
		files[i] = f
	}
	enc = nil
	node, holders := floorLinks(b, k-1, srv, cli)
	client, server := unixPair(b)

	errs := make(chan error, 2*k+2)
	// Holder i streams fragment i+1, piece by piece from its disk.
	for i, h := range holders {
		go func() {
			buf := make([]byte, floorShard)
			for s := range stripes {
				if _, err := files[i+1].ReadAt(buf, int64(s*floorShard)); err != nil {
					errs <- err
					return
				}
				if _, err := h.Write(buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// The node: a goroutine a fragment takes its pieces and checks
	// them, the assembler decrypts each stripe into the client's socket.
	const depth = 4
	pieces := make([]chan []byte, k)
	free := make([]chan []byte, k)
	for i := range k {
		pieces[i], free[i] = make(chan []byte, depth), make(chan []byte, depth)
		for range depth {
			free[i] <- make([]byte, floorShard)
		}
		go func() {
			for s := range stripes {
				p := <-free[i]
				var err error
				if i == 0 {
					_, err = files[0].ReadAt(p, int64(s*floorShard))
				} else {
					_, err = io.ReadFull(node[i-1], p)
				}
				if err == nil && blake3.Sum256(p) != sums[i][s] {
					err = fmt.Errorf("floor: piece %d of fragment %d differs", s, i)
				}
				if err != nil {
					errs <- err
					return
				}
				pieces[i] <- p
			}
		}()
	}
	got := make(chan error, 1)
	cpu0 := machineCPU()
	start := time.Now()
	go func() {
		out := make([]byte, stripe)
		for s := range stripes {
			for i := range k {
				p := <-pieces[i]
				ctr(block, s*stripe+i*floorShard).XORKeyStream(out[i*floorShard:(i+1)*floorShard], p)
				free[i] <- p
			}
			if _, err := server.Write(out[:min(stripe, len(data)-s*stripe)]); err != nil {
				errs <- err
				return
			}
		}
	}()
	// The client reads and compares, as BenchmarkStore's does.
	go func() {
		buf := make([]byte, 1<<20)
		for off := 0; off < len(data); {
			n, err := client.Read(buf[:min(len(buf), len(data)-off)])
			if err != nil {
				got <- err
				return
			}
			if string(buf[:n]) != string(data[off:off+n]) {
				got <- fmt.Errorf("floor: bytes at %d differ", off)
				return
			}
			off += n
		}
		got <- nil
	}()
	select {
	case err := <-got:
		if err != nil {
			b.Fatal(err)
		}
	case err := <-errs:
		b.Fatal(err)
	}
	return float64(len(data)) / time.Since(start).Seconds(), machineCPU() - cpu0
}

// writeFloor is the floor of a durable write of data coded k+m, in
// content bytes a second, and the CPU seconds the machine spent on it:
// from the client's first byte to the last holder's fsync.
func writeFloor(b *testing.B, data []byte, k, m int) (rate, cpu float64) {
	block, srv, cli := floorKeys(b)
	rs, err := reedsolomon.New(k, m)
	if err != nil {
		b.Fatal(err)
	}
	n := k + m
	stripe := k * floorShard
	stripes := (len(data) + stripe - 1) / stripe
	dir := b.TempDir()
	defer os.RemoveAll(dir) // its pages free again for what comes next
	node, holders := floorLinks(b, n-1, srv, cli)
	client, server := unixPair(b)
	files := make([]*os.File, n)
	defer closeAll(files)
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			b.Fatal(err)
		}
		files[i] = f
	}
	errs := make(chan error, 2*n+2)
	synced := make(chan struct{}, n)
	// keep writes fragment i's pieces, as next gives them (done when
	// written), to its file, syncing each 8 MiB in the background, one
	// sync at a time, and at the end, as the store's holders do.
	keep := func(i int, next func() (p []byte, done func(), err error)) {
		f := files[i]
		var bg sync.WaitGroup
		busy := make(chan struct{}, 1)
		dirty := 0
		for s := range stripes {
			p, done, err := next()
			if err != nil {
				errs <- err
				return
			}
			_, err = f.WriteAt(p, int64(s*floorShard))
			done()
			if err != nil {
				errs <- err
				return
			}
			if dirty += len(p); dirty >= 8<<20 {
				select {
				case busy <- struct{}{}:
					dirty = 0
					bg.Go(func() { f.Sync(); <-busy })
				default:
				}
			}
		}
		bg.Wait()
		if err := f.Sync(); err != nil {
			errs <- err
			return
		}
		synced <- struct{}{}
	}
	for i, h := range holders {
		buf := make([]byte, floorShard)
		go keep(i+1, func() ([]byte, func(), error) {
			_, err := io.ReadFull(h, buf)
			return buf, func() {}, err
		})
	}
	// The node: one goroutine takes the content, encrypts and codes
	// each stripe; one a fragment hashes its pieces and sends them (or,
	// for fragment 0, keeps them).
	type stripeBuf struct {
		shards [][]byte
		left   sync.WaitGroup
	}
	const depth = 4
	free := make(chan *stripeBuf, depth)
	for range depth {
		buf := make([]byte, n*floorShard)
		sb := &stripeBuf{shards: make([][]byte, n)}
		for i := range n {
			sb.shards[i] = buf[i*floorShard : (i+1)*floorShard]
		}
		free <- sb
	}
	queues := make([]chan *stripeBuf, n)
	for i := range n {
		queues[i] = make(chan *stripeBuf, depth)
		sums := make([][32]byte, 0, stripes)
		if i == 0 {
			go keep(0, func() ([]byte, func(), error) {
				sb := <-queues[0]
				sums = append(sums, blake3.Sum256(sb.shards[0]))
				return sb.shards[0], sb.left.Done, nil
			})
			continue
		}
		go func() {
			for sb := range queues[i] {
				sums = append(sums, blake3.Sum256(sb.shards[i]))
				_, err := node[i-1].Write(sb.shards[i])
				sb.left.Done()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	cpu0 := machineCPU()
	start := time.Now()
	go func() {
		for off := 0; off < len(data); off += 1 << 20 {
			if _, err := client.Write(data[off:min(off+1<<20, len(data))]); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		tmp := make([]byte, stripe)
		for s := range stripes {
			sb := <-free
			c := min(stripe, len(data)-s*stripe)
			if _, err := io.ReadFull(server, tmp[:c]); err != nil {
				errs <- err
				return
			}
			ctr(block, s*stripe).XORKeyStream(sb.shards[0][:c:c], tmp[:c])
			// The stripe's data pieces are one buffer: shards[0] runs on.
			clear(sb.shards[0][c:stripe:stripe])
			if err := rs.Encode(sb.shards); err != nil {
				errs <- err
				return
			}
			sb.left.Add(n)
			for _, q := range queues {
				q <- sb
			}
			go func() { sb.left.Wait(); free <- sb }()
		}
		for _, q := range queues {
			close(q)
		}
	}()
	for range n {
		select {
		case <-synced:
		case err := <-errs:
			b.Fatal(err)
		}
	}
	if err := errors.Join(drain(errs)...); err != nil {
		b.Fatal(err)
	}
	return float64(len(data)) / time.Since(start).Seconds(), machineCPU() - cpu0
}

// closeAll closes the files opened of files.
func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// drain is what errs holds now.
func drain(errs chan error) (out []error) {
	for {
		select {
		case err := <-errs:
			out = append(out, err)
		default:
			return out
		}
	}
}
