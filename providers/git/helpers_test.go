package git

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/styx"
)

// testEnv is a Repos in a temporary directory, attached as glenda, and a
// home for the git command.
type testEnv struct {
	t    *testing.T
	r    *Repos
	dir  string // the data directory
	home string
	root styx.File
	ctx  context.Context
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	dir := t.TempDir()
	r, err := New(dir, Options{Owner: "glenda"})
	if err != nil {
		t.Fatal(err)
	}
	return attachEnv(t, r, dir)
}

func attachEnv(t *testing.T, r *Repos, dir string) *testEnv {
	t.Helper()
	ctx := context.Background()
	root, err := r.Attach(ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Clunk() })
	return &testEnv{t: t, r: r, dir: dir, home: t.TempDir(), root: root, ctx: ctx}
}

// git runs the git command in dir and returns its output, trimmed.
func (e *testEnv) git(dir string, args ...string) string {
	e.t.Helper()
	cmd := exec.Command("/usr/bin/git", append([]string{"-c", "user.name=Glenda", "-c", "user.email=glenda@example.com",
		"-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+e.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_DATE=1700000000 +0000", "GIT_COMMITTER_DATE=1700000000 +0000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// bare is the path of repository name.
func (e *testEnv) bare(name string) string {
	return filepath.Join(e.dir, "git", name+".git")
}

// clone clones repository name into a new directory and returns it.
func (e *testEnv) clone(name string) string {
	e.t.Helper()
	w := filepath.Join(e.t.TempDir(), name)
	e.git(e.home, "clone", "-q", e.bare(name), w)
	return w
}

// writeWork writes file rel of the clone w.
func (e *testEnv) writeWork(w, rel, data string, mode os.FileMode) {
	e.t.Helper()
	p := filepath.Join(w, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) read(p string) string {
	e.t.Helper()
	s, err := testutil.ReadFile(e.ctx, e.root, p)
	if err != nil {
		e.t.Fatalf("read %s: %v", p, err)
	}
	return s
}

func (e *testEnv) write(p, data string) error {
	return testutil.WriteFile(e.ctx, e.root, p, data)
}

func (e *testEnv) mustWrite(p, data string) {
	e.t.Helper()
	if err := e.write(p, data); err != nil {
		e.t.Fatalf("write %q to %s: %v", data, p, err)
	}
}

// writeOnly writes data to p in one write and returns that write's
// error, as echo sees it; the clunk's is dropped.
func (e *testEnv) writeOnly(p, data string) error {
	f, err := testutil.WalkOpen(e.ctx, e.root, p, styx.OWRITE)
	if err != nil {
		return err
	}
	defer f.Clunk()
	_, err = f.Write(e.ctx, []byte(data), 0)
	return err
}

// stat stats p.
func (e *testEnv) stat(p string) (styx.Dir, error) {
	names := styx.SplitPath(p)
	qids, f, err := e.root.Walk(e.ctx, names)
	if err != nil {
		return styx.Dir{}, err
	}
	defer f.Clunk()
	if len(qids) < len(names) {
		return styx.Dir{}, os.ErrNotExist
	}
	return f.Stat(e.ctx)
}

// create creates file name in directory dir, writes data to it (if not
// empty) and clunks it, returning the first error.
func (e *testEnv) create(dir, name string, perm uint32, data string) error {
	names := styx.SplitPath(dir)
	_, d, err := e.root.Walk(e.ctx, names)
	if err != nil {
		return err
	}
	mode := uint8(styx.OWRITE)
	if perm&styx.DMDIR != 0 {
		mode = styx.OREAD
	}
	f, _, err := d.Create(e.ctx, name, perm, mode)
	d.Clunk()
	if err != nil {
		return err
	}
	if data != "" {
		if _, err := f.Write(e.ctx, []byte(data), 0); err != nil {
			f.Clunk()
			return err
		}
	}
	return f.Clunk()
}

// remove removes p.
func (e *testEnv) remove(p string) error {
	_, f, err := e.root.Walk(e.ctx, styx.SplitPath(p))
	if err != nil {
		return err
	}
	defer f.Clunk()
	return f.Remove(e.ctx)
}

// wantErr fails unless err is an error containing want.
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %v, want one containing %q", what, err, want)
	}
}
