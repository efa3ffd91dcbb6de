package tests

import (
	"bytes"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/internal/testutil"
)

// discovered are the holders m's /store/status lists as discovered and
// up, by key.
func discovered(m *member) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(m.read("/store/status"), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "discovered" && f[3] == "up" {
			out[f[1]] = true
		}
	}
	return out
}

// heldFor is the bytes m's /store/status says key holds there.
func heldFor(m *member, key string) string {
	for _, l := range strings.Split(m.read("/store/status"), "\n") {
		f := strings.Fields(l)
		if len(f) == 5 && f[0] == "key" && f[1] == key && f[3] == "held" {
			return f[4]
		}
	}
	return "0"
}

// TestStoreThroughDHT: 5 node processes whose DHTs know each other and
// nothing else; no node knows another (no DIR/users, no `holders
// add`). Four offer space; the writer finds them in the DHT (their key
// learnt by a TLS handshake) and places a file's 3+2 fragments on them:
// a holder whose per-key quota is smaller than a fragment refuses it
// part way, and the write still has its 5 acks, the refused fragment
// rebuilt at another holder (4 distinct holders); once it offers more,
// the next file has 5 distinct holders, and reads back byte-identical
// with two holders killed with SIGKILL. Each holder keeps the writer's
// fragments under the writer's key. Discovery then shows the killed
// holders down, and a write places its 5 fragments on the 3 nodes left;
// a holder that stops offering stops announcing itself.
func TestStoreThroughDHT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 nodes")
	}
	t.Parallel()
	cl := startCluster(t, 5)
	w, holders := cl.nodes[0], cl.nodes[1:]
	for _, m := range cl.nodes {
		m.published(1)
	}
	small := holders[3]
	for _, m := range holders {
		offer := "offer 1G"
		if m == small {
			offer = "offer 1G per-key 256K"
		}
		if err := m.ctl("/store/ctl", offer); err != nil {
			t.Fatalf("%s: %v", offer, err)
		}
		if st := m.read("/store/status"); !strings.Contains(st, "offer 1073741824 per-key ") {
			t.Fatalf("status after %s:\n%s", offer, st)
		}
	}
	// Each round of discovery is started by turning it on; the holders'
	// announces reach the DHT in their own time.
	testutil.WaitFor(t, "the writer to discover the 4 holders", func() bool {
		if err := w.ctl("/store/ctl", "holders discover on"); err != nil {
			t.Fatalf("holders discover on: %v", err)
		}
		return len(discovered(w)) == 4
	})
	for _, m := range holders {
		if !discovered(w)[m.key] {
			t.Fatalf("holder %s not discovered:\n%s", m.key, w.read("/store/status"))
		}
	}
	if err := w.ctl("/store/ctl", "policy k=3 m=2"); err != nil {
		t.Fatal(err)
	}

	// The holder with a per-key quota of 256 KiB refuses a fragment of
	// 768 KiB part way; the write rebuilds it elsewhere and has its 5
	// acks, from 4 distinct holders.
	first := make([]byte, 2<<20)
	rand.Read(first)
	if err := storeWrite(t, w, "/store/first", first); err != nil {
		t.Fatalf("write with a holder over quota: %v\n%s", err, w.logs)
	}
	if h := healthLine(t, w, "/first"); !strings.Contains(h, "placed 5 reachable 5 acks 5 readable yes healthy holders 4") {
		t.Fatalf("health of the write around the holder over quota: %s", h)
	}
	if n := heldFor(small, w.key); n != "0" {
		t.Fatalf("the holder over quota holds %s bytes for the writer", n)
	}
	if st := w.read("/store/status"); !strings.Contains(st, "holder "+small.key+" down") || !strings.Contains(st, "quota exceeded") {
		t.Fatalf("the writer's status does not say the holder refused:\n%s", st)
	}
	if got, err := storeRead(t, w, "/store/first"); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("read back: %v", err)
	}

	// It offers more: the next file has 5 distinct holders, each holding
	// the writer's fragment under the writer's key.
	if err := small.ctl("/store/ctl", "offer 1G"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 6<<20+4321)
	rand.Read(data)
	if err := storeWrite(t, w, "/store/big", data); err != nil {
		t.Fatalf("write: %v\n%s", err, w.logs)
	}
	if h := healthLine(t, w, "/big"); !strings.Contains(h, "placed 5 reachable 5 acks 5 readable yes healthy holders 5") {
		t.Fatalf("health after write: %s", h)
	}
	for _, m := range holders {
		paths, _ := filepath.Glob(filepath.Join(m.dir, "store", "fragments", w.key, "*"))
		if len(paths) == 0 {
			t.Errorf("holder %s keeps nothing under the writer's key", m.key[:8])
		}
		if others, _ := filepath.Glob(filepath.Join(m.dir, "store", "fragments", "*", "*")); len(others) != len(paths) {
			t.Errorf("holder %s keeps %d files, %d under the writer's key", m.key[:8], len(others), len(paths))
		}
	}
	if got, err := storeRead(t, w, "/store/big"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}

	// Two holders killed, each holding one fragment of each file (the
	// first file has one holder of two): both files read whole.
	var killed []*member
	for _, m := range holders {
		paths, _ := filepath.Glob(filepath.Join(m.dir, "store", "fragments", w.key, strings.Repeat("?", 64)))
		if len(paths) <= 2 && len(killed) < 2 {
			m.kill()
			killed = append(killed, m)
		}
	}
	if len(killed) != 2 {
		t.Fatalf("killed %d holders, want 2", len(killed))
	}
	if got, err := storeRead(t, w, "/store/big"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with 2 holders killed: %v", err)
	}
	if got, err := storeRead(t, w, "/store/first"); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("read of the first file with 2 holders killed: %v", err)
	}
	if h := healthLine(t, w, "/big"); !strings.Contains(h, "reachable 3 ") || !strings.Contains(h, "degraded") {
		t.Fatalf("health with 2 holders killed: %s", h)
	}

	// The next round of discovery finds their addresses dead: status
	// says so, and they are not placed on. With 3 nodes left a write of
	// 3+2 has its 5 acks from 3 holders (the writer is one).
	testutil.WaitFor(t, "the killed holders down in the writer's status", func() bool {
		if err := w.ctl("/store/ctl", "holders discover on"); err != nil {
			t.Fatalf("holders discover on: %v", err)
		}
		up := discovered(w)
		return len(up) == 2 && !up[killed[0].key] && !up[killed[1].key]
	})
	st := w.read("/store/status")
	for _, m := range killed {
		if !strings.Contains(st, "discovered "+m.key+" ") {
			t.Errorf("status no longer lists the killed holder %s:\n%s", m.key[:8], st)
		}
	}
	if strings.Count(st, " down err ") < 2 {
		t.Errorf("status does not say why the killed holders are down:\n%s", st)
	}
	third := make([]byte, 1<<20)
	rand.Read(third)
	if err := storeWrite(t, w, "/store/third", third); err != nil {
		t.Fatalf("write with 2 holders killed: %v", err)
	}
	if h := healthLine(t, w, "/third"); !strings.Contains(h, "placed 5 reachable 5 acks 5 readable yes healthy holders 3") {
		t.Fatalf("health of a write with 2 holders killed: %s", h)
	}
	if got, err := storeRead(t, w, "/store/third"); err != nil || !bytes.Equal(got, third) {
		t.Fatalf("read back: %v", err)
	}

	// A holder that stops offering stops announcing itself.
	var left *member
	for _, m := range holders {
		if !contains(killed, m) {
			left = m
		}
	}
	if st := left.read("/dht/status"); !strings.Contains(st, "#store/holders") {
		t.Fatalf("a holder that offers does not announce it:\n%s", st)
	}
	if err := left.ctl("/store/ctl", "offer off"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the holder's advert without #store/holders", func() bool {
		return !strings.Contains(left.read("/dht/status"), "#store/holders")
	})
}
