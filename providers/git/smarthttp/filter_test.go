package smarthttp

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPartialClone clones with --filter=blob:none and blob:limit: the
// clone lacks the blobs the filter leaves out, and git fetches them by
// hash when it checks the files out. A filter not served, and a want of
// an object no ref reaches, are refused by name.
func TestPartialClone(t *testing.T) { protocols(t, partialClone) }

func partialClone(t *testing.T, e *env) {
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	e.commit(work, "small", "tiny\n")
	big := strings.Repeat("large and larger\n", 200)
	e.commit(work, "big", big)
	e.ok(work, "remote", "add", "origin", e.url("", "r"))
	e.ok(work, "push", "-q", "origin", "main")

	missing := func(dir string) []string {
		var out []string
		for _, l := range strings.Split(e.ok(dir, "rev-list", "--objects", "--missing=print", "--all"), "\n") {
			if strings.HasPrefix(l, "?") {
				out = append(out, strings.TrimPrefix(l, "?"))
			}
		}
		return out
	}
	none := filepath.Join(t.TempDir(), "none")
	e.ok("", "clone", "-q", "--no-checkout", "--filter=blob:none", e.url("", "r"), none)
	var omitted []string // what git's own filter leaves out
	for _, f := range strings.Fields(e.ok(work, "rev-list", "--objects", "--all", "--filter=blob:none", "--filter-print-omitted")) {
		if h, ok := strings.CutPrefix(f, "~"); ok {
			omitted = append(omitted, h)
		}
	}
	got := missing(none)
	slices.Sort(got)
	slices.Sort(omitted)
	if len(got) != 2 || !slices.Equal(got, omitted) {
		t.Fatalf("blob:none clone lacks %v; git's own filter omits %v", got, omitted)
	}
	e.ok(none, "checkout", "-q", "main") // fetches the blobs of main by hash
	if got := e.readFile(filepath.Join(none, "big")); got != big {
		t.Fatalf("big after lazy fetch: %d bytes", len(got))
	}

	limit := filepath.Join(t.TempDir(), "limit")
	e.ok("", "clone", "-q", "--no-checkout", "--filter=blob:limit=1k", e.url("", "r"), limit)
	bigBlob := e.rev(work, "main:big")
	if got := missing(limit); len(got) != 1 || got[0] != bigBlob {
		t.Fatalf("blob:limit=1k clone lacks %v, want only big %s", got, bigBlob)
	}

	e.fails("not supported", "", "clone", "-q", "--filter=tree:0", e.url("", "r"), filepath.Join(t.TempDir(), "tree0"))

	// A blob that no ref reaches any more is not served by its hash.
	os.WriteFile(filepath.Join(work, "secret"), []byte("gone soon\n"), 0o644)
	e.ok(work, "add", "secret")
	e.ok(work, "commit", "-q", "-m", "oops")
	secret := e.rev(work, "HEAD:secret")
	e.ok(work, "push", "-q", "origin", "main")
	e.ok(work, "reset", "-q", "--hard", "HEAD^")
	e.ok(work, "push", "-q", "-f", "origin", "main")
	code, body := e.post("r", svcUpload, pkts("want "+secret+" ofs-delta", "", "done"))
	if code != 200 || !strings.Contains(body, "ERR git: not our ref "+secret) {
		t.Fatalf("want of an unreachable blob: %d %q", code, body)
	}
	code, body = e.post("r", svcUpload, pkts("want "+bigBlob+" ofs-delta", "", "done"))
	if code != 200 || !bytes.Contains([]byte(body), []byte("PACK")) {
		t.Fatalf("want of a reachable blob: %d %q", code, body)
	}
}
