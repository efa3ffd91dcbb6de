package smarthttp

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"cheshire/plan9"
)

// FuzzReceivePack posts request bodies to git-receive-pack of one
// repository and checks that none panics, that the refs afterwards are
// those before with the updates the handler reported applied (none if
// it refused the push), and that nothing spooled is left behind. The
// seeds are a valid push, the same truncated, a push on top of it, one
// naming a funny ref and one of an object over the limit.
func FuzzReceivePack(f *testing.F) {
	if _, err := os.Stat(gitBin); err != nil {
		f.Skip("no git command")
	}
	root, home, spool := f.TempDir(), f.TempDir(), f.TempDir()
	git := func(dir string, stdin string, args ...string) string {
		cmd := exec.Command(gitBin, append([]string{"-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=A", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=A", "GIT_COMMITTER_EMAIL=a@example.com"}
		out, err := cmd.Output()
		if err != nil {
			f.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	bare := filepath.Join(root, "r.git")
	git(root, "", "init", "-q", "--bare", bare)
	work := filepath.Join(root, "work")
	git(root, "", "init", "-q", work)
	var c []string
	for i := range 2 {
		if err := os.WriteFile(filepath.Join(work, "a"), fmt.Appendf(nil, "%d\n", i), 0644); err != nil {
			f.Fatal(err)
		}
		git(work, "", "add", "a")
		git(work, "", "commit", "-q", "-m", "a")
		c = append(c, strings.TrimSpace(git(work, "", "rev-parse", "HEAD")))
	}
	pack1 := git(work, c[0]+"\n", "pack-objects", "--stdout", "--revs", "-q")
	pack2 := git(work, c[1]+"\n^"+c[0]+"\n", "pack-objects", "--stdout", "--revs", "-q")
	first := string(pkts(zero+" "+c[0]+" refs/heads/main\x00report-status side-band-64k", "")) + pack1
	f.Add([]byte(first))
	f.Add([]byte(first[:len(first)/2]))
	f.Add(append(pkts(c[0]+" "+c[1]+" refs/heads/main\x00report-status", zero+" "+c[1]+" refs/tags/t", ""), pack2...))
	f.Add(append(pkts(zero+" "+c[0]+" refs/heads/a..b\x00report-status", ""), emptyPack()...))
	f.Add(append(pkts(zero+" "+c[0]+" refs/heads/x\x00report-status", ""), packFile(1, objHeader(objBlob, 2<<20), zeros(2))...))

	var updates []RefUpdate
	h := Handler("/git/", Options{
		Open: func(name string) (*gogit.Repository, error) {
			if name != "r" {
				return nil, fmt.Errorf("git: %s: %w", name, plan9.ErrNotFound)
			}
			return gogit.PlainOpen(bare)
		},
		Authorize: func(*http.Request, string, bool) (string, error) { return "fuzz", nil },
		Updated:   func(_ string, u []RefUpdate) { updates = append(updates, u...) },
		MaxPack:   1 << 20, MaxRequest: 64 << 10, MaxObject: 1 << 20, MaxInflated: 4 << 20,
		TempDir: spool,
	})
	refs := func() map[plumbing.ReferenceName]plumbing.Hash {
		g, err := gogit.PlainOpen(bare)
		if err != nil {
			f.Fatal(err)
		}
		it, err := g.Storer.IterReferences()
		if err != nil {
			f.Fatal(err)
		}
		m := map[plumbing.ReferenceName]plumbing.Hash{}
		it.ForEach(func(r *plumbing.Reference) error {
			if r.Type() == plumbing.HashReference {
				m[r.Name()] = r.Hash()
			}
			return nil
		})
		return m
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want := refs()
		updates = nil
		req := httptest.NewRequest("POST", "/git/r.git/"+svcReceive, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-"+svcReceive+"-request")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		resp := w.Body.String()
		if len(updates) > 0 && (w.Code != 200 || strings.Contains(resp, "ng ") || strings.Contains(resp, "unpack git")) {
			t.Fatalf("refused push applied %v: %d %q", updates, w.Code, resp)
		}
		for _, u := range updates {
			if want[u.Name] != u.Old {
				t.Fatalf("update %v of %s, which was %s", u, u.Name, want[u.Name])
			}
			if u.New.IsZero() {
				delete(want, u.Name)
			} else {
				want[u.Name] = u.New
			}
		}
		got := refs()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("refs are %v, want %v (updates %v; response %d %q)", got, want, updates, w.Code, resp)
		}
		left, _ := os.ReadDir(spool)
		tmp, _ := filepath.Glob(filepath.Join(bare, "objects", "pack", "tmp_*"))
		if len(left) > 0 || len(tmp) > 0 {
			t.Fatalf("left behind: %v %v", left, tmp)
		}
	})
}
