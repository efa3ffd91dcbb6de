package smarthttp

import (
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

	gogit "github.com/go-git/go-git/v5"
)

const gitBin = "/usr/bin/git"

// env is a git client and a server of bare repositories in a temporary
// directory, reached over TLS on loopback.
type env struct {
	t       *testing.T
	root    string // bare repositories: root/NAME.git
	home    string
	srv     *httptest.Server
	mu      sync.Mutex
	updates []RefUpdate
	seen    map[string]int // "gzip": gzipped requests, "probe": flush-pkt probes
	tmp     string         // Options.TempDir
	proto   string         // the client's protocol.version, if not ""
}

// packDir is where the handler caches the packs it builds.
func (e *env) packDir() string { return filepath.Join(e.tmp, "packs") }

func mustOpen(t *testing.T, dir string) *gogit.Repository {
	t.Helper()
	r, err := gogit.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newEnv(t *testing.T, authorize func(*http.Request, string, bool) (string, error), more ...func(*Options)) *env {
	t.Helper()
	if _, err := os.Stat(gitBin); err != nil {
		t.Skip("no git command")
	}
	e := &env{t: t, root: t.TempDir(), home: t.TempDir(), seen: map[string]int{}, tmp: t.TempDir()}
	if authorize == nil {
		authorize = func(*http.Request, string, bool) (string, error) { return "anyone", nil }
	}
	o := Options{
		Open: func(name string) (*gogit.Repository, error) {
			r, err := gogit.PlainOpen(filepath.Join(e.root, name+".git"))
			if errors.Is(err, gogit.ErrRepositoryNotExists) {
				return nil, fmt.Errorf("git: %s: %w", name, plan9.ErrNotFound)
			}
			return r, err
		},
		Authorize: authorize,
		Updated: func(repo string, u []RefUpdate) {
			e.mu.Lock()
			e.updates = append(e.updates, u...)
			e.mu.Unlock()
		},
		TempDir: e.tmp,
	}
	for _, f := range more {
		f(&o)
	}
	h := Handler("/git/", o)
	e.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		if r.Header.Get("Content-Encoding") == "gzip" {
			e.seen["gzip"]++
		}
		if r.Method == http.MethodPost && r.ContentLength == 4 {
			e.seen["probe"]++
		}
		if wantsV2(r) {
			e.seen["v2"]++
		} else {
			e.seen["v0"]++
		}
		e.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// url is the address of repository name, with user info if not "".
func (e *env) url(userinfo, name string) string {
	u := e.srv.URL + "/git/" + name + ".git"
	if userinfo != "" {
		u = strings.Replace(u, "https://", "https://"+userinfo+"@", 1)
	}
	return u
}

// git runs the git command in dir and returns its combined output.
func (e *env) git(dir string, args ...string) (string, error) {
	e.t.Helper()
	pre := []string{"-c", "http.sslVerify=false", "-c", "init.defaultBranch=main"}
	if e.proto != "" {
		pre = append(pre, "-c", "protocol.version="+e.proto)
	}
	cmd := exec.Command(gitBin, append(pre, args...)...)
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

// ok runs git and fails the test if it fails.
func (e *env) ok(dir string, args ...string) string {
	e.t.Helper()
	out, err := e.git(dir, args...)
	if err != nil {
		e.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fails runs git, fails the test if it succeeds, and checks that its
// output holds want.
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

// bare creates the empty bare repository name.
func (e *env) bare(name string) string {
	dir := filepath.Join(e.root, name+".git")
	e.ok(e.root, "init", "-q", "--bare", dir)
	return dir
}

// refs lists the references of the bare repository name.
func (e *env) refs(name string) string {
	out, _ := e.git(filepath.Join(e.root, name+".git"), "for-each-ref", "--format=%(objectname) %(refname)")
	return out
}

// commit writes file with text in the work tree dir and commits it.
func (e *env) commit(dir, file, text string) string {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.ok(dir, "add", file)
	e.ok(dir, "commit", "-q", "-m", "edit "+file)
	return strings.TrimSpace(e.ok(dir, "rev-parse", "HEAD"))
}

func (e *env) rev(dir, what string) string {
	e.t.Helper()
	return strings.TrimSpace(e.ok(dir, "rev-parse", what))
}

func (e *env) readFile(path string) string {
	e.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// protocols runs f with a git client of each protocol version, and
// checks that the server saw requests of that version.
func protocols(t *testing.T, f func(t *testing.T, e *env)) {
	for _, v := range []string{"0", "2"} {
		t.Run("v"+v, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			e.proto = v
			f(t, e)
			e.mu.Lock()
			defer e.mu.Unlock()
			other := map[string]string{"0": "v2", "2": "v0"}[v]
			if e.seen["v"+v] == 0 || v == "0" && e.seen[other] > 0 {
				t.Fatalf("protocol %s: requests seen %v", v, e.seen)
			}
		})
	}
}
