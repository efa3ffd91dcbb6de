package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/styx"
)

// storeMesh makes every node of cl a user (and so a holder) of every
// other: DIR/users of each names the others' keys.
func storeMesh(t testing.TB, cl *cluster) {
	t.Helper()
	for _, m := range cl.nodes {
		var b strings.Builder
		for _, o := range cl.nodes {
			if o != m {
				fmt.Fprintf(&b, "node-%s %s\n", o.key[:8], o.key)
			}
		}
		if err := os.WriteFile(filepath.Join(m.dir, "users"), []byte(b.String()), 0600); err != nil {
			t.Fatal(err)
		}
	}
}

// fragmentsOf lists the fragment files (not lists) m holds, for every
// key (DIR/store/fragments/KEY/NAME), by name.
func fragmentsOf(m *member) map[string]string {
	out := make(map[string]string)
	paths, _ := filepath.Glob(filepath.Join(m.dir, "store", "fragments", "*", "*"))
	for _, p := range paths {
		if n := filepath.Base(p); len(n) == 64 {
			out[n] = p
		}
	}
	return out
}

// storeWrite writes data to path of m's namespace through the 9P client
// and returns the clunk's error: the durable acknowledgement.
func storeWrite(t testing.TB, m *member, path string, data []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := m.client(userName(t))
	dir, name := filepath.Split(path)
	d, err := root.WalkPath(ctx, dir)
	if err != nil {
		return err
	}
	if err := d.Create(ctx, name, 0600, styx.OWRITE); err != nil {
		return err
	}
	if _, err := d.WriteAt(ctx, data, 0); err != nil {
		d.Clunk(ctx)
		return err
	}
	return d.Clunk(ctx)
}

func storeRead(t testing.TB, m *member, path string) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	f, err := m.client(userName(t)).WalkPath(ctx, path)
	if err != nil {
		return nil, err
	}
	defer f.Clunk(ctx)
	if err := f.Open(ctx, styx.OREAD); err != nil {
		return nil, err
	}
	return f.ReadAll(ctx)
}

func healthLine(t testing.TB, m *member, file string) string {
	t.Helper()
	for _, l := range strings.Split(m.read("/store/health"), "\n") {
		if strings.HasPrefix(l, file+" ") {
			return l
		}
	}
	t.Fatalf("no %s in /store/health of %s", file, m.key)
	return ""
}

func capOf(t testing.TB, m *member, file, kind string) string {
	t.Helper()
	for _, l := range strings.Split(m.read("/store"+file+".caps"), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == kind {
			return v
		}
	}
	t.Fatalf("no %s cap for %s", kind, file)
	return ""
}

