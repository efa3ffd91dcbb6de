package smarthttp

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestV2 checks version 2 by hand: the advertisement, ls-refs with
// prefixes, symrefs, peeled tags and an unborn HEAD, and the requests
// that must be refused by name; then that the git command clones an
// empty repository over it and learns its branch.
func TestV2(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.bare("empty")
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	c1 := e.commit(work, "a", "one\n")
	e.ok(work, "tag", "-a", "-m", "v1", "v1")
	tag := e.rev(work, "v1")
	e.ok(work, "push", "-q", e.url("", "r"), "main", "v1")
	v2 := []string{"Git-Protocol", "version=2"}

	resp, err := e.srv.Client().Do(mustReq(t, e.url("", "r")+"/info/refs?service=git-upload-pack", v2))
	if err != nil {
		t.Fatal(err)
	}
	adv := readAll(t, resp)
	if !strings.HasPrefix(adv, "000eversion 2\n") || !strings.Contains(adv, "fetch=shallow filter\n") || strings.Contains(adv, "# service") {
		t.Fatalf("advertisement: %q", adv)
	}

	lsRefs := func(repo string, args ...string) string {
		body := append(pkts("command=ls-refs\n", "object-format=sha1\n"), "0001"...)
		body = append(body, pkts(args...)...)
		code, out := e.post(repo, svcUpload, body, v2...)
		if code != 200 {
			t.Fatalf("ls-refs %v: %d %q", args, code, out)
		}
		return out
	}
	got := lsRefs("r", "symrefs\n", "peel\n", "ref-prefix HEAD\n", "ref-prefix refs/tags/\n", "")
	want := string(pkts(c1+" HEAD symref-target:refs/heads/main\n", tag+" refs/tags/v1 peeled:"+c1+"\n", ""))
	if got != want {
		t.Fatalf("ls-refs:\n%q\nwant\n%q", got, want)
	}
	if got, want := lsRefs("empty", "symrefs\n", "unborn\n", ""), string(pkts("unborn HEAD symref-target:refs/heads/main\n", "")); got != want {
		t.Fatalf("ls-refs of an empty repository: %q, want %q", got, want)
	}

	for _, tc := range []struct{ name, body, want string }{
		{"unknown command", string(pkts("command=push\n", "")), "ERR git: unknown command"},
		{"no command", string(pkts("agent=x\n", "")), "ERR git: no command"},
		{"sha256", string(pkts("command=fetch\n", "object-format=sha256\n", "")), "not supported"},
		{"deepen-since", "0012command=fetch\n0001" + string(pkts("want "+c1+"\n", "deepen-since 1\n", "")), "ERR git: deepen-since not supported"},
		{"not our ref", "0012command=fetch\n0001" + string(pkts("want "+strings.Repeat("1", 40)+"\n", "done\n", "")), "ERR git: not our ref"},
		{"bad argument", "0012command=fetch\n0001" + string(pkts("wont "+c1+"\n", "")), "ERR git: unexpected line"},
		{"truncated", "0012command=fetch\n0001" + string(pkts("want " + c1 + "\n"))[:20], "ERR git: truncated request"},
	} {
		code, out := e.post("r", svcUpload, []byte(tc.body), v2...)
		if code != 200 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %d %q", tc.name, code, out)
		}
	}

	e.proto = "2"
	clone := filepath.Join(t.TempDir(), "clone")
	e.ok("", "clone", "-q", e.url("", "empty"), clone)
	if got := strings.TrimSpace(e.ok(clone, "symbolic-ref", "HEAD")); got != "refs/heads/main" {
		t.Fatalf("HEAD of the empty clone: %s", got)
	}
}

func mustReq(t *testing.T, url string, hdr []string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
