package fusemount

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"golang.org/x/sys/unix"
)

// mount serves m and mounts it on a fresh directory, unmounted when the
// test ends. The tests drive the mount with real programs (sh, ls, cat,
// cp, mv...) and check the server's tree directly.
func mount(t *testing.T, m *memFS) (string, *Mounted) {
	t.Helper()
	return mountWith(t, m, Options{})
}

// mountWith is mount with options (Addr and Uname are set).
func mountWith(t *testing.T, m *memFS, o Options) (string, *Mounted) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE is not available (%v): skipping the mount tests", err)
	}
	addr := m.listen(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o.Addr, o.Uname = addr, "glenda"
	mt, err := Mount(ctx, dir, o)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := mt.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
			UnmountDir(dir)
		}
	})
	return dir, mt
}

// sh runs script with $M set to the mount point and returns its output.
func sh(t *testing.T, mnt, script string) string {
	t.Helper()
	out, err := shErr(mnt, script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

func shErr(mnt, script string) (string, error) {
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "M="+mnt, "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func wantFile(t *testing.T, m *memFS, path, want string) {
	t.Helper()
	got, _, ok := m.get(path)
	if !ok {
		t.Errorf("server: %s does not exist", path)
	} else if got != want {
		t.Errorf("server: %s = %q, want %q", path, got, want)
	}
}

func wantNoFile(t *testing.T, m *memFS, path string) {
	t.Helper()
	if _, _, ok := m.get(path); ok {
		t.Errorf("server: %s exists", path)
	}
}

func TestShellTools(t *testing.T) {
	m := newMemFS()
	m.add("hello", regular, 0644, "hello, world\n")
	m.add("gen", generated, 0444, "")
	m.add("sub", regular, plan9.DMDIR|0755, "")
	m.add("sub/a", regular, 0600, "a\n")
	mnt, _ := mount(t, m)

	// ls -l: types, permissions, sizes, owner.
	ls := sh(t, mnt, `ls -ln "$M"`)
	uid := os.Getuid()
	for _, want := range []string{
		"-rw-r--r-- 1 " + strconv.Itoa(uid) + " " + strconv.Itoa(os.Getgid()) + " 13 ",
		"-r--r--r-- 1 ",
		"drwxr-xr-x 1 ",
	} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls -ln: no %q in\n%s", want, ls)
		}
	}
	if got := sh(t, mnt, `ls "$M"`); got != "gen\nhello\nsub\n" {
		t.Errorf("ls = %q", got)
	}
	if got := sh(t, mnt, `ls -a "$M/sub"`); got != ".\n..\na\n" {
		t.Errorf("ls -a sub = %q", got)
	}

	// cat of a cached file and of a generated (length 0) one.
	if got := sh(t, mnt, `cat "$M/hello"`); got != "hello, world\n" {
		t.Errorf("cat hello = %q", got)
	}
	if got := sh(t, mnt, `cat "$M/gen"`); got != "generated gen\n" {
		t.Errorf("cat gen = %q", got)
	}
	if got := sh(t, mnt, `cat "$M/sub/a"`); got != "a\n" {
		t.Errorf("cat sub/a = %q", got)
	}

	// Another client changes a file: the next open sees it.
	m.set("hello", "HELLO, WORLD\n")
	if got := sh(t, mnt, `cat "$M/hello"`); got != "HELLO, WORLD\n" {
		t.Errorf("cat hello after change = %q", got)
	}

	// Create, append, truncate.
	sh(t, mnt, `echo x > "$M/f" && echo y >> "$M/f"`)
	wantFile(t, m, "f", "x\ny\n")
	if got := sh(t, mnt, `cat "$M/f"`); got != "x\ny\n" {
		t.Errorf("cat f = %q", got)
	}
	sh(t, mnt, `echo z > "$M/f"`)
	wantFile(t, m, "f", "z\n")
	if got := sh(t, mnt, `cat "$M/f"; echo w >> "$M/f"; cat "$M/f"`); got != "z\nz\nw\n" {
		t.Errorf("cat, append, cat = %q", got)
	}
	sh(t, mnt, `echo z > "$M/f"`)

	// mkdir.
	sh(t, mnt, `mkdir "$M/d"`)
	if _, mode, ok := m.get("d"); !ok || mode&plan9.DMDIR == 0 || mode&0777 != 0755 {
		t.Errorf("server: d: mode %v, exists %v", mode, ok)
	}
	if got := sh(t, mnt, `ls -a "$M/d"`); got != ".\n..\n" {
		t.Errorf("ls -a d = %q", got)
	}

	// mv within a directory.
	sh(t, mnt, `mv "$M/f" "$M/g"`)
	wantNoFile(t, m, "f")
	wantFile(t, m, "g", "z\n")
	if got := sh(t, mnt, `cat "$M/g"; ls "$M"`); got != "z\nd\ng\ngen\nhello\nsub\n" {
		t.Errorf("cat g; ls = %q", got)
	}

	// mv over an existing file replaces it, leaving nothing behind.
	sh(t, mnt, `echo old > "$M/h" && mv "$M/g" "$M/h"`)
	wantNoFile(t, m, "g")
	wantFile(t, m, "h", "z\n")
	if got := strings.Join(m.names(""), " "); got != "hello gen sub h d" {
		t.Errorf("server: root holds %q", got)
	}
	if got := sh(t, mnt, `cat "$M/h"`); got != "z\n" {
		t.Errorf("cat h = %q", got)
	}

	// mv to another directory: EXDEV, so mv copies and removes.
	sh(t, mnt, `mv "$M/h" "$M/d/h"`)
	wantNoFile(t, m, "h")
	wantFile(t, m, "d/h", "z\n")
	if got := sh(t, mnt, `cat "$M/d/h"`); got != "z\n" {
		t.Errorf("cat d/h = %q", got)
	}

	// A directory is renamed, and moved (copied) to another directory.
	sh(t, mnt, `mv "$M/d" "$M/e" && mv "$M/e" "$M/sub/e"`)
	wantNoFile(t, m, "d")
	wantNoFile(t, m, "e")
	wantFile(t, m, "sub/e/h", "z\n")

	// rm, rmdir, and the errors they meet.
	if out, err := shErr(mnt, `rmdir "$M/sub"`); err == nil || !strings.Contains(out, "Directory not empty") {
		t.Errorf("rmdir of a full directory: %v: %s", err, out)
	}
	if out, err := shErr(mnt, `cat "$M/nonesuch"`); err == nil || !strings.Contains(out, "No such file or directory") {
		t.Errorf("cat of a missing file: %v: %s", err, out)
	}
	if out, err := shErr(mnt, `echo x | dd status=none of="$M/gen"`); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("write to a read-only generated file: %v: %s", err, out)
	}
	sh(t, mnt, `rm "$M/sub/e/h" && rmdir "$M/sub/e"`)
	wantNoFile(t, m, "sub/e")
	sh(t, mnt, `rm -r "$M/sub"`)
	wantNoFile(t, m, "sub")

	// Setattr: truncate, chmod, touch.
	sh(t, mnt, `truncate -s 5 "$M/hello" && chmod 600 "$M/hello" && touch -m -d @1000000000 "$M/hello"`)
	wantFile(t, m, "hello", "HELLO")
	if _, mode, _ := m.get("hello"); mode != 0600 {
		t.Errorf("server: hello mode %v, want 0600", mode)
	}
	if got := sh(t, mnt, `stat -c '%s %a %Y' "$M/hello"`); got != "5 600 1000000000\n" {
		t.Errorf("stat hello = %q", got)
	}
	if got := sh(t, mnt, `cat "$M/hello"`); got != "HELLO" {
		t.Errorf("cat hello after truncate = %q", got)
	}
}

