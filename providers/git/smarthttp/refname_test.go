package smarthttp

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFunnyRefs pushes commands naming refs that git's check-ref-format
// (or receive-pack's "under refs/, two levels") refuses: each is refused
// as git's receive-pack refuses it, "funny refname", and a push holding
// one changes nothing.
func TestFunnyRefs(t *testing.T) {
	e := newEnv(t, nil)
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	c1 := e.commit(work, "a", "one\n")
	e.ok(work, "push", "-q", e.url("", "r"), "main")
	before := e.refs("r")

	funny := []string{
		"refs/heads/a..b", "refs/heads/x.lock", "refs/heads/x.lock/y", "refs/heads/a b", "refs/heads/tab\tx",
		"refs/heads/ctl\x01x", "refs/heads/del\x7fx", "heads/main", "HEAD", "refs/main", "refs/heads/.hidden",
		"refs/heads/a//b", "refs/heads/a/", "refs/heads/a.", "refs/heads/a@{1}", "refs/heads/a~1", "refs/heads/a^",
		"refs/heads/a:b", "refs/heads/a?", "refs/heads/a*", "refs/heads/a[", `refs/heads/a\b`, "refs/../config",
	}
	for _, name := range funny {
		if !funnyRef(name) {
			t.Errorf("funnyRef(%q) = false", name)
		}
		// receive-pack checks the name after refs/, which must have two levels.
		if out, err := exec.Command(gitBin, "check-ref-format", strings.TrimPrefix(name, "refs/")).CombinedOutput(); err == nil && strings.HasPrefix(name, "refs/") {
			t.Errorf("git check-ref-format accepts %q: %s", name, out)
		}
		body := pkts(zero+" "+c1+" "+name+"\x00report-status", zero+" "+c1+" refs/heads/good", "")
		code, resp := e.post("r", svcReceive, append(body, emptyPack()...))
		if code != 200 || !strings.Contains(resp, "ng "+name+" funny refname\n") ||
			!strings.Contains(resp, "ng refs/heads/good atomic push failed\n") {
			t.Errorf("push to %q: %d %q", name, code, resp)
		}
		if got := e.refs("r"); got != before {
			t.Fatalf("push to %q changed the refs:\n%s", name, got)
		}
	}
	for _, name := range []string{"refs/heads/-x", "refs/heads/a/b", "refs/tags/v1.0", "refs/heads/ü", "refs/heads/@", "refs/heads/a.b"} {
		if funnyRef(name) {
			t.Errorf("funnyRef(%q) = true", name)
		}
		if out, err := exec.Command(gitBin, "check-ref-format", name[5:]).CombinedOutput(); err != nil {
			t.Errorf("git check-ref-format refuses %q: %s", name, out)
		}
	}
	// A name that would break the lines of the report is a bad request.
	code, resp := e.post("r", svcReceive, pkts(zero+" "+c1+" refs/heads/a\nb\x00report-status", ""))
	if code != 400 || !strings.HasPrefix(resp, "git: unexpected line") {
		t.Errorf("newline in name: %d %q", code, resp)
	}
	if got := e.refs("r"); got != before {
		t.Fatalf("refused pushes changed the refs:\n%s", got)
	}
}
