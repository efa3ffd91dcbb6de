package wasm

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"cheshire/internal/testutil"
)

// procStatus returns a field of /proc/self/status, in bytes.
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestMeasureMemoryBomb measures the node's resident memory while a
// guest with the default limit (256M) takes all it can, and after. It
// runs only when asked, one way per process, without the race detector:
//
//	CHESHIRE_MEASURE_MEMORY=mmap go test -count=1 -v -run TestMeasureMemoryBomb ./modules/wasm
//	CHESHIRE_MEASURE_MEMORY=heap go test -count=1 -v -run TestMeasureMemoryBomb ./modules/wasm
//
// mmap is the node's allocator, heap wazero's own; CHESHIRE_MEASURE_LIMIT
// sets the guest's memory limit (default 256M).
func TestMeasureMemoryBomb(t *testing.T) {
	how := os.Getenv("CHESHIRE_MEASURE_MEMORY")
	if how == "" {
		t.Skip("set CHESHIRE_MEASURE_MEMORY to mmap or heap to measure")
	}
	r := *testRuntime(t)
	r.heapMem = how == "heap"
	wasm, manifest := guest(t, "trap")
	m, err := r.Load(context.Background(), "trap", signed(t, manifest, wasm, testKey), "test")
	ok(t, "load", err)
	mb := func(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/(1<<20)) }
	settle := func() {
		runtime.GC()
		debug.FreeOSMemory()
	}

	settle()
	before := procStatus(t, "VmRSS")
	// Reset the peak to now.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak: %v", err)
	}
	limit := os.Getenv("CHESHIRE_MEASURE_LIMIT")
	if limit == "" {
		limit = "256M"
	}
	in, err := m.Start(context.Background(), envFor("trap", parse(t, "cpu 1m\nmemory "+limit), t.TempDir()))
	ok(t, "start", err)
	started := procStatus(t, "VmRSS")
	root := attach(t, in, "glenda")
	_, err = testutil.ReadFile(context.Background(), root, "/bomb")
	wantErr(t, "read of /bomb", err, "module trap trapped")
	peak := procStatus(t, "VmHWM")
	failed := procStatus(t, "VmRSS")
	in.Stop(context.Background())
	settle()
	after := procStatus(t, "VmRSS")
	t.Logf("%s, memory %s: rss before %s, started +%s, peak +%s, at failure +%s, after stop and GC +%s",
		how, limit, mb(before), mb(started-before), mb(peak-before), mb(failed-before), mb(after-before))
}
