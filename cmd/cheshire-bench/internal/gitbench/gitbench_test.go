// Package gitbench measures cheshire's smart-HTTP git server against
// Debian's git http-backend (behind net/http/cgi) on the same bare
// repository, with the real git CLI as the client (BenchmarkClone: a
// full clone; BenchmarkPush: a commit of 100 new files pushed):
//
//	go test -run '^$' -bench . -benchtime 3x ./cmd/cheshire-bench/internal/gitbench
//
// The repository has GITBENCH_FILES files (default 2,000) of about
// GITBENCH_KB KiB each (default 25, random so that they do not compress:
// about 50 MiB), written over GITBENCH_COMMITS commits (default 500) by
// git fast-import. It is made once per run in a temporary directory.
// These are benchmarks, not tests: the suite does not run them.
package gitbench

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	gogit "github.com/go-git/go-git/v5"

	"cheshire/providers/git"
	"cheshire/providers/git/smarthttp"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

var (
	repoOnce sync.Once
	repoDir  string
	repoErr  error
)

// benchRepo makes the bare repository once: files written over commits
// with git fast-import.
func benchRepo(b *testing.B) string {
	b.Helper()
	repoOnce.Do(func() {
		files, kb, commits := envInt("GITBENCH_FILES", 2000), envInt("GITBENCH_KB", 25), envInt("GITBENCH_COMMITS", 500)
		dir, err := os.MkdirTemp("", "gitbench")
		if err != nil {
			repoErr = err
			return
		}
		repoDir = filepath.Join(dir, "bench.git")
		if out, err := exec.Command("git", "init", "-q", "--bare", repoDir).CombinedOutput(); err != nil {
			repoErr = fmt.Errorf("git init: %v: %s", err, out)
			return
		}
		cmd := exec.Command("git", "fast-import", "--quiet")
		cmd.Dir = repoDir
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			repoErr = err
			return
		}
		w := bufio.NewWriter(in)
		perCommit := (files + commits - 1) / commits
		data := make([]byte, kb*1024)
		n := 0
		for c := 0; c < commits; c++ {
			fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@example.org> %d +0000\ndata 9\ncommit %02d\n", 1700000000+c, c%100)
			for i := 0; i < perCommit; i++ {
				rand.Read(data)
				fmt.Fprintf(w, "M 100644 inline d%02d/f%05d\ndata %d\n", n%50, n%files, len(data))
				w.Write(data)
				w.WriteByte('\n')
				n++
			}
		}
		w.Flush()
		in.Close()
		if err := cmd.Wait(); err != nil {
			repoErr = fmt.Errorf("git fast-import: %v", err)
			return
		}
		exec.Command("git", "-C", repoDir, "symbolic-ref", "HEAD", "refs/heads/main").Run()
		exec.Command("git", "-C", repoDir, "repack", "-a", "-d", "-q").Run()
	})
	if repoErr != nil {
		b.Fatal(repoErr)
	}
	return repoDir
}

// clone clones url into a fresh directory with the git CLI.
func clone(b *testing.B, url string) {
	b.Helper()
	dst := filepath.Join(b.TempDir(), "c")
	cmd := exec.Command("git", "clone", "-q", "--bare", url, dst)
	cmd.Env = append(os.Environ(), "HOME="+b.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git clone %s: %v\n%s", url, err, out)
	}
}

// BenchmarkClone clones the repository from cheshire's smart HTTP and
// from git http-backend, one after the other in each iteration's pair.
func BenchmarkClone(b *testing.B) {
	repo := benchRepo(b)
	ours := httptest.NewServer(smarthttp.Handler("/git", smarthttp.Options{
		Open: func(name string) (*gogit.Repository, error) { return git.OpenBare(repo, 16) },
	}))
	defer ours.Close()
	backend := httptest.NewServer(&cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo), "GIT_HTTP_EXPORT_ALL=1"},
	})
	defer backend.Close()
	b.Run("cheshire", func(b *testing.B) {
		for b.Loop() {
			clone(b, ours.URL+"/git/bench")
		}
	})
	b.Run("http-backend", func(b *testing.B) {
		for b.Loop() {
			clone(b, backend.URL+"/bench.git")
		}
	})
}

