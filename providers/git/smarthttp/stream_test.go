package smarthttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// recorder is a PushListener that keeps what it hears, one line each,
// and signals each path on a channel.
type recorder struct {
	mu    sync.Mutex
	lines []string
	paths chan string
	done  int
}

func newRecorder() *recorder { return &recorder{paths: make(chan string, 1<<16)} }

func (r *recorder) Path(verb, path string, blob plumbing.Hash) {
	l := verb + " " + path
	if verb != "delete" {
		l += " " + blob.String()
	}
	r.mu.Lock()
	r.lines = append(r.lines, l)
	r.mu.Unlock()
	r.paths <- l
}

func (r *recorder) Ref(name plumbing.ReferenceName, old, new plumbing.Hash, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if why != "" {
		r.lines = append(r.lines, fmt.Sprintf("refused %s %s", name, why))
		return
	}
	r.lines = append(r.lines, fmt.Sprintf("ref %s %s %s", name, old, new))
}

func (r *recorder) Done() {
	r.mu.Lock()
	r.done++
	r.mu.Unlock()
}

// take returns the lines heard since the last take, path lines sorted
// (they come in the order the pack brings their trees).
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.paths) > 0 {
		<-r.paths
	}
	ls := r.lines
	r.lines = nil
	i := 0
	for i < len(ls) && !strings.HasPrefix(ls[i], "ref ") && !strings.HasPrefix(ls[i], "refused ") {
		i++
	}
	slices.Sort(ls[:i])
	return ls
}

// expectDiff is what a listener should hear for a push from old to
// new (commits of the work tree dir), from git diff-tree itself.
func (e *env) expectDiff(dir, old, new string) []string {
	e.t.Helper()
	var out []string
	args := []string{"diff-tree", "-r", "--no-renames", "--root", new}
	if old != "" {
		args = []string{"diff-tree", "-r", "--no-renames", old, new}
	}
	for _, l := range strings.Split(strings.TrimSpace(e.ok(dir, args...)), "\n") {
		if !strings.HasPrefix(l, ":") {
			continue // --root prints the commit first
		}
		meta, path, _ := strings.Cut(l, "\t")
		f := strings.Fields(meta) // :OLDMODE NEWMODE OLDHASH NEWHASH STATUS
		switch f[4] {
		case "A":
			out = append(out, "create "+path+" "+f[3])
		case "M", "T":
			out = append(out, "update "+path+" "+f[3])
		case "D":
			out = append(out, "delete "+path)
		}
	}
	slices.Sort(out)
	return out
}

