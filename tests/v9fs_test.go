package tests

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestLinuxV9fs mounts a node with the real Linux kernel client inside
// qemu (tests/v9fs/v9fs-check.sh) and runs its file operations in /tmp.
func TestLinuxV9fs(t *testing.T) {
	if testing.Short() || os.Getenv("SKIP_V9FS") != "" {
		t.Skip("qemu boot skipped in -short or with SKIP_V9FS set")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (./test.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	n := startNode(t, shortTemp(t), "--listen", "tcp!127.0.0.1!"+strconv.Itoa(port))
	cmd := exec.Command("bash", "v9fs/v9fs-check.sh", strconv.Itoa(port), "tmp")
	cmd.Env = append(os.Environ(), "V9FS_BIG_MB=8", "V9FS_MSIZE=1048576")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !strings.Contains(string(out), "v9fs-check: ok") {
		t.Fatalf("v9fs check failed: %v; node log:\n%s", err, n.logs)
	}
}
