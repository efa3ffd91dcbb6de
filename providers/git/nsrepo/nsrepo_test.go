package nsrepo_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"cheshire/plan9"
	"cheshire/providers/git/nsrepo"
	"cheshire/providers/git/smarthttp"
	"cheshire/providers/tmp"
	"cheshire/styx"
	"cheshire/synth"

	gogit "github.com/go-git/go-git/v5"
)

const gitBin = "/usr/bin/git"

// env serves, over TLS on loopback, the repositories of two trees:
// /ns/t/PATH of a tmp tree, through a File that counts reads, and
// /ns/s/PATH of a synth tree of checked files.
type env struct {
	t      *testing.T
	home   string
	srv    *httptest.Server
	tmp    styx.File // root of the tmp tree
	synth  styx.File // root of the synth tree
	mu     sync.Mutex
	reads  map[string]int // opens for reading of the tmp tree's files, by name
	zones  map[string]string
	checks int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if _, err := os.Stat(gitBin); err != nil {
		t.Skip("no git command")
	}
	ctx := context.Background()
	e := &env{t: t, home: t.TempDir(), reads: map[string]int{}, zones: map[string]string{}}
	var err error
	if e.tmp, err = tmp.New("glenda").Attach(ctx, "glenda", "", nil); err != nil {
		t.Fatal(err)
	}
	e.synth = e.newSynth(ctx)
	repos := map[string]*nsrepo.Repos{
		"t": nsrepo.New(func(ctx context.Context) (styx.File, error) {
			f, err := styx.WalkFile(ctx, e.tmp, nil)
			return &counting{File: f, e: e}, err
		}, nsrepo.Options{}),
		"s": nsrepo.New(func(ctx context.Context) (styx.File, error) {
			return styx.WalkFile(ctx, e.synth, nil)
		}, nsrepo.Options{MaxFiles: 20, MaxBytes: 1 << 10}),
	}
	split := func(name string) (*nsrepo.Repos, string, error) {
		tree, path, _ := strings.Cut(name, "/")
		rs := repos[tree]
		if rs == nil {
			return nil, "", fmt.Errorf("git: %s: %w", name, plan9.ErrNotFound)
		}
		return rs, path, nil
	}
	h := smarthttp.Handler("/ns/", smarthttp.Options{
		Nested: true,
		Open: func(name string) (*gogit.Repository, error) {
			rs, path, err := split(name)
			if err != nil {
				return nil, err
			}
			return rs.Open(context.Background(), path)
		},
		Authorize: func(*http.Request, string, bool) (string, error) { return "glenda", nil },
		Receive: func(ctx context.Context, name string, r *gogit.Repository, us []smarthttp.RefUpdate) error {
			rs, path, err := split(name)
			if err != nil {
				return err
			}
			updates := make([]nsrepo.Update, len(us))
			for i, u := range us {
				updates[i] = nsrepo.Update(u)
			}
			return rs.Receive(ctx, path, r, updates)
		},
		TempDir: t.TempDir(),
	})
	e.srv = httptest.NewTLSServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// newSynth returns the root of a synth tree /zones/{a,m,z} of
// checked files, whose writes are refused when a line holds "bad".
func (e *env) newSynth(ctx context.Context) styx.File {
	zones := synth.NewDir("zones", 0775)
	for _, name := range []string{"a", "m", "z"} {
		e.zones[name] = "zone " + name + "\n"
		zones.Add(synth.CheckedReadWrite(name, 0664,
			func(ctx context.Context) ([]byte, error) {
				e.mu.Lock()
				defer e.mu.Unlock()
				return []byte(e.zones[name]), nil
			},
			func(ctx context.Context, data []byte) error {
				e.mu.Lock()
				defer e.mu.Unlock()
				e.zones[name] = string(data)
				return nil
			},
			func(ctx context.Context, text string) error {
				e.mu.Lock()
				e.checks++
				e.mu.Unlock()
				for _, l := range strings.Split(text, "\n") {
					if strings.Contains(l, "bad") {
						return fmt.Errorf("bad record %q", l)
					}
				}
				return nil
			}))
	}
	root := synth.NewDir("/", 0775)
	root.Add(zones)
	f, err := synth.NewServer(root, synth.WithOwner("glenda")).Attach(ctx, "glenda", "", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// counting is a File of the tmp tree that counts its files' opens for
// reading.
type counting struct {
	styx.File
	e    *env
	name string
}

func (c *counting) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	qids, f, err := c.File.Walk(ctx, names)
	name := c.name
	if len(names) > 0 {
		name = names[len(names)-1]
	}
	if f != nil {
		f = &counting{File: f, e: c.e, name: name}
	}
	return qids, f, err
}

func (c *counting) Open(ctx context.Context, mode uint8) (uint32, error) {
	if mode&3 == styx.OREAD && c.Qid().Type&styx.QTDIR == 0 {
		c.e.mu.Lock()
		c.e.reads[c.name]++
		c.e.mu.Unlock()
	}
	return c.File.Open(ctx, mode)
}

func (e *env) readCount(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reads[name]
}

func (e *env) zone(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.zones[name]
}

// put writes a file of the tmp tree, making its directories.
func (e *env) put(path, data string, perm uint32) {
	e.t.Helper()
	ctx := context.Background()
	names := styx.SplitPath(path)
	for i := 1; i < len(names); i++ {
		dir, err := styx.WalkFile(ctx, e.tmp, names[:i-1])
		if err != nil {
			e.t.Fatal(err)
		}
		if f, _, err := dir.Create(ctx, names[i-1], styx.DMDIR|0775, styx.OREAD); err == nil {
			f.Clunk()
		} else {
			dir.Clunk()
		}
	}
	if err := styx.WriteFile(ctx, e.tmp, path, []byte(data), perm); err != nil {
		e.t.Fatalf("write %s: %v", path, err)
	}
}

// get reads a file of the tmp tree; a missing one reads as "<none>".
func (e *env) get(path string) string {
	e.t.Helper()
	b, err := styx.ReadFile(context.Background(), e.tmp, path, -1)
	if errors.Is(err, plan9.ErrNotFound) {
		return "<none>"
	}
	if err != nil {
		e.t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func (e *env) exists(path string) bool {
	f, err := styx.WalkFile(context.Background(), e.tmp, styx.SplitPath(path))
	if err != nil {
		return false
	}
	f.Clunk()
	return true
}

func (e *env) url(path string) string { return e.srv.URL + "/ns/" + path }

// git runs the git command in dir and returns its combined output.
func (e *env) git(dir string, args ...string) (string, error) {
	e.t.Helper()
	cmd := exec.Command(gitBin, append([]string{"-c", "http.sslVerify=false", "-c", "init.defaultBranch=main", "-c", "pull.ff=only"}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{
		"HOME=" + e.home, "PATH=/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=A U Thor", "GIT_AUTHOR_EMAIL=a@example.com",
		"GIT_COMMITTER_NAME=A U Thor", "GIT_COMMITTER_EMAIL=a@example.com",
		"GIT_ASKPASS=/bin/false",
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *env) ok(dir string, args ...string) string {
	e.t.Helper()
	out, err := e.git(dir, args...)
	if err != nil {
		e.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *env) fails(want, dir string, args ...string) string {
	e.t.Helper()
	out, err := e.git(dir, args...)
	if err == nil {
		e.t.Fatalf("git %s succeeded\n%s", strings.Join(args, " "), out)
	}
	if !strings.Contains(out, want) {
		e.t.Fatalf("git %s: output lacks %q:\n%s", strings.Join(args, " "), want, out)
	}
	return out
}

func (e *env) clone(path string) string {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "clone")
	e.ok("", "clone", "-q", e.url(path), dir)
	return dir
}

func (e *env) rev(dir string) string {
	e.t.Helper()
	return strings.TrimSpace(e.ok(dir, "rev-parse", "HEAD"))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestClone clones a subtree: its files, with their execute bits, an
// unreadable file left out and named in the commit message; the same
// commit at the next clone and an "Already up to date" pull; and each
// unchanged file read once over all of them.
func TestClone(t *testing.T) {
	e := newEnv(t)
	e.put("proj/a.txt", "alpha\n", 0644)
	e.put("proj/bin/run", "#!/bin/sh\necho hi\n", 0755)
	e.put("proj/sub/deep/x", "ex\n", 0644)
	e.put("proj/secret", "hidden\n", 0200)
	e.put("proj/empty/.keep-not", "", 0644) // an empty file is a file
	e.put("other", "not in the subtree\n", 0644)

	c1 := e.clone("t/proj")
	for name, want := range map[string]string{"a.txt": "alpha\n", "bin/run": "#!/bin/sh\necho hi\n", "sub/deep/x": "ex\n", "empty/.keep-not": ""} {
		if got := readFile(t, filepath.Join(c1, name)); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(c1, "bin/run")); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("bin/run not executable: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(c1, "secret")); err == nil {
		t.Errorf("unreadable secret cloned")
	}
	log := e.ok(c1, "log", "--format=%an <%ae> %at%n%B")
	for _, want := range []string{"cheshire <cheshire@localhost> 0", "cheshire: /proj", "Not included:", "secret: permission denied"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	c2 := e.clone("t/proj")
	if r1, r2 := e.rev(c1), e.rev(c2); r1 != r2 {
		t.Fatalf("second clone %s, first %s", r2, r1)
	}
	if out := e.ok(c1, "pull"); !strings.Contains(out, "Already up to date") {
		t.Errorf("pull of unchanged subtree: %s", out)
	}
	if n := e.readCount("a.txt"); n != 1 {
		t.Errorf("a.txt read %d times over clones and pull, want 1", n)
	}

	e.put("proj/a.txt", "alpha two\n", 0644)
	e.ok(c1, "pull", "-q")
	if got := readFile(t, filepath.Join(c1, "a.txt")); got != "alpha two\n" {
		t.Errorf("pulled a.txt %q", got)
	}
	if n, m := e.readCount("a.txt"), e.readCount("x"); n != 2 || m != 1 {
		t.Errorf("after a change and a pull: a.txt read %d times, want 2; x %d, want 1", n, m)
	}

	e.fails("not found", "", "clone", "-q", e.url("t/nowhere"), filepath.Join(t.TempDir(), "c"))
	e.fails("git: /other: not a directory", "", "clone", "-q", e.url("t/other"), filepath.Join(t.TempDir(), "c"))
}

// TestPush pushes edits, additions, deletions and a mode change, and
// reads them back through the tree; then pushes again on top, gets
// the pushed commit from a clone, and pulls a change made in the tree
// as a fast-forward.
func TestPush(t *testing.T) {
	e := newEnv(t)
	e.put("proj/a.txt", "alpha\n", 0644)
	e.put("proj/b.txt", "beta\n", 0644)
	e.put("proj/sub/deep/x", "ex\n", 0644)
	c := e.clone("t/proj")

	writeFile(t, filepath.Join(c, "a.txt"), "alpha 2\n")
	writeFile(t, filepath.Join(c, "new/dir/n.txt"), "new\n")
	os.Remove(filepath.Join(c, "sub/deep/x"))
	os.Chmod(filepath.Join(c, "b.txt"), 0o755)
	e.ok(c, "add", "-A")
	e.ok(c, "commit", "-q", "-m", "edit")
	e.ok(c, "push", "-q", "origin", "main")

	for path, want := range map[string]string{"proj/a.txt": "alpha 2\n", "proj/b.txt": "beta\n", "proj/new/dir/n.txt": "new\n", "proj/sub/deep/x": "<none>"} {
		if got := e.get(path); got != want {
			t.Errorf("%s after push: %q, want %q", path, got, want)
		}
	}
	if e.exists("proj/sub") {
		t.Errorf("proj/sub kept after its last file was removed")
	}
	f, err := styx.WalkFile(context.Background(), e.tmp, styx.SplitPath("proj/b.txt"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := f.Stat(context.Background())
	f.Clunk()
	if d.Mode&0111 == 0 {
		t.Errorf("b.txt mode %o after push, want execute bits", d.Mode)
	}

	// A second push builds on the first.
	writeFile(t, filepath.Join(c, "a.txt"), "alpha 3\n")
	e.ok(c, "commit", "-q", "-a", "-m", "again")
	e.ok(c, "push", "-q", "origin", "main")
	if got := e.get("proj/a.txt"); got != "alpha 3\n" {
		t.Errorf("a.txt after second push: %q", got)
	}
	pushed := e.rev(c)
	if got := e.rev(e.clone("t/proj")); got != pushed {
		t.Errorf("clone after push gives %s, want the pushed %s", got, pushed)
	}
	if out := e.ok(c, "pull"); !strings.Contains(out, "Already up to date") {
		t.Errorf("pull after push: %s", out)
	}

	// A change made in the tree is a fast-forward for the client.
	e.put("proj/b.txt", "beta 2\n", 0755)
	e.ok(c, "pull", "-q")
	if got := readFile(t, filepath.Join(c, "b.txt")); got != "beta 2\n" {
		t.Errorf("pulled b.txt %q", got)
	}
	if parent := strings.TrimSpace(e.ok(c, "rev-parse", "HEAD^")); parent != pushed {
		t.Errorf("commit of the change has parent %s, want %s", parent, pushed)
	}
}

// TestRefused pushes to checked files, one of which refuses its new
// content: the push fails with that file's error printed by git, and
// every file is left as it was, including one the push had already
// written.
func TestRefused(t *testing.T) {
	e := newEnv(t)
	c := e.clone("s/zones")
	if got := readFile(t, filepath.Join(c, "m")); got != "zone m\n" {
		t.Fatalf("cloned m: %q", got)
	}
	writeFile(t, filepath.Join(c, "a"), "zone a\nnew record\n")
	writeFile(t, filepath.Join(c, "m"), "zone m\nbad record\n")
	writeFile(t, filepath.Join(c, "z"), "zone z\nanother\n")
	e.ok(c, "commit", "-q", "-a", "-m", "edit")
	out := e.fails(`git: /zones/m: bad record "bad record"`, c, "push", "origin", "main")
	if !strings.Contains(out, "[remote rejected]") {
		t.Errorf("push output:\n%s", out)
	}
	for name, want := range map[string]string{"a": "zone a\n", "m": "zone m\n", "z": "zone z\n"} {
		if got := e.zone(name); got != want {
			t.Errorf("%s after refused push: %q, want %q", name, got, want)
		}
	}

	// Without the bad line the same push goes through.
	writeFile(t, filepath.Join(c, "m"), "zone m\ngood record\n")
	e.ok(c, "commit", "-q", "-a", "-m", "fix")
	e.ok(c, "push", "-q", "origin", "main")
	for name, want := range map[string]string{"a": "zone a\nnew record\n", "m": "zone m\ngood record\n", "z": "zone z\nanother\n"} {
		if got := e.zone(name); got != want {
			t.Errorf("%s after push: %q, want %q", name, got, want)
		}
	}

	// The synth tree allows no new files: the create fails, nothing changes.
	writeFile(t, filepath.Join(c, "new"), "x\n")
	writeFile(t, filepath.Join(c, "a"), "zone a\n")
	e.ok(c, "add", "-A")
	e.ok(c, "commit", "-q", "-m", "add")
	e.fails("git: /zones/new: ", c, "push", "origin", "main")
	if got := e.zone("a"); got != "zone a\nnew record\n" {
		t.Errorf("a after refused create: %q", got)
	}

	// Over the size limit.
	e.ok(c, "reset", "-q", "--hard", "HEAD^")
	writeFile(t, filepath.Join(c, "a"), strings.Repeat("big\n", 300))
	e.ok(c, "commit", "-q", "-a", "-m", "big")
	e.fails("git: /zones: more than 1024 bytes", c, "push", "origin", "main")
}

// TestNonFastForward refuses a forced push that does not build on the
// namespace's commit, and one to another branch.
func TestNonFastForward(t *testing.T) {
	e := newEnv(t)
	e.put("proj/a.txt", "alpha\n", 0644)
	c := e.clone("t/proj")
	writeFile(t, filepath.Join(c, "a.txt"), "rewritten\n")
	e.ok(c, "commit", "-q", "-a", "--amend", "-m", "rewrite")
	e.fails("non-fast-forward", c, "push", "origin", "main")
	e.fails("fetch first", c, "push", "-f", "origin", "main")
	e.fails("refs other than refs/heads/main cannot be pushed", c, "push", "origin", "main:side")
	if got := e.get("proj/a.txt"); got != "alpha\n" {
		t.Errorf("a.txt after refused pushes: %q", got)
	}

	// A push of the same tree as a new commit is accepted and changes nothing.
	c2 := e.clone("t/proj")
	e.ok(c2, "commit", "-q", "--allow-empty", "-m", "nothing")
	e.ok(c2, "push", "-q", "origin", "main")
	if got := e.get("proj/a.txt"); got != "alpha\n" {
		t.Errorf("a.txt after empty push: %q", got)
	}
}
