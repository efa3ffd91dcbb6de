package webui

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"cheshire/providers/node"
	"cheshire/styx"
	"cheshire/synth"
)

const approvalKey = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u"

// approvalEnv is a UI over a namespace of /node/requests (a real
// queue) and an /ns/ctl, writable by glenda only, that records the lines
// written to it.
type approvalEnv struct {
	srv *httptest.Server
	q   *node.Requests

	mu    sync.Mutex
	lines []string // guarded by mu: written to /ns/ctl
}

func newApprovalEnv(t testing.TB) *approvalEnv {
	t.Helper()
	e := &approvalEnv{}
	var err error
	if e.q, err = node.OpenRequests(t.TempDir()+"/requests", "glenda"); err != nil {
		t.Fatal(err)
	}
	root := synth.NewDir("/", 0555)
	nd := synth.NewDir("node", 0555)
	nd.Add(e.q.Dir())
	root.Add(nd)
	nsd := synth.NewDir("ns", 0555)
	nsd.Add(synth.Ctl("ctl", 0600, []synth.Cmd{{Name: "export", Min: 1, Max: -1, Run: func(ctx context.Context, args []string) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.lines = append(e.lines, "export "+strings.Join(args, " "))
		return nil
	}}}, nil))
	root.Add(nsd)
	fs := synth.NewServer(root, synth.WithOwner("glenda"))
	ui := New(Options{
		Attach:   func(ctx context.Context, user string) (styx.File, error) { return fs.Attach(ctx, user, "", nil) },
		Password: func(u, p string) bool { return p == u+"-token-0123" },
	})
	e.srv = httptest.NewTLSServer(ui)
	t.Cleanup(e.srv.Close)
	return e
}

// client signs user in and returns a client with its session and the
// session's CSRF token.
func (e *approvalEnv) client(t testing.TB, user string) (*http.Client, string) {
	t.Helper()
	c := e.srv.Client()
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.PostForm(e.srv.URL+"/signin", url.Values{"user": {user}, "password": {user + "-token-0123"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in %s: %v %v", user, resp, err)
	}
	resp.Body.Close()
	_, body := fetch(t, c, e.srv.URL+"/approvals", nil)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf token in:\n%s", body)
	}
	return c, m[1]
}

// fetch GETs u, or POSTs form to it.
func fetch(t testing.TB, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if form == nil {
		resp, err = c.Get(u)
	} else {
		resp, err = c.PostForm(u, form)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestApprovals: the queue listed; alice, who may not decide (nor write
// /ns/ctl), cannot approve (nothing written, the request still
// pending); glenda approves (the line written to /ns/ctl, the request
// marked) and refuses; a decided request cannot be decided again; a
// line that fails leaves its request pending.
func TestApprovals(t *testing.T) {
	t.Parallel()
	e := newApprovalEnv(t)
	r1, err := e.q.File("key:"+approvalKey, "access", []string{"/tmp/shared"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.q.File("key:"+approvalKey, "join", nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, acsrf := e.client(t, "alice")
	code, body := fetch(t, alice, e.srv.URL+"/approvals", nil)
	if code != 200 || !strings.Contains(body, `id="req-1"`) || !strings.Contains(body, "export /tmp/shared ro to "+approvalKey) {
		t.Fatalf("/approvals: %d\n%s", code, body)
	}
	code, body = fetch(t, alice, e.srv.URL+"/approvals", url.Values{"csrf": {acsrf}, "id": {"1"}, "op": {"approve"}})
	if code != http.StatusForbidden || !strings.Contains(body, "permission denied") {
		t.Fatalf("alice approving: %d\n%s", code, body)
	}
	if r, _ := e.q.Get(r1.ID); r.State != node.Pending || len(e.lines) != 0 {
		t.Fatalf("after alice's approval: %+v, /ns/ctl got %q", r, e.lines)
	}
	if code, _ := fetch(t, alice, e.srv.URL+"/approvals", url.Values{"id": {"1"}, "op": {"approve"}}); code != http.StatusForbidden {
		t.Fatalf("approving without the form token: %d", code)
	}

	glenda, gcsrf := e.client(t, "glenda")
	if code, body := fetch(t, glenda, e.srv.URL+"/approvals", url.Values{"csrf": {gcsrf}, "id": {"1"}, "op": {"approve"}}); code != http.StatusSeeOther {
		t.Fatalf("glenda approving: %d\n%s", code, body)
	}
	e.mu.Lock()
	lines := e.lines
	e.mu.Unlock()
	if len(lines) != 1 || lines[0] != r1.Line {
		t.Fatalf("/ns/ctl got %q, want %q", lines, r1.Line)
	}
	if code, _ := fetch(t, glenda, e.srv.URL+"/approvals", url.Values{"csrf": {gcsrf}, "id": {"2"}, "op": {"refuse"}}); code != http.StatusSeeOther {
		t.Fatalf("glenda refusing: %d", code)
	}
	if a, _ := e.q.Get(r1.ID); a.State != node.Approved || a.By != "glenda" {
		t.Fatalf("request 1: %+v", a)
	}
	if b, _ := e.q.Get(r2.ID); b.State != node.Refused {
		t.Fatalf("request 2: %+v", b)
	}
	if code, _ := fetch(t, glenda, e.srv.URL+"/approvals", url.Values{"csrf": {gcsrf}, "id": {"1"}, "op": {"approve"}}); code != http.StatusConflict {
		t.Fatalf("approving again: %d, want 409", code)
	}
	// A line that cannot be written (there is no /store here): the
	// request stays pending.
	r3, err := e.q.File("key:"+approvalKey, "holder", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body = fetch(t, glenda, e.srv.URL+"/approvals", url.Values{"csrf": {gcsrf}, "id": {"3"}, "op": {"approve"}})
	if code != http.StatusConflict || !strings.Contains(body, "/store/ctl") {
		t.Fatalf("approving what cannot be written: %d\n%s", code, body)
	}
	if c, _ := e.q.Get(r3.ID); c.State != node.Pending {
		t.Fatalf("request 3 after a failed approval: %+v", c)
	}
	if code, _ := fetch(t, glenda, e.srv.URL+"/approvals", url.Values{"csrf": {gcsrf}, "id": {"3"}, "op": {"refuse"}}); code != http.StatusSeeOther {
		t.Fatalf("refusing 3: %d", code)
	}
	code, body = fetch(t, glenda, e.srv.URL+"/approvals", nil)
	if code != 200 || !strings.Contains(body, `id="none"`) || !strings.Contains(body, "approved by glenda") || !strings.Contains(body, "refused by glenda") {
		t.Fatalf("/approvals after: %d\n%s", code, body)
	}
}
