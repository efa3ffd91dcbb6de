package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestSyncBehind: a fragment written in pieces is synced in the
// background as it grows, writes that race the syncs and the commit
// keep every byte, and an abort while a sync runs leaves nothing behind.
func TestSyncBehind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	self := strings.Repeat("ab", 32)
	d, err := newDisk(dir, self)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const piece = 1 << 20
	size := 3*syncAfter + piece/2
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i * 7)
	}
	name := strings.Repeat("c", 64)
	w, err := d.create(self, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two writers at once, each every other piece, as a holder's 9P
	// connection may deliver them.
	var wg sync.WaitGroup
	for first := range 2 {
		wg.Go(func() {
			for off := first * piece; off < size; off += 2 * piece {
				if err := w.WriteAt(ctx, want[off:min(off+piece, size)], int64(off)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	// The first sync starts once syncAfter bytes are in; how many more
	// start depends on how long each takes, one at a time.
	if w.behind < 1 {
		t.Errorf("no background sync for %d bytes (one each %d bytes)", size, syncAfter)
	}
	got, err := os.ReadFile(d.path(self, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("committed fragment differs from what was written (%d bytes, want %d)", len(got), len(want))
	}

	// Abort with a background sync started: no temporary file stays.
	name2 := strings.Repeat("d", 64)
	w2, err := d.create(self, name2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.WriteAt(ctx, want[:syncAfter], 0); err != nil {
		t.Fatal(err)
	}
	w2.Abort()
	if w2.behind != 1 {
		t.Errorf("%d background syncs for %d bytes, want 1", w2.behind, syncAfter)
	}
	if err := w2.WriteAt(ctx, want[:10], 0); err == nil {
		t.Error("write after abort accepted")
	}
	ents, err := os.ReadDir(filepath.Dir(d.path(self, name2)))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("aborted fragment left %s", e.Name())
		}
	}
	if _, err := os.Stat(d.path(self, name2)); !os.IsNotExist(err) {
		t.Errorf("aborted fragment exists: %v", err)
	}
}

// TestSyncBehindFailure: a background sync that fails fails the commit,
// though the fsync after it succeeds (Linux reports a failed writeback
// to each open file once), and the fragment is not stored.
func TestSyncBehindFailure(t *testing.T) {
	t.Parallel()
	self := strings.Repeat("ab", 32)
	d, err := newDisk(t.TempDir(), self)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("e", 64)
	w, err := d.create(self, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	w.syncFile = func(f *os.File) error {
		if calls.Add(1) == 1 {
			return syscall.EIO // the background sync's
		}
		return f.Sync()
	}
	if err := w.WriteAt(t.Context(), make([]byte, syncAfter), 0); err != nil {
		t.Fatal(err)
	}
	err = w.Commit()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("commit after a failed background sync: %v, want EIO", err)
	}
	if calls.Load() != 2 {
		t.Errorf("%d syncs, want 2 (the background one, the commit's)", calls.Load())
	}
	if _, err := os.Stat(d.path(self, name)); !os.IsNotExist(err) {
		t.Errorf("fragment stored after a failed sync: %v", err)
	}
}