// TestCopy copies a 4 MiB file in and out of the mount.
func TestCopy(t *testing.T) {
	m := newMemFS()
	mnt, _ := mount(t, m)
	src := filepath.Join(t.TempDir(), "big")
	data := make([]byte, 4<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0644); err != nil {
		t.Fatal(err)
	}
	sh(t, mnt, `cp "`+src+`" "$M/big" && cmp "`+src+`" "$M/big"`)
	got, _, _ := m.get("big")
	if !bytes.Equal([]byte(got), data) {
		t.Fatalf("server: big differs from what was copied")
	}
	m.mu.Lock()
	maxWrite := m.maxWrite
	m.mu.Unlock()
	if maxWrite > 1<<20 {
		t.Errorf("largest Twrite %d bytes, want at most 1 MiB", maxWrite)
	}
	out := filepath.Join(t.TempDir(), "out")
	sh(t, mnt, `cp "$M/big" "`+out+`" && cmp "`+src+`" "`+out+`" && cmp "$M/big" "`+out+`"`)
}

// TestInterrupt reads an event file, which blocks at its end: new events
// arrive, and an interrupt ends the blocked read (by a Tflush).
func TestInterrupt(t *testing.T) {
	m := newMemFS()
	ev := m.add("events", event, 0444, "first\n")
	mnt, _ := mount(t, m)

	cmd := exec.Command("cat", filepath.Join(mnt, "events"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		done <- cmd.Wait()
	}()
	defer cmd.Process.Kill()

	wantLine := func(want string) {
		t.Helper()
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("cat printed %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("cat printed nothing; want %q", want)
		}
	}
	waitBlocked := func() {
		t.Helper()
		select {
		case <-m.blocked:
		case <-time.After(10 * time.Second):
			t.Fatal("no read blocked on the event file")
		}
	}
	wantLine("first")
	waitBlocked()
	m.appendEvent(ev, "second\n")
	wantLine("second")
	waitBlocked()

	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
			t.Errorf("cat ended with %v, want killed by SIGINT", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cat is still blocked 10s after SIGINT")
	}
	select {
	case <-m.flushed:
	case <-time.After(10 * time.Second):
		t.Error("the server never saw the blocked read flushed")
	}
}

// TestParallel runs a few programs at once on the mount.
func TestParallel(t *testing.T) {
	m := newMemFS()
	m.add("d", regular, plan9.DMDIR|0777, "")
	mnt, _ := mount(t, m)
	sh(t, mnt, `for i in 1 2 3 4 5 6 7 8; do (seq $i 1000 > "$M/d/f$i"; cat "$M/d/f$i" > /dev/null; ls -l "$M/d" > /dev/null) & done; wait`)
	want := sh(t, mnt, `for i in 1 2 3 4 5 6 7 8; do seq $i 1000; done`)
	got := sh(t, mnt, `for i in 1 2 3 4 5 6 7 8; do cat "$M/d/f$i" & wait; done`)
	if got != want {
		t.Errorf("files written in parallel read back wrong")
	}
	for i := 1; i <= 8; i++ {
		wantFile(t, m, "d/f"+strconv.Itoa(i), sh(t, mnt, "seq "+strconv.Itoa(i)+" 1000"))
	}
	sh(t, mnt, `for i in 1 2 3 4 5 6 7 8; do rm "$M/d/f$i" & done; wait; rmdir "$M/d"`)
	wantNoFile(t, m, "d")
}

// TestUnmountDir unmounts from outside; Wait returns.
func TestUnmountDir(t *testing.T) {
	m := newMemFS()
	m.add("x", regular, 0644, "x\n")
	mnt, mt := mount(t, m)
	if got := sh(t, mnt, `cat "$M/x"`); got != "x\n" {
		t.Fatalf("cat x = %q", got)
	}
	if err := UnmountDir(mnt); err != nil {
		t.Fatalf("UnmountDir: %v", err)
	}
	waited := make(chan struct{})
	go func() {
		mt.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after UnmountDir")
	}
	if _, err := os.Stat(filepath.Join(mnt, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after unmount, stat x: %v", err)
	}
}

// TestShortRead: a file that declares more than it serves (a synthetic
// file of a module, say) reads as what it serves, as over 9P, not padded
// with NUL bytes to the declared length.
func TestShortRead(t *testing.T) {
	t.Parallel()
	m := newMemFS()
	f := m.add("short", short, 0444, "8 bytes\n")
	f.declared = 100
	m.add("big", short, 0444, strings.Repeat("x", 10000)).declared = 1 << 20
	// No attribute caching: each open sees the declared length again, as
	// it does once the default 1 s has passed.
	mnt, _ := mountWith(t, m, Options{AttrTimeout: -1, EntryTimeout: -1})
	for range 2 { // the second read would come from the page cache
		if got := sh(t, mnt, `cat "$M/short"`); got != "8 bytes\n" {
			t.Errorf("cat short = %q, want %q", got, "8 bytes\n")
		}
	}
	if got := sh(t, mnt, `wc -c < "$M/big"`); strings.TrimSpace(got) != "10000" {
		t.Errorf("wc -c big = %q, want 10000", got)
	}
	if got := sh(t, mnt, `dd if="$M/short" bs=1 skip=2 count=3 2>/dev/null`); got != "byt" {
		t.Errorf("dd at offset 2 = %q, want %q", got, "byt")
	}
}

// TestShortReadRace: a short read whose reply races a GETATTR (the kernel
// then does not shrink the file to what was read) is not padded either.
func TestShortReadRace(t *testing.T) {
	t.Parallel()
	m := newMemFS()
	m.add("short", short, 0444, "8 bytes\n").declared = 100
	m.holdShort = make(chan chan struct{})
	waiting := make(chan struct{}, 16)
	mnt, _ := mountWith(t, m, Options{AttrTimeout: -1, EntryTimeout: -1,
		attrWait: func() { waiting <- struct{}{} }})
	out := make(chan string, 1)
	go func() {
		got, err := shErr(mnt, `cat "$M/short"`)
		if err != nil {
			got += err.Error()
		}
		out <- got
	}()
	release := <-m.holdShort // the cat's first read is at the server
	statted := make(chan string, 1)
	go func() {
		out, err := shErr(mnt, `stat -c %s "$M/short"`)
		if err != nil {
			out += err.Error()
		}
		statted <- out
	}()
	select {
	case <-waiting: // the stat's GETATTR waits for the read
	case got := <-statted:
		t.Errorf("stat answered (%q) while a read was in flight", got)
		statted <- got
	}
	close(release)
	go func() { // further reads of the short file go through at once
		for r := range m.holdShort {
			close(r)
		}
	}()
	if got := <-out; got != "8 bytes\n" {
		t.Errorf("cat short = %q, want %q", got, "8 bytes\n")
	}
	if got := <-statted; got != "100\n" {
		t.Errorf("stat -c %%s short = %q, want the declared 100", got)
	}
	if got := sh(t, mnt, `cat "$M/short"`); got != "8 bytes\n" {
		t.Errorf("cat short again = %q, want %q", got, "8 bytes\n")
	}
}

// TestReadAhead: as root, the mount raises the kernel's readahead to
// Options.ReadAhead (the kernel offers FUSE 128 KiB), so a sequential
// reader gets Treads of up to 1 MiB, several in flight; the file still
// reads back whole.
func TestReadAhead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may set a mount's readahead")
	}
	m := newMemFS()
	mnt, _ := mountWith(t, m, Options{ReadAhead: 2 << 20})
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("no sysfs readahead for the mount: %v", err)
	}
	if got := strings.TrimSpace(string(b)); got != "2048" {
		t.Errorf("%s = %s, want 2048", p, got)
	}
	data := make([]byte, 8<<20+123)
	rand.Read(data)
	m.add("big", regular, 0644, string(data))
	got, err := os.ReadFile(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes through the mount, not the file's %d", len(got), len(data))
	}
}

