package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentWriters: many writers of one path, and a reader that never
// sees anything but one whole version.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "sub", "f")
	if err := Write(p, bytes.Repeat([]byte("0"), 4096), 0600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := Write(p, bytes.Repeat([]byte{byte('a' + w)}, 4096), 0600); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for reads := 0; ; reads++ {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 4096 || bytes.Count(b, b[:1]) != 4096 {
			t.Fatalf("read %d: torn or short file (%d bytes)", reads, len(b))
		}
		select {
		case <-done:
			ents, _ := os.ReadDir(filepath.Dir(p))
			if len(ents) != 1 {
				t.Fatalf("temporary files left: %v", ents)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != 0600 {
				t.Fatalf("mode %v", fi.Mode())
			}
			return
		default:
		}
	}
}

func TestCommitAllAndAbort(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	var set []*Staged
	for i := 0; i < 3; i++ {
		s, err := Stage(filepath.Join(d, fmt.Sprint(i)), []byte{byte('0' + i)}, 0644)
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, s)
	}
	if _, err := os.Stat(filepath.Join(d, "0")); !os.IsNotExist(err) {
		t.Fatal("staged file visible before commit")
	}
	if err := CommitAll(set); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile(filepath.Join(d, fmt.Sprint(i)))
		if err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("file %d: %q %v", i, b, err)
		}
	}
	s, _ := Stage(filepath.Join(d, "x"), []byte("x"), 0600)
	s.Abort()
	if ents, _ := os.ReadDir(d); len(ents) != 3 {
		t.Fatalf("abort left %v", ents)
	}
}

// TestCreate: a new file is made whole; an existing one is not touched,
// and the error says it exists; no temporary is left either way.
func TestCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := Create(p, []byte("one"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := Create(p, []byte("two"), 0600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create: %v, want an error saying the file exists", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Errorf("content %q, want one", b)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0600 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("%d files in the directory, want 1", len(es))
	}
}
