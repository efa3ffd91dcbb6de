package gitbench

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"cheshire/plan9"
	"cheshire/providers/git/nsrepo"
	"cheshire/providers/git/smarthttp"
	"cheshire/providers/tmp"
	"cheshire/styx"

	gogit "github.com/go-git/go-git/v5"
)

// BenchmarkNamespaceClone clones a namespace subtree of GITBENCH_NSFILES
// files (default 2,000) of GITBENCH_NSKB KiB each (default 8, random:
// 16 MiB, within nsrepo's default 32 MiB bound), held by the /tmp file
// server, through nsrepo (the repository made on the fly), and clones
// a stored repository of the same files in one commit:
//
//	first:  a new nsrepo.Repos each time: every file read and hashed
//	cached: one Repos: unchanged files come from the blob cache
//	stored: the same tree as a bare repository on disk, one pack
func BenchmarkNamespaceClone(b *testing.B) {
	files, kb := envInt("GITBENCH_NSFILES", 2000), envInt("GITBENCH_NSKB", 8)
	ctx := context.Background()
	fs := tmp.New("bench")
	top, err := fs.Attach(ctx, "bench", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	root, _, err := top.Create(ctx, "data", plan9.DMDIR|0o755, plan9.OREAD)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	stored := filepath.Join(dir, "stored.git")
	gitRun(b, dir, "init", "-q", "--bare", stored)
	imp := exec.Command("git", "fast-import", "--quiet")
	imp.Dir = stored
	in, _ := imp.StdinPipe()
	if err := imp.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(in)
	fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@example.org> 1700000000 +0000\ndata 4\ntree\n")
	data := make([]byte, kb*1024)
	subdirs := map[string]styx.File{}
	for i := range files {
		rand.Read(data)
		d := fmt.Sprintf("d%02d", i%50)
		sub, ok := subdirs[d]
		if !ok {
			if sub, _, err = root.Create(ctx, d, plan9.DMDIR|0o755, plan9.OREAD); err != nil {
				b.Fatal(err)
			}
			subdirs[d] = sub
		}
		_, dd, err := sub.Walk(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		f, _, err := dd.Create(ctx, fmt.Sprintf("f%05d", i), 0o644, plan9.OWRITE)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(ctx, data, 0); err != nil {
			b.Fatal(err)
		}
		f.Clunk()
		fmt.Fprintf(w, "M 100644 inline %s/f%05d\ndata %d\n", d, i, len(data))
		w.Write(data)
		w.WriteByte('\n')
	}
	w.Flush()
	in.Close()
	if err := imp.Wait(); err != nil {
		b.Fatalf("git fast-import: %v", err)
	}
	gitRun(b, stored, "symbolic-ref", "HEAD", "refs/heads/main")
	gitRun(b, stored, "repack", "-a", "-d", "-q")

	attach := func(ctx context.Context) (styx.File, error) { return fs.Attach(ctx, "bench", "", nil) }
	serve := func(repos *nsrepo.Repos) *httptest.Server {
		return httptest.NewServer(smarthttp.Handler("/ns", smarthttp.Options{
			Nested: true, NoDeltas: true, TempDir: b.TempDir(),
			Open: func(path string) (*gogit.Repository, error) { return repos.Open(ctx, "/"+path) },
		}))
	}
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			srv := serve(nsrepo.New(attach, nsrepo.Options{}))
			clone(b, srv.URL+"/ns/data")
			srv.Close()
		}
	})
	b.Run("cached", func(b *testing.B) {
		srv := serve(nsrepo.New(attach, nsrepo.Options{}))
		defer srv.Close()
		clone(b, srv.URL+"/ns/data") // fills the cache
		b.ResetTimer()
		for b.Loop() {
			clone(b, srv.URL+"/ns/data")
		}
	})
	b.Run("stored", func(b *testing.B) {
		srv := httptest.NewServer(smarthttp.Handler("/git", smarthttp.Options{
			Open: func(string) (*gogit.Repository, error) { return gogit.PlainOpen(stored) },
		}))
		defer srv.Close()
		for b.Loop() {
			clone(b, srv.URL+"/git/stored")
		}
	})
}

// peakRSS runs f and reports this process's peak resident set during
// it (VmHWM, reset through /proc/self/clear_refs after the Go heap is
// given back), and how far that is above the resident set before:
// the memory the server side of f took, the git client being another
// process.
func peakRSS(b *testing.B, f func()) {
	b.Helper()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS: %v", err)
	}
	before := procStatus(b, "VmRSS")
	f()
	peak := procStatus(b, "VmHWM")
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	b.ReportMetric(float64(peak-before)/(1<<20), "above-MiB")
}

// procStatus returns a field of /proc/self/status, in bytes.
func procStatus(b *testing.B, field string) int64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkMemory measures the server's peak memory while the git CLI
// clones the whole benchmark repository (50 MiB) and while it pushes
// all of it into an empty repository: one pass each, reported as
// peak-MiB (the process) and above-MiB (above its size before).
func BenchmarkMemory(b *testing.B) {
	repo := benchRepo(b)
	b.Run("clone", func(b *testing.B) {
		srv := httptest.NewServer(smarthttp.Handler("/git", smarthttp.Options{
			Open:    func(string) (*gogit.Repository, error) { return gogit.PlainOpen(repo) },
			TempDir: b.TempDir(),
		}))
		defer srv.Close()
		for b.Loop() {
			peakRSS(b, func() { clone(b, srv.URL+"/git/bench") })
		}
	})
	b.Run("push", func(b *testing.B) {
		for b.Loop() {
			dir := b.TempDir()
			bare := filepath.Join(dir, "empty.git")
			gitRun(b, dir, "init", "-q", "--bare", bare)
			srv := httptest.NewServer(smarthttp.Handler("/git", smarthttp.Options{
				Open:      func(string) (*gogit.Repository, error) { return gogit.PlainOpen(bare) },
				Authorize: func(*http.Request, string, bool) (string, error) { return "bench", nil },
				TempDir:   dir,
			}))
			peakRSS(b, func() { gitRun(b, repo, "push", "-q", srv.URL+"/git/empty", "main") })
			srv.Close()
		}
	})
}
