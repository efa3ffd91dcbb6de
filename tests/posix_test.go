package tests

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"cheshire/internal/testutil"
)

// What a POSIX program sees through `cheshire mount`: each row of the
// table in fusemount/README.md, on the node's /tmp,
// on a #host export and on /tmp of a remote node imported by dial string.

// posixTrees starts a node with a second node imported into it, mounts
// the first with FUSE (with opts, if any) and returns the three trees to
// try, by name, and the mount point.
func posixTrees(t *testing.T, opts ...string) (map[string]string, string) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse on this machine")
	}
	port := strconv.Itoa(testutil.FreePort(t))
	startNode(t, shortTemp(t), "--listen", "tcp!127.0.0.1!"+port) // the remote node
	n := startNode(t, shortTemp(t))
	host := filepath.Join(shortTemp(t), "export")
	if err := os.Mkdir(host, 0777); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"mount -c '#host' /n/host " + host, "mount -c tcp!127.0.0.1!" + port + " /n/remote"} {
		if _, err := n.run(line+"\n", "9p", "write", "/ns/ctl"); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
	base := shortTemp(t)
	os.Chmod(base, 0755) // for TestPosixAllowOther's other user
	mnt := filepath.Join(base, "m")
	os.Mkdir(mnt, 0755)
	if out, err := n.run("", append(append([]string{"mount"}, opts...), mnt)...); err != nil {
		t.Fatalf("cheshire mount: %v %s", err, out)
	}
	t.Cleanup(func() {
		if _, err := n.run("", "umount", mnt); err != nil {
			t.Errorf("cheshire umount: %v", err)
		}
	})
	return map[string]string{
		"tmp":    mnt + "/tmp",
		"host":   mnt + "/n/host",
		"remote": mnt + "/n/remote/tmp",
	}, mnt
}

// eachTree runs f in a fresh directory of each tree.
func eachTree(t *testing.T, trees map[string]string, f func(t *testing.T, dir string)) {
	for _, name := range []string{"tmp", "host", "remote"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(trees[name], strings.ReplaceAll(t.Name(), "/", "_"))
			if err := os.Mkdir(dir, 0755); err != nil {
				t.Fatal(err)
			}
			f(t, dir)
		})
	}
}

// retry runs a system call again while it fails with EINTR, as the os
// package does: the Go runtime's preemption signals interrupt calls on
// a FUSE mount (the kernel passes the interruption to the mount, which
// ends the request), and syscall does not retry them by itself.
func retry(call func() error) error {
	for {
		if err := call(); err != syscall.EINTR {
			return err
		}
	}
}

// retry1 is retry for a call that returns a value too.
func retry1[T any](call func() (T, error)) (T, error) {
	for {
		v, err := call()
		if err != syscall.EINTR {
			return v, err
		}
	}
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

func stat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := retry(func() error { return syscall.Stat(p, &st) }); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return &st
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("data"), 0644); err != nil {
		t.Fatal(err)
	}
}

const utimeOmit = (1 << 30) - 2 // UTIME_OMIT of utimensat(2)

func TestPosixThroughFUSE(t *testing.T) {
	trees, _ := posixTrees(t)

	// Limits of 9P2000, each failing the same way on every tree.
	t.Run("limits", func(t *testing.T) { eachTree(t, trees, posixLimits) })
	// Defects of issue 21, fixed.
	t.Run("fixed", func(t *testing.T) { eachTree(t, trees, posixFixed) })
}

