package tests

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mount mounts n's namespace at a new directory with `cheshire mount`.
func mount(t *testing.T, n *node) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse on this machine")
	}
	mnt := filepath.Join(shortTemp(t), "mnt")
	os.Mkdir(mnt, 0755)
	if out, err := n.run("", "mount", mnt); err != nil {
		t.Fatalf("cheshire mount: %v %s", err, out)
	}
	t.Cleanup(func() {
		if _, err := n.run("", "umount", mnt); err != nil {
			t.Errorf("cheshire umount: %v", err)
		}
	})
	return mnt
}

func TestShellToolsThroughFUSE(t *testing.T) {
	n := startNode(t, shortTemp(t))
	m := mount(t, n)
	sh(t, "cd "+m+" && ls -l / >/dev/null && ls -l node tmp")
	if got := sh(t, "cat "+m+"/node/version"); !strings.Contains(got, ".") {
		t.Errorf("version %q", got)
	}
	tmp := m + "/tmp"
	sh(t, "echo hello > "+tmp+"/a && echo world >> "+tmp+"/a")
	if got := sh(t, "cat "+tmp+"/a"); got != "hello\nworld\n" {
		t.Errorf("echo/append: %q", got)
	}
	if got := sh(t, "stat -c %s "+tmp+"/a"); strings.TrimSpace(got) != "12" {
		t.Errorf("size after append: %q", got)
	}
	sh(t, "echo new > "+tmp+"/a")
	if got := sh(t, "cat "+tmp+"/a"); got != "new\n" {
		t.Errorf("truncating write: %q", got)
	}
	sh(t, "mkdir -p "+tmp+"/d/e && echo needle > "+tmp+"/d/e/hay && mv "+tmp+"/a "+tmp+"/b")
	if got := sh(t, "cd "+tmp+" && find . | sort"); got != ".\n./b\n./d\n./d/e\n./d/e/hay\n" {
		t.Errorf("find: %q", got)
	}
	if got := sh(t, "grep -r needle "+tmp); !strings.Contains(got, "d/e/hay:needle") {
		t.Errorf("grep -r: %q", got)
	}
	sh(t, "rm "+tmp+"/b && rm -r "+tmp+"/d")
	if got := sh(t, "ls -A "+tmp); got != "" {
		t.Errorf("after rm: %q", got)
	}
	// Errors arrive as the right errno.
	out, err := exec.Command("cat", tmp+"/missing").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No such file or directory") {
		t.Errorf("cat missing: %v %s", err, out)
	}
	out, err = exec.Command("bash", "-c", "echo x > "+m+"/node/id").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ermission denied") {
		t.Errorf("write to read-only file: %v %s", err, out)
	}
	// Errors with detail: the known text in them gives the errno.
	for _, c := range []struct{ script, want string }{
		{"echo 'frob /a /b' > " + m + "/ns/ctl", "Invalid argument"},   // unknown control message "frob /a /b"
		{"echo 'bind /tmp' > " + m + "/ns/ctl", "Invalid argument"},    // bad # args
		{"echo 'bind /nope /n/x' > " + m + "/ns/ctl", "No such file"},  // line 1: bind: /nope: file not found
		{"touch " + m + "/node/newfile", "Permission denied"},          // a read-only directory
		{"echo 'mount -c #nosuch /n/x' > " + m + "/ns/ctl", "No such"}, // #nosuch: no such server
	} {
		out, err := exec.Command("bash", "-c", c.script).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %v %s, want %q", c.script, err, out, c.want)
		}
	}
}

func TestBigFileThroughFUSE(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB copy skipped in -short")
	}
	n := startNode(t, shortTemp(t))
	m := mount(t, n)
	src := filepath.Join(t.TempDir(), "big")
	sh(t, "head -c 104857600 /dev/urandom > "+src)
	sh(t, "cp "+src+" "+m+"/tmp/big && cmp "+src+" "+m+"/tmp/big")
	if got := sh(t, "stat -c %s "+m+"/tmp/big"); strings.TrimSpace(got) != "104857600" {
		t.Errorf("size %q", got)
	}
	sh(t, "rm "+m+"/tmp/big")
}