// TestStore: 5 node processes; a 12 MiB file coded 3+2 is written on
// one (the clunk returns once all 5 fragments are synced), read back
// byte-identical after two holders are killed with SIGKILL, health says
// degraded, repair onto new nodes restores it; a read cap handed to a
// third node reads it, also after two more holders are killed; a verify
// cap cannot read and a read cap cannot write; a holder that flips a
// byte in a fragment is routed around and named by verify and health.
func TestStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 7 nodes")
	}
	cl := startCluster(t, 5)
	storeMesh(t, cl)
	for _, m := range cl.nodes {
		m.published(1)
	}
	a := cl.nodes[0]
	if err := a.ctl("/store/ctl", "policy k=3 m=2"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 12<<20+12345)
	rand.Read(data)
	if err := storeWrite(t, a, "/store/big", data); err != nil {
		for _, m := range cl.nodes {
			t.Logf("log of %s:\n%s", m.key[:8], m.logs)
		}
		t.Fatalf("write: %v", err)
	}
	if h := healthLine(t, a, "/big"); !strings.Contains(h, "placed 5 reachable 5 acks 5 readable yes healthy") {
		t.Fatalf("health after write: %s", h)
	}
	if got, err := storeRead(t, a, "/store/big"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if ls := a.read("/store/status"); !strings.Contains(ls, "holder "+cl.nodes[1].key) {
		t.Errorf("status does not list holders:\n%s", ls)
	}
	// Each node holds one fragment.
	var holders []*member
	for _, m := range cl.nodes {
		switch n := len(fragmentsOf(m)); n {
		case 0:
		case 1:
			holders = append(holders, m)
		default:
			t.Errorf("node %s holds %d fragments", m.key[:8], n)
		}
	}
	if len(holders) != 5 {
		t.Fatalf("%d holders, want 5", len(holders))
	}

	// Two holders (not the writer) killed: the file reads whole.
	var killed []*member
	for _, m := range holders {
		if m != a && len(killed) < 2 {
			m.kill()
			killed = append(killed, m)
		}
	}
	if got, err := storeRead(t, a, "/store/big"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with 2 holders killed: %v", err)
	}
	if h := healthLine(t, a, "/big"); !strings.Contains(h, "reachable 3 ") || !strings.Contains(h, "degraded") {
		t.Fatalf("health with 2 holders killed: %s", h)
	}

	// Two new nodes; repair rebuilds the lost fragments on them.
	cl.add()
	cl.add()
	storeMesh(t, cl)
	for _, m := range cl.nodes[5:] {
		m.published(1)
	}
	if err := a.ctl("/store/ctl", "repair"); err != nil {
		t.Fatalf("repair: %v\n%s", err, a.logs)
	}
	if h := healthLine(t, a, "/big"); !strings.Contains(h, "reachable 5 ") || !strings.Contains(h, "healthy") {
		t.Fatalf("health after repair: %s", h)
	}
	for _, m := range cl.nodes[5:] {
		if len(fragmentsOf(m)) != 1 {
			t.Errorf("new node %s holds %d fragments", m.key[:8], len(fragmentsOf(m)))
		}
	}

	// A read cap on a third node reads; it cannot write.
	var c *member
	for _, m := range cl.nodes[1:5] {
		if !contains(killed, m) {
			c = m
			break
		}
	}
	if err := c.ctl("/store/ctl", "import-cap "+capOf(t, a, "/big", "read")+" copy"); err != nil {
		t.Fatalf("import-cap: %v", err)
	}
	if got, err := storeRead(t, c, "/store/copy"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read cap on another node: %v", err)
	}
	if _, err := c.run("x", "9p", "write", "/store/copy"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("write with a read cap: %v", err)
	}
	// A verify cap cannot read.
	if err := c.ctl("/store/ctl", "import-cap "+capOf(t, a, "/big", "verify")+" v"); err != nil {
		t.Fatal(err)
	}
	if _, err := storeRead(t, c, "/store/v"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("read with a verify cap: %v", err)
	}
	if err := c.ctl("/store/ctl", "verify v"); err != nil {
		t.Errorf("verify with a verify cap: %v", err)
	}

	// A holder that flips a byte: the read goes around it, verify and
	// health name it.
	before := make(map[*member]map[string]string)
	for _, m := range cl.nodes {
		if !contains(killed, m) {
			before[m] = fragmentsOf(m)
		}
	}
	small := make([]byte, 2<<20)
	rand.Read(small)
	if err := storeWrite(t, c, "/store/small", small); err != nil {
		t.Fatalf("write small: %v", err)
	}
	var flipped *member
	for m, old := range before {
		if m == c {
			continue
		}
		for name, p := range fragmentsOf(m) {
			if old[name] == "" {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/3] ^= 0x10
				if err := os.WriteFile(p, b, 0600); err != nil {
					t.Fatal(err)
				}
				flipped = m
				break
			}
		}
		if flipped != nil {
			break
		}
	}
	if flipped == nil {
		t.Fatal("no other node holds a fragment of /small")
	}
	if got, err := storeRead(t, c, "/store/small"); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("read past a flipped byte: %v", err)
	}
	if err := c.ctl("/store/ctl", "verify small"); err == nil || !strings.Contains(err.Error(), flipped.key[:8]) {
		t.Errorf("verify: %v, want it to name %s", err, flipped.key[:8])
	}
	if h := healthLine(t, c, "/small"); !strings.Contains(h, "bad "+flipped.key) {
		t.Errorf("health does not name the bad holder %s: %s", flipped.key[:8], h)
	}

	// Two more holders of /big killed, the writer among them: the read
	// cap still reads on c.
	a.kill()
	for _, m := range cl.nodes[1:] {
		if m != c && !contains(killed, m) && len(fragmentsOf(m)) > 0 {
			m.kill()
			break
		}
	}
	if got, err := storeRead(t, c, "/store/copy"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after two more holders killed: %v", err)
	}
}