func posixLimits(t *testing.T, dir string) {
	{
		f := dir + "/f"
		touch(t, f)
		wantErrno(t, "symlink", retry(func() error { return syscall.Symlink("f", dir+"/sym") }), syscall.EPERM)
		wantErrno(t, "link", retry(func() error { return syscall.Link(f, dir+"/hard") }), syscall.EPERM)
		wantErrno(t, "mknod chr", retry(func() error { return syscall.Mknod(dir+"/chr", syscall.S_IFCHR|0600, 0x0103) }), syscall.EPERM)
		wantErrno(t, "mkfifo", retry(func() error { return syscall.Mkfifo(dir+"/fifo", 0600) }), syscall.EPERM)
		interrupted := false
		err := retry(func() error {
			err := syscall.Mknod(dir+"/reg", syscall.S_IFREG|0600, 0)
			interrupted = interrupted || err == syscall.EINTR
			return err
		})
		if err != nil && !(interrupted && err == syscall.EEXIST) { // an interrupted try may have made it
			t.Errorf("mknod of a regular file: %v", err)
		}
		s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		wantErrno(t, "bind AF_UNIX", retry(func() error { return syscall.Bind(s, &syscall.SockaddrUnix{Name: dir + "/sock"}) }), syscall.EPERM)
		syscall.Close(s)
		for _, name := range []string{"sym", "hard", "chr", "fifo", "sock"} {
			if _, err := os.Lstat(dir + "/" + name); !os.IsNotExist(err) {
				t.Errorf("%s exists after the failure (%v)", name, err)
			}
		}

		// Rename across directories: EXDEV, and mv copies instead.
		os.Mkdir(dir+"/sub", 0755)
		wantErrno(t, "rename across directories", retry(func() error { return syscall.Rename(f, dir+"/sub/f") }), syscall.EXDEV)
		if out, err := exec.Command("mv", f, dir+"/sub/f").CombinedOutput(); err != nil {
			t.Errorf("mv: %v %s", err, out)
		} else if b, _ := os.ReadFile(dir + "/sub/f"); string(b) != "data" {
			t.Errorf("after mv: %q", b)
		}

		// atime alone; times in whole seconds.
		g := dir + "/g"
		touch(t, g)
		before := stat(t, g)
		ts := []syscall.Timespec{{Sec: 1000000000, Nsec: 0}, {Nsec: utimeOmit}}
		if err := retry(func() error { return syscall.UtimesNano(g, ts) }); err != nil {
			t.Errorf("utimensat atime alone: %v", err)
		}
		st := stat(t, g)
		if st.Atim.Sec != 1000000000 || st.Mtim != before.Mtim {
			t.Errorf("atime alone: atime %v mtime %v (was %v)", st.Atim, st.Mtim, before.Mtim)
		}
		ts = []syscall.Timespec{{Sec: 1200000000, Nsec: 7}, {Sec: 1300000000, Nsec: 500000000}}
		if err := retry(func() error { return syscall.UtimesNano(g, ts) }); err != nil {
			t.Errorf("utimensat: %v", err)
		}
		st = stat(t, g)
		if st.Atim != (syscall.Timespec{Sec: 1200000000}) || st.Mtim != (syscall.Timespec{Sec: 1300000000}) {
			t.Errorf("nanosecond times: atime %v mtime %v, want whole seconds", st.Atim, st.Mtim)
		}

		// Create modes are and-ed with the directory's (Plan 9), on top
		// of the umask.
		priv := dir + "/priv"
		os.Mkdir(priv, 0700)
		if err := os.Chmod(priv, 0700); err != nil {
			t.Fatal(err)
		}
		if fd, err := retry1(func() (int, error) { return syscall.Open(priv+"/f", syscall.O_CREAT|syscall.O_WRONLY, 0644) }); err != nil {
			t.Error(err)
		} else {
			syscall.Close(fd)
		}
		if m := stat(t, priv+"/f").Mode & 07777; m != 0600 {
			t.Errorf("file created 0644 in a 0700 directory: %o, want 0600", m)
		}
		os.Mkdir(priv+"/d", 0755)
		if m := stat(t, priv+"/d").Mode & 07777; m != 0700 {
			t.Errorf("directory made 0755 in a 0700 directory: %o, want 0700", m)
		}

		// Owners are names: every file is the mounting user's, and only
		// a change to that owner succeeds (changing nothing).
		st = stat(t, g)
		if int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
			t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, os.Getuid(), os.Getgid())
		}
		wantErrno(t, "chown to another", retry(func() error { return syscall.Chown(g, 12345, -1) }), syscall.EPERM)
		wantErrno(t, "chgrp to another", retry(func() error { return syscall.Chown(g, -1, 12345) }), syscall.EPERM)
		wantErrno(t, "lchown to another", retry(func() error { return syscall.Lchown(g, 12345, 12345) }), syscall.EPERM)
		if err := retry(func() error { return syscall.Chown(g, os.Getuid(), os.Getgid()) }); err != nil {
			t.Errorf("chown to the owner: %v", err)
		}
	}
}

