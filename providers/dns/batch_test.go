package dns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cheshire/module"
)

// TestCtlAllOrNone: a write of several lines with a bad line in the
// middle changes nothing, in memory or on disk, and the error names the
// line.
func TestCtlAllOrNone(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	zfile := filepath.Join(ts.dir, "zones", "example.test.zone")
	before, _ := os.ReadFile(zfile)
	saves := ts.saves.Load()
	err := ts.writeFile("zones/example.test/ctl",
		"add a 300 A 192.0.2.1\ndnssec on\nadd b 300 A 192.0.2.999\nadd c 300 A 192.0.2.3\n")
	if err == nil || !strings.HasPrefix(err.Error(), "line 3: add: ") {
		t.Fatalf("bad line 3: %v", err)
	}
	if err := ts.writeFile("zones/example.test/ctl", "add a 300 A 192.0.2.1\ndel nosuch\n"); err == nil || !strings.Contains(err.Error(), "line 2: del: dns: no such record") {
		t.Fatalf("bad line 2: %v", err)
	}
	z := ts.zone("example.test.")
	if len(z.rrs) != 2 || z.soa.Serial != 1 || z.conf.dnssec {
		t.Errorf("zone changed: %d records, serial %d, dnssec %v", len(z.rrs), z.soa.Serial, z.conf.dnssec)
	}
	if after, _ := os.ReadFile(zfile); string(after) != string(before) {
		t.Errorf("zone file changed:\n%s", after)
	}
	if n := ts.saves.Load() - saves; n != 0 {
		t.Errorf("%d saves of refused writes", n)
	}

	// A good write is one change: one save, the serial up by one.
	ts.ctl("zones/example.test/ctl", "add a 300 A 192.0.2.1\nadd b 300 A 192.0.2.2\ndel a\n")
	z = ts.zone("example.test.")
	if len(z.rrs) != 3 || z.soa.Serial != 2 {
		t.Errorf("after batch: %d records, serial %d", len(z.rrs), z.soa.Serial)
	}
	if n := ts.saves.Load() - saves; n != 1 {
		t.Errorf("%d saves, want 1", n)
	}

	// /dns/ctl too.
	err = ts.writeFile("ctl", "zone add one.test\nzone add two.test\nzone add example.test\n")
	if err == nil || !strings.HasPrefix(err.Error(), "line 3: zone add: ") {
		t.Fatalf("root ctl: %v", err)
	}
	if zs := ts.Zones(); len(zs) != 1 {
		t.Errorf("zones after refused write: %v", zs)
	}
	ts.ctl("ctl", "zone add one.test\nzone rm one.test\nzone add two.test\n")
	if zs := strings.Join(ts.Zones(), " "); zs != "example.test. two.test." {
		t.Errorf("zones: %s", zs)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "zones", "one.test.zone")); !os.IsNotExist(err) {
		t.Errorf("one.test.zone: %v", err)
	}
}

// TestCtlLargeBatch writes 20,000 add lines in one write: it is one
// change, saved once.
func TestCtlLargeBatch(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "add h%d 300 A 10.%d.%d.%d\n", i, i>>16&255, i>>8&255, i&255)
	}
	saves := ts.saves.Load()
	start := time.Now()
	ts.ctl("zones/example.test/ctl", b.String())
	t.Logf("%d adds in one write: %v", n, time.Since(start))
	z := ts.zone("example.test.")
	if len(z.rrs) != n+2 || z.soa.Serial != 2 {
		t.Errorf("%d records, serial %d", len(z.rrs), z.soa.Serial)
	}
	if d := ts.saves.Load() - saves; d != 1 {
		t.Errorf("%d saves, want 1", d)
	}
	if r := ts.query("h19999.example.test", 1, false, false); n == 20000 && len(r.Answer) != 1 {
		t.Errorf("last record not served: %v", r)
	}
}

// TestCtlFlushed: a batch whose request is flushed (or whose client went
// away) changes nothing.
func TestCtlFlushed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	ctx, cancel := context.WithCancel(context.Background())
	err := ts.zoneBatch("example.test.")(ctx, func(ctx context.Context) error {
		if err := zoneTxnOf(ctx).add("a 300 A 192.0.2.1"); err != nil {
			return err
		}
		cancel() // Tflush
		return nil
	})
	if err == nil {
		t.Fatal("flushed batch succeeded")
	}
	if z := ts.zone("example.test."); len(z.rrs) != 2 {
		t.Errorf("flushed batch changed the zone: %d records", len(z.rrs))
	}
}

// TestStoppedModuleChangesNothing: once the module is stopped, writes to
// the files are refused, and a batch under way when it stops is
// abandoned.
func TestStoppedModuleChangesNothing(t *testing.T) {
	t.Parallel()
	s, err := New(t.TempDir(), Options{Owner: "glenda"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddZone("example.test"); err != nil {
		t.Fatal(err)
	}
	m := NewModule(s, "test")
	root, err := s.Attach(context.Background(), "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Clunk()
	if err := writeFileErr(root, "zones/example.test/ctl", "add a 300 A 192.0.2.1"); err == nil || err.Error() != "dns: module stopped" {
		t.Errorf("before start: %v", err)
	}
	cfg, _ := module.ParseConfig("listen udp!127.0.0.1!0\nlisten tcp!127.0.0.1!0\n")
	inst, err := m.Start(context.Background(), module.Env{Name: "dns", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileErr(root, "zones/example.test/ctl", "add a 300 A 192.0.2.1"); err != nil {
		t.Fatalf("running: %v", err)
	}

	// A batch under way when the module stops.
	started := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- s.zoneBatch("example.test.")(context.Background(), func(ctx context.Context) error {
			if err := zoneTxnOf(ctx).add("b 300 A 192.0.2.2"); err != nil {
				return err
			}
			close(started)
			<-ctx.Done() // as CtlBatch's loop sees it between lines
			return ctx.Err()
		})
	}()
	<-started
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err == nil || err.Error() != "dns: module stopped" {
		t.Errorf("batch under way: %v", err)
	}
	for _, w := range []struct{ file, data string }{
		{"zones/example.test/ctl", "add c 300 A 192.0.2.3"},
		{"zones/example.test/zone", "@ 300 SOA ns hm 9 1 1 1 1\n@ NS ns\n"},
		{"ctl", "zone add other.test"},
		{"ctl", "zone rm example.test"},
	} {
		if err := writeFileErr(root, w.file, w.data); err == nil || err.Error() != "dns: module stopped" {
			t.Errorf("after stop, %s: %v", w.file, err)
		}
	}
	z := s.zone("example.test.")
	if len(z.rrs) != 3 || z.soa.Serial != 2 || len(s.Zones()) != 1 {
		t.Errorf("stopped module changed: %d records, serial %d, zones %v", len(z.rrs), z.soa.Serial, s.Zones())
	}
}

// TestZoneTextOncePerVersion: a zone version renders its text once
// (stats of the zone file reuse it), and a change makes a new version
// with the new text.
func TestZoneTextOncePerVersion(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	z := ts.zone("example.test.")
	a, b := z.text(), z.text()
	if len(a) == 0 || &a[0] != &b[0] {
		t.Fatal("the text of one zone version was rendered twice")
	}
	if len(a) != cap(a) {
		t.Errorf("the shared text has room to append in place (len %d, cap %d)", len(a), cap(a))
	}
	ts.ctl("zones/example.test/ctl", "add www 300 A 192.0.2.1")
	if got := string(ts.zone("example.test.").text()); !strings.Contains(got, "192.0.2.1") {
		t.Errorf("the new version's text lacks the new record:\n%s", got)
	}
}