// TestStreamPaths pushes with the git command and checks that the
// listener hears each changed path as git diff-tree tells it, then the
// ref: a first push, an edit with a directory removed, a file become a
// directory and one moved deep, a branch deleted, an annotated tag,
// and a push that Receive refuses.
func TestStreamPaths(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	var refuse error
	e := newEnv(t, nil, func(o *Options) {
		o.Stream = func(repo string) PushListener { return rec }
		o.Receive = func(context.Context, string, *gogit.Repository, []RefUpdate) error { return refuse }
	})
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	for _, f := range []string{"a", "d/b", "d/e/c", "x", "keep/k"} {
		os.MkdirAll(filepath.Join(work, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(work, f), []byte("first "+f+"\n"), 0o644)
	}
	e.ok(work, "add", "-A")
	e.ok(work, "commit", "-q", "-m", "one")
	c1 := e.rev(work, "HEAD")
	e.ok(work, "remote", "add", "origin", e.url("", "r"))
	e.ok(work, "push", "-q", "origin", "main")
	want := append(e.expectDiff(work, "", c1), fmt.Sprintf("ref refs/heads/main %s %s", plumbing.ZeroHash, c1))
	if got := rec.take(); !slices.Equal(got, want) {
		t.Fatalf("first push: heard\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	os.WriteFile(filepath.Join(work, "a"), []byte("second\n"), 0o644)
	os.RemoveAll(filepath.Join(work, "d", "e"))
	os.Remove(filepath.Join(work, "x"))
	os.MkdirAll(filepath.Join(work, "x", "y"), 0o755)
	os.WriteFile(filepath.Join(work, "x", "y", "z"), []byte("deep\n"), 0o644)
	os.Symlink("a", filepath.Join(work, "link"))
	e.ok(work, "add", "-A")
	e.ok(work, "commit", "-q", "-m", "two")
	c2 := e.rev(work, "HEAD")
	e.ok(work, "push", "-q", "origin", "main", "main:side")
	want = append(e.expectDiff(work, c1, c2), expectDiffNew(e, work, c2)...)
	slices.Sort(want)
	want = append(want, fmt.Sprintf("ref refs/heads/main %s %s", c1, c2), fmt.Sprintf("ref refs/heads/side %s %s", plumbing.ZeroHash, c2))
	if got := rec.take(); !slices.Equal(got, want) {
		t.Fatalf("second push: heard\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	e.ok(work, "push", "-q", "origin", ":side")
	want = e.expectDiffGone(work, c2)
	want = append(want, fmt.Sprintf("ref refs/heads/side %s %s", c2, plumbing.ZeroHash))
	if got := rec.take(); !slices.Equal(got, want) {
		t.Fatalf("branch delete: heard\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	e.ok(work, "tag", "-a", "-m", "v1", "v1")
	e.ok(work, "push", "-q", "origin", "v1")
	tag := e.rev(work, "v1")
	want = append(expectDiffNew(e, work, c2), fmt.Sprintf("ref refs/tags/v1 %s %s", plumbing.ZeroHash, tag))
	if got := rec.take(); !slices.Equal(got, want) {
		t.Fatalf("tag push: heard\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	refuse = errors.New("git: no thanks")
	c3 := e.commit(work, "a", "third\n")
	e.fails("no thanks", work, "push", "origin", "main")
	want = append(e.expectDiff(work, c2, c3), "refused refs/heads/main git: no thanks")
	if got := rec.take(); !slices.Equal(got, want) {
		t.Fatalf("refused push: heard\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.done != 5 {
		t.Fatalf("Done called %d times for 5 pushes", rec.done)
	}
}

// expectDiffNew is what a new ref at commit c should be heard as: every
// file of its tree created.
func expectDiffNew(e *env, dir, c string) []string {
	e.t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(e.ok(dir, "ls-tree", "-r", c)), "\n") {
		meta, path, _ := strings.Cut(l, "\t")
		f := strings.Fields(meta) // MODE TYPE HASH
		out = append(out, "create "+path+" "+f[2])
	}
	slices.Sort(out)
	return out
}

// expectDiffGone is what a ref deleted at commit c should be heard as.
func (e *env) expectDiffGone(dir, c string) []string {
	e.t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(e.ok(dir, "ls-tree", "-r", "--name-only", c)), "\n") {
		out = append(out, "delete "+l)
	}
	slices.Sort(out)
	return out
}

// TestStreamBeforePackEnds sends a push's pack by hand and holds back
// its last 20 bytes (the checksum): every path must be heard before
// they are sent, that is, while the pack is still arriving, and the
// push must then succeed.
func TestStreamBeforePackEnds(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := newEnv(t, nil, func(o *Options) {
		o.Stream = func(repo string) PushListener { return rec }
	})
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	const files = 50
	for i := range files {
		p := filepath.Join(work, fmt.Sprintf("dir%d", i%5), fmt.Sprintf("f%d", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, bytes.Repeat([]byte(fmt.Sprintf("file %d\n", i)), 100), 0o644)
	}
	e.ok(work, "add", "-A")
	e.ok(work, "commit", "-q", "-m", "one")
	c1 := e.rev(work, "HEAD")

	cmd := exec.Command(gitBin, "pack-objects", "--revs", "--stdout", "-q")
	cmd.Dir = work
	cmd.Stdin = strings.NewReader(c1 + "\n")
	pack, err := cmd.Output()
	if err != nil {
		t.Fatalf("git pack-objects: %v", err)
	}

	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", e.url("", "r")+"/git-receive-pack", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	var head bytes.Buffer
	pktf(&head, "%s %s refs/heads/main\x00report-status\n", plumbing.ZeroHash, c1)
	flushPkt(&head)
	if _, err := pw.Write(append(head.Bytes(), pack[:len(pack)-20]...)); err != nil {
		t.Fatal(err)
	}
	for range files { // every path, heard with the checksum still held back
		<-rec.paths
	}
	if _, err := pw.Write(pack[len(pack)-20:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	r := <-res
	if r.err != nil || !strings.Contains(r.body, "ok refs/heads/main") {
		t.Fatalf("push: %v\n%q", r.err, r.body)
	}
	if got := e.rev(filepath.Join(e.root, "r.git"), "refs/heads/main"); got != c1 {
		t.Fatalf("main is %s, want %s", got, c1)
	}
}