// gitRun runs git in dir, failing b on error.
func gitRun(b *testing.B, dir string, args ...string) {
	b.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.org",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.org")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// BenchmarkPush pushes a commit of 100 new files (25 KiB each, random)
// to a copy of the repository, served by cheshire and by http-backend;
// each iteration pushes one more commit on top of the last.
func BenchmarkPush(b *testing.B) {
	repo := benchRepo(b)
	for _, server := range []string{"cheshire", "http-backend"} {
		b.Run(server, func(b *testing.B) {
			dir := b.TempDir()
			bare := filepath.Join(dir, "bench.git")
			gitRun(b, dir, "clone", "-q", "--bare", repo, bare)
			gitRun(b, bare, "config", "http.receivepack", "true")
			var srv *httptest.Server
			var url string
			if server == "cheshire" {
				srv = httptest.NewServer(smarthttp.Handler("/git", smarthttp.Options{
					Open:      func(string) (*gogit.Repository, error) { return git.OpenBare(bare, 16) },
					Authorize: func(*http.Request, string, bool) (string, error) { return "bench", nil },
					TempDir:   dir,
				}))
				url = srv.URL + "/git/bench"
			} else {
				srv = httptest.NewServer(&cgi.Handler{
					Path: "/usr/lib/git-core/git-http-backend",
					Env:  []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=bench"},
				})
				url = srv.URL + "/bench.git"
			}
			defer srv.Close()
			work := filepath.Join(dir, "work")
			gitRun(b, dir, "clone", "-q", url, work)
			data := make([]byte, 25*1024)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				for f := 0; f < 100; f++ {
					rand.Read(data)
					os.WriteFile(filepath.Join(work, fmt.Sprintf("push%d-%03d", i, f)), data, 0644)
				}
				gitRun(b, work, "add", "-A")
				gitRun(b, work, "commit", "-q", "-m", fmt.Sprintf("push %d", i))
				b.StartTimer()
				gitRun(b, work, "-c", "http.postBuffer=1073741824", "push", "-q", "origin", "HEAD:main") // one request with a length: the CGI cannot take a chunked one
			}
		})
	}
}

// BenchmarkCloneAfterPush clones, from a copy of the repository that
// has taken one push (so two packs), with an empty pack cache each
// time: the first clone after a push, which cannot stream one pack.
func BenchmarkCloneAfterPush(b *testing.B) {
	repo := benchRepo(b)
	dir := b.TempDir()
	bare := filepath.Join(dir, "bench.git")
	gitRun(b, dir, "clone", "-q", "--bare", repo, bare)
	work := filepath.Join(dir, "work")
	gitRun(b, dir, "clone", "-q", bare, work)
	os.WriteFile(filepath.Join(work, "pushed"), []byte("one more\n"), 0o644)
	gitRun(b, work, "add", "pushed")
	gitRun(b, work, "commit", "-q", "-m", "one more")
	srv := httptest.NewServer(smarthttp.Handler("/git", smarthttp.Options{
		Open:      func(string) (*gogit.Repository, error) { return git.OpenBare(bare, 16) },
		Authorize: func(*http.Request, string, bool) (string, error) { return "bench", nil },
		TempDir:   filepath.Join(dir, "push"),
	}))
	gitRun(b, work, "push", "-q", srv.URL+"/git/bench", "HEAD:main")
	srv.Close()
	backend := httptest.NewServer(&cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"},
	})
	defer backend.Close()
	b.Run("cheshire", func(b *testing.B) {
		for b.Loop() {
			srv := httptest.NewServer(smarthttp.Handler("/git", smarthttp.Options{
				Open:    func(string) (*gogit.Repository, error) { return git.OpenBare(bare, 16) },
				TempDir: b.TempDir(),
			}))
			clone(b, srv.URL+"/git/bench")
			srv.Close()
		}
	})
	b.Run("http-backend", func(b *testing.B) {
		for b.Loop() {
			clone(b, backend.URL+"/bench.git")
		}
	})
}