// TestOwnReadAhead: with the kernel's readahead at its default (128 KiB
// READs), a sequential reader gets 1 MiB Treads read ahead; the file
// reads back whole, and a write through the mount in the middle of a
// read is seen by the rest of the read (the readahead read before it is
// dropped).
func TestOwnReadAhead(t *testing.T) {
	m := newMemFS()
	mnt, _ := mountWith(t, m, Options{ReadAhead: -1})
	data := make([]byte, 8<<20+123)
	rand.Read(data)
	m.add("big", regular, 0644, string(data))
	p := filepath.Join(mnt, "big")
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes through the mount, not the file's %d", len(got), len(data))
	}
	m.mu.Lock()
	maxRead := m.maxRead
	m.mu.Unlock()
	if maxRead != 1<<20 {
		t.Errorf("largest Tread %d bytes, want 1 MiB (readahead)", maxRead)
	}

	// Read 2 MiB (readahead runs ahead to 6 MiB), write 1 MiB at 3 MiB
	// through another descriptor, read the rest.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The kernel keeps the pages across opens: drop them.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var out []byte
	for len(out) < 2<<20 {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
	}
	patch := bytes.Repeat([]byte{0xA5}, 1<<20)
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(patch, 3<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The write left its pages in the kernel's cache: drop them, so
	// that the rest is read through the mount.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, rest...)
	copy(data[3<<20:], patch)
	if !bytes.Equal(out, data) {
		i := 0
		for i < min(len(out), len(data)) && out[i] == data[i] {
			i++
		}
		t.Fatalf("read %d bytes, first difference at %d: the write was not seen", len(out), i)
	}
}