func TestTailFollowsNodeLog(t *testing.T) {
	n := startNode(t, shortTemp(t))
	m := mount(t, n)
	tail := exec.Command("tail", "-f", m+"/node/log")
	out, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { tail.Process.Kill(); tail.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Something happens: a namespace change is logged.
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("tail -f ended")
			}
			if strings.Contains(l, "namespace changed") {
				return
			}
		case <-tick.C:
			// tail may open the file after the first change: keep changing.
			if _, err := n.run("bind /tmp /n/t"+string(rune('a'+i%26))+"\n", "9p", "write", "/ns/ctl"); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("no log line reached tail -f")
		}
	}
}

// TestMountPapercuts: a mount started with the node does not lose the
// race for its socket; a second mount on a mount point is refused; a
// busy mount's umount says what to do, and -z does it; -D without -f is
// refused; with no node, the error says so.
func TestMountPapercuts(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse on this machine")
	}
	t.Parallel()
	dir := shortTemp(t)
	mnt := filepath.Join(shortTemp(t), "mnt")
	os.Mkdir(mnt, 0755)
	// serve & then mount at once, as the README does.
	n := &node{t: t, dir: dir, logs: &syncBuffer{}, sock: filepath.Join(dir, "cheshire.sock")}
	n.cmd = exec.Command(binary(t), "serve", "--dir", dir, "--https", "none")
	n.cmd.Stderr, n.cmd.Stdout = n.logs, n.logs
	for mod := range map[string]bool{"dns": true, "dht": true} {
		os.MkdirAll(filepath.Join(dir, "modules", mod), 0700)
		os.WriteFile(filepath.Join(dir, "modules", mod, "config"), []byte("listen 127.0.0.1:0\n"), 0600)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	if out, err := n.run("", "mount", mnt); err != nil {
		t.Fatalf("mount right after serve: %v %s\nnode log:\n%s", err, out, n.logs)
	}
	unmounted := false
	t.Cleanup(func() {
		if !unmounted {
			n.run("", "umount", "-z", mnt)
		}
	})
	if got := sh(t, "cat "+mnt+"/node/id"); len(strings.TrimSpace(got)) != 52 {
		t.Errorf("node/id through the mount: %q", got)
	}
	if out, err := n.run("", "mount", mnt); err == nil || !strings.Contains(err.Error(), "already a mount point") {
		t.Errorf("second mount: %v %s", err, out)
	}
	if out, err := n.run("", "mount", "-D", mnt+"x"); err == nil || !strings.Contains(err.Error(), "-D needs -f") {
		t.Errorf("mount -D without -f: %v %s", err, out)
	}
	// A process working in the mount keeps it busy.
	busy := exec.Command("sleep", "60")
	busy.Dir = mnt + "/tmp"
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { busy.Process.Kill(); busy.Wait() }()
	if out, err := n.run("", "umount", mnt); err == nil || !strings.Contains(err.Error(), "umount -z") || strings.Count(err.Error(), "\n") > 1 {
		t.Errorf("umount of a busy mount: %v %s", err, out)
	}
	if out, err := n.run("", "umount", "-z", mnt); err != nil {
		t.Fatalf("umount -z: %v %s", err, out)
	}
	unmounted = true
	if out, err := n.run("", "umount", mnt); err == nil || !strings.Contains(err.Error(), "not a mount point") {
		t.Errorf("umount of a plain directory: %v %s", err, out)
	}
	// No node at all.
	cmd := exec.Command(binary(t), "9p", "read", "/node/id")
	cmd.Env = append(os.Environ(), "CHESHIRE_DIR="+shortTemp(t))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "is `cheshire serve` running?") {
		t.Errorf("9p with no node: %v %s", err, out)
	}
}