func contains(ms []*member, m *member) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// TestStoreThroughFUSE: shell tools on /store through the FUSE mount of
// a node of three: mkdir, cp (coded 2+1 across the three), cmp, ls -l,
// rm (which releases the fragments at the holders).
func TestStoreThroughFUSE(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse on this machine")
	}
	if testing.Short() {
		t.Skip("starts 3 nodes")
	}
	cl := startCluster(t, 3)
	storeMesh(t, cl)
	for _, m := range cl.nodes {
		m.published(1)
	}
	a := cl.nodes[0]
	if err := a.ctl("/store/ctl", "policy k=2 m=1"); err != nil {
		t.Fatal(err)
	}
	mnt := mount(t, a.node)
	src := filepath.Join(t.TempDir(), "big")
	sh(t, "head -c 9000000 /dev/urandom > "+src)
	sh(t, "mkdir "+mnt+"/store/backups && cp "+src+" "+mnt+"/store/backups/ && cmp "+src+" "+mnt+"/store/backups/big")
	if got := sh(t, "ls -l "+mnt+"/store/backups/"); !strings.Contains(got, " 9000000 ") || !strings.Contains(got, "big.caps") {
		t.Errorf("ls -l:\n%s", got)
	}
	if h := healthLine(t, a, "/backups/big"); !strings.Contains(h, "acks 3") || !strings.Contains(h, "healthy") {
		t.Errorf("health: %s", h)
	}
	held := 0
	for _, m := range cl.nodes {
		held += len(fragmentsOf(m))
	}
	if held != 3 {
		t.Errorf("%d fragments held, want 3", held)
	}
	sh(t, "rm "+mnt+"/store/backups/big && rmdir "+mnt+"/store/backups")
	if got := sh(t, "ls "+mnt+"/store/"); strings.Contains(got, "backups") {
		t.Errorf("after rm: %q", got)
	}
	for _, m := range cl.nodes {
		if n := len(fragmentsOf(m)); n != 0 {
			t.Errorf("node %s still holds %d fragments after rm", m.key[:8], n)
		}
	}
}

// TestStoreWriterKilled: the writing node killed with SIGKILL in the
// middle of a write: after a restart the file is not there at all. A
// write that returned survives m holders destroyed (killed, their data
// directories deleted).
func TestStoreWriterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 nodes")
	}
	cl := startCluster(t, 3)
	storeMesh(t, cl)
	for _, m := range cl.nodes {
		m.published(1)
	}
	a := cl.nodes[1] // not the first, through whose DHT node a restarted node finds the others
	if err := a.ctl("/store/ctl", "policy k=2 m=1"); err != nil {
		t.Fatal(err)
	}
	ok := make([]byte, 3<<20)
	rand.Read(ok)
	if err := storeWrite(t, a, "/store/ok", ok); err != nil {
		t.Fatal(err)
	}
	// A write that never ends: the client sends half and waits.
	ctx := context.Background()
	d, err := a.client(userName(t)).WalkPath(ctx, "/store")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Create(ctx, "partial", 0600, styx.OWRITE); err != nil {
		t.Fatal(err)
	}
	half := make([]byte, 8<<20)
	rand.Read(half)
	if _, err := d.WriteAt(ctx, half, 0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "pieces of the partial write at a holder", func() bool {
		for _, m := range cl.nodes {
			if m == a {
				continue
			}
			ents, _ := os.ReadDir(filepath.Join(m.dir, "store", "fragments", a.key))
			for _, e := range ents {
				if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".tmp-") && fi.Size() > 0 {
					return true
				}
			}
		}
		return false
	})
	a.kill()
	a.restart()
	if ls := a.read("/store/health"); strings.Contains(ls, "/partial") || !strings.Contains(ls, "/ok ") {
		t.Errorf("after the writer was killed mid-write, health:\n%s", ls)
	}
	if _, err := a.run("", "9p", "read", "/store/partial"); err == nil {
		t.Error("the partial file reads after a restart")
	}
	// One holder (m=1) other than the writer destroyed: ok reads whole.
	var gone *member
	for _, m := range cl.nodes {
		if m != a && len(fragmentsOf(m)) > 0 {
			gone = m
			break
		}
	}
	gone.kill()
	os.RemoveAll(filepath.Join(gone.dir, "store"))
	if got, err := storeRead(t, a, "/store/ok"); err != nil || !bytes.Equal(got, ok) {
		t.Fatalf("read with a holder destroyed: %v", err)
	}
}

// TestStoreStalledHolder: a holder stopped with SIGSTOP (connections open,
// nothing answers) during reads: the reads go around it.
func TestStoreStalledHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 nodes")
	}
	cl := startCluster(t, 3)
	storeMesh(t, cl)
	for _, m := range cl.nodes {
		m.published(1)
	}
	a := cl.nodes[1]
	if err := a.ctl("/store/ctl", "policy k=2 m=1"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4<<20)
	rand.Read(data)
	if err := storeWrite(t, a, "/store/f", data); err != nil {
		t.Fatal(err)
	}
	var stalled *member
	for _, m := range cl.nodes {
		if m != a && len(fragmentsOf(m)) > 0 {
			stalled = m
			break
		}
	}
	stalled.partition()
	defer stalled.heal()
	for range 2 {
		if got, err := storeRead(t, a, "/store/f"); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read with a stalled holder: %v", err)
		}
	}
}