func posixFixed(t *testing.T, dir string) {
	{
		f := dir + "/f"
		touch(t, f)

		// setuid, setgid, sticky: refused, never dropped.
		for _, m := range []uint32{04777, 02777, 01777} {
			wantErrno(t, "chmod "+strconv.FormatUint(uint64(m), 8), retry(func() error { return syscall.Chmod(f, m) }), syscall.EPERM)
		}
		wantErrno(t, "chmod 01777 of a directory", retry(func() error { return syscall.Chmod(dir, 01777) }), syscall.EPERM)
		if m := stat(t, f).Mode & 07777; m != 0644 {
			t.Errorf("mode after refused chmods: %o", m)
		}

		// Names: 255 bytes work, 256 are ENAMETOOLONG.
		ok, long := strings.Repeat("n", 255), strings.Repeat("n", 256)
		if err := os.Mkdir(dir+"/"+ok, 0755); err != nil {
			t.Errorf("mkdir of 255 bytes: %v", err)
		}
		wantErrno(t, "mkdir of 256 bytes", retry(func() error { return syscall.Mkdir(dir+"/"+long, 0755) }), syscall.ENAMETOOLONG)
		_, err := retry1(func() (int, error) { return syscall.Open(dir+"/"+long, syscall.O_CREAT|syscall.O_WRONLY, 0644) })
		wantErrno(t, "create of 256 bytes", err, syscall.ENAMETOOLONG)
		wantErrno(t, "rename to 256 bytes", retry(func() error { return syscall.Rename(f, dir+"/"+long) }), syscall.ENAMETOOLONG)
		var st syscall.Stat_t
		wantErrno(t, "stat of 256 bytes", retry(func() error { return syscall.Stat(dir+"/"+long, &st) }), syscall.ENAMETOOLONG)

		// An open, unlinked file keeps its data.
		u := dir + "/unlinked"
		fd, err := retry1(func() (int, error) { return syscall.Open(u, syscall.O_CREAT|syscall.O_RDWR, 0644) })
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		if _, err := retry1(func() (int, error) { return syscall.Pwrite(fd, []byte("kept"), 0) }); err != nil {
			t.Fatal(err)
		}
		if err := retry(func() error { return syscall.Unlink(u) }); err != nil {
			t.Fatal(err)
		}
		if _, err := retry1(func() (int, error) { return syscall.Pwrite(fd, []byte("!"), 4) }); err != nil {
			t.Errorf("write after unlink: %v", err)
		}
		buf := make([]byte, 16)
		if n, err := retry1(func() (int, error) { return syscall.Pread(fd, buf, 0) }); err != nil || string(buf[:n]) != "kept!" {
			t.Errorf("read after unlink: %q %v", buf[:max(n, 0)], err)
		}
		if err := retry(func() error { return syscall.Fstat(fd, &st) }); err != nil || st.Nlink != 0 || st.Size != 5 {
			t.Errorf("fstat after unlink: nlink %d size %d %v", st.Nlink, st.Size, err)
		}

		// Truncating beyond any size is EFBIG.
		wantErrno(t, "truncate 999999999999999", retry(func() error { return syscall.Truncate(f, 999999999999999) }), syscall.EFBIG)

		// chmod moves ctime; mtime stays.
		before := stat(t, f)
		if err := retry(func() error { return syscall.Chmod(f, 0600) }); err != nil {
			t.Fatal(err)
		}
		after := stat(t, f)
		if !later(after.Ctim, before.Ctim) || after.Mtim != before.Mtim {
			t.Errorf("chmod: ctime %v → %v, mtime %v → %v", before.Ctim, after.Ctim, before.Mtim, after.Mtim)
		}

		// Directories have one link, however many subdirectories.
		os.Mkdir(dir+"/sub", 0755)
		if n := stat(t, dir).Nlink; n != 1 {
			t.Errorf("directory nlink %d, want 1", n)
		}
	}
}

func later(a, b syscall.Timespec) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}

// TestPosixAllowOther: without -o allow_other only the mounting user
// enters the mount; with it another user does too, reaching the node as
// the mounting user; with default_permissions the kernel applies the
// "other" permission bits to them.
func TestPosixAllowOther(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a command as another user")
	}
	const nobody = 65534
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	for _, c := range []struct {
		opts          []string
		read, private bool // nobody can read a 0644 file; a 0600 one
	}{
		{nil, false, false},
		{[]string{"-o", "allow_other"}, true, true},
		{[]string{"-o", "allow_other,default_permissions"}, true, false},
	} {
		t.Run(strings.Join(append([]string{"mount"}, c.opts...), " "), func(t *testing.T) {
			trees, _ := posixTrees(t, c.opts...)
			dir := trees["tmp"]
			os.WriteFile(dir+"/public", []byte("public"), 0644)
			os.WriteFile(dir+"/private", []byte("private"), 0600)
			if err := os.Chmod(dir+"/private", 0600); err != nil {
				t.Fatal(err)
			}
			out, err := asNobody("cat", dir+"/public")
			if got := err == nil && out == "public"; got != c.read {
				t.Errorf("nobody reads a 0644 file: %v (%q, %v)", got, out, err)
			}
			out, err = asNobody("cat", dir+"/private")
			if got := err == nil && out == "private"; got != c.private {
				t.Errorf("nobody reads a 0600 file: %v (%q, %v)", got, out, err)
			}
		})
	}
}
