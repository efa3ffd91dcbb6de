package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitCmd runs the git CLI in dir with a private HOME and no system
// config, failing the test on error.
func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=glenda", "GIT_AUTHOR_EMAIL=glenda@example.org",
		"GIT_COMMITTER_NAME=glenda", "GIT_COMMITTER_EMAIL=glenda@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestGitFiles: a repository made through /git/ctl of a running node is
// an ordinary bare repository in the data directory; a commit pushed to
// it with the git CLI reads back through /git (log, the tree of a
// branch, the ref), and a ref write that does not compare-and-swap is
// refused at the write.
func TestGitFiles(t *testing.T) {
	t.Parallel()
	dir := shortTemp(t)
	n := startNode(t, dir)
	if _, err := n.run("create demo\n", "9p", "write", "/git/ctl"); err != nil {
		t.Fatalf("create: %v", err)
	}
	work := t.TempDir()
	gitCmd(t, work, "clone", "-q", filepath.Join(dir, "git", "demo.git"), "c")
	c := filepath.Join(work, "c")
	os.WriteFile(filepath.Join(c, "README"), []byte("hello from git\n"), 0644)
	gitCmd(t, c, "add", "README")
	gitCmd(t, c, "commit", "-q", "-m", "first")
	gitCmd(t, c, "push", "-q", "origin", "HEAD:main")
	head := strings.TrimSpace(gitCmd(t, c, "rev-parse", "HEAD"))

	if got := must9p(t, n, "read", "/git/demo/refs/heads/main"); strings.TrimSpace(got) != head {
		t.Errorf("refs/heads/main = %q, want %s", got, head)
	}
	if got := must9p(t, n, "read", "/git/demo/log"); !strings.HasPrefix(got, head+" glenda@example.org ") || !strings.HasSuffix(got, " first\n") {
		t.Errorf("log = %q", got)
	}
	if got := must9p(t, n, "read", "/git/demo/tree/main/README"); got != "hello from git\n" {
		t.Errorf("tree/main/README = %q", got)
	}
	stale := strings.Repeat("1", 40)
	if _, err := n.run(stale+" "+head+"\n", "9p", "write", "/git/demo/refs/heads/main"); err == nil || !strings.Contains(err.Error(), "moved") {
		t.Errorf("a compare-and-swap from a stale hash: %v, want the ref moved", err)
	}
}
