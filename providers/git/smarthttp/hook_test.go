package smarthttp

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// TestReceiveHook checks that Options.Receive sees a push's updates
// after its pack is stored and before any reference is set, and that
// its error refuses the push with the error's text in git's report.
func TestReceiveHook(t *testing.T) {
	var (
		refuse error
		calls  []RefUpdate
	)
	e := newEnv(t, nil, func(o *Options) {
		o.Receive = func(ctx context.Context, repo string, r *gogit.Repository, us []RefUpdate) error {
			if ctx == nil || repo != "r" {
				t.Errorf("Receive(%v, %q)", ctx, repo)
			}
			for _, u := range us {
				if _, err := r.Storer.EncodedObject(plumbing.AnyObject, u.New); err != nil {
					t.Errorf("Receive: %s not stored yet: %v", u.New, err)
				}
				cur, err := r.Reference(u.Name, false)
				switch {
				case u.Old.IsZero() && !errors.Is(err, plumbing.ErrReferenceNotFound):
					t.Errorf("Receive: %s already set: %v", u.Name, err)
				case !u.Old.IsZero() && (err != nil || cur.Hash() != u.Old):
					t.Errorf("Receive: %s already moved: %v %v", u.Name, cur, err)
				}
			}
			calls = append(calls, us...)
			return refuse
		}
	})
	bare := e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	c1 := e.commit(work, "a", "one\n")
	e.ok(work, "remote", "add", "origin", e.url("", "r"))
	e.ok(work, "push", "-q", "origin", "main")
	if len(calls) != 1 || calls[0] != (RefUpdate{Name: "refs/heads/main", New: plumbing.NewHash(c1)}) {
		t.Fatalf("Receive saw %v", calls)
	}

	refuse = errors.New("git: /x/zone: bad record")
	e.commit(work, "a", "two\n")
	e.fails("(git: /x/zone: bad record)", work, "push", "origin", "main", "main:side")
	if got := e.rev(bare, "refs/heads/main"); got != c1 {
		t.Fatalf("main after refused push: %s, want %s", got, c1)
	}
	if refs := e.refs("r"); strings.Contains(refs, "refs/heads/side") || len(calls) != 3 {
		t.Fatalf("after refused push: %d calls, refs\n%s", len(calls), refs)
	}
	e.mu.Lock()
	n := len(e.updates)
	e.mu.Unlock()
	if n != 1 {
		t.Fatalf("Updated saw %d updates, want 1", n)
	}
}

// TestNested clones a repository whose name has several elements, and
// checks that names with empty, "." or ".." elements are refused, as is
// any name with a slash without Options.Nested.
func TestNested(t *testing.T) {
	for _, nested := range []bool{true, false} {
		e := newEnv(t, nil, func(o *Options) { o.Nested = nested })
		e.ok(e.root, "init", "-q", "--bare", filepath.Join(e.root, "a", "b.git"))
		src := filepath.Join(t.TempDir(), "src")
		e.ok("", "init", "-q", src)
		e.commit(src, "f", "x\n")
		e.ok(src, "push", "-q", filepath.Join(e.root, "a", "b.git"), "main")
		clone := filepath.Join(t.TempDir(), "clone")
		if nested {
			e.ok("", "clone", "-q", e.url("", "a/b"), clone)
		} else {
			e.fails("not found", "", "clone", "-q", e.url("", "a/b"), clone)
		}
		for _, bad := range []string{"a//b", "a/./b", "a/../a/b", "/a/b", "a/b/"} {
			resp, err := e.srv.Client().Get(e.srv.URL + "/git/" + bad + ".git/info/refs?service=git-upload-pack")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("nested %v: %q: status %d, want 404", nested, bad, resp.StatusCode)
			}
		}
	}
}
