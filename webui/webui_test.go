package webui

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/providers/tmp"
	"cheshire/styx"
)

// env is a UI over an in-memory file server (the user's namespace),
// served over TLS, with a browser-like client that keeps cookies.
type env struct {
	t    testing.TB
	fs   *tmp.FS
	srv  *httptest.Server
	c    *http.Client
	mu   sync.Mutex
	now  time.Time
	root styx.File
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, fs: tmp.New("glenda"), now: time.Unix(1_700_000_000, 0)}
	ctx := context.Background()
	root, err := e.fs.Attach(ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.root = root
	ui := New(Options{
		Attach:   func(ctx context.Context, user string) (styx.File, error) { return e.fs.Attach(ctx, user, "", nil) },
		Password: func(u, p string) bool { return u == "glenda" && p == "secret-token-0123" },
		Now:      func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now },
	})
	e.srv = httptest.NewTLSServer(ui)
	t.Cleanup(e.srv.Close)
	e.c = e.srv.Client()
	e.c.Jar, _ = cookiejar.New(nil)
	e.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return e
}

func (e *env) write(path, data string) {
	e.t.Helper()
	if err := styx.WriteFile(context.Background(), e.root, path, []byte(data), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) read(path string) string {
	e.t.Helper()
	b, err := styx.ReadFile(context.Background(), e.root, path, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) get(path string) (int, string) {
	e.t.Helper()
	resp, err := e.c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) post(path string, form url.Values, hdr ...string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in and returns the CSRF token of the session.
func (e *env) signIn() string {
	e.t.Helper()
	if code, _ := e.post("/signin", url.Values{"user": {"glenda"}, "password": {"secret-token-0123"}}); code != http.StatusSeeOther {
		e.t.Fatalf("sign in: %d", code)
	}
	_, body := e.get("/fs/")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no csrf token in:\n%s", body)
	}
	return m[1]
}

// TestSignIn: a visitor sees only the sign-in page; a wrong password is
// refused; a session expires.
func TestSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if code, body := e.get("/"); code != 200 || !strings.Contains(body, `action="/signin"`) {
		t.Fatalf("/: %d", code)
	}
	for _, p := range []string{"/fs/", "/modules", "/tail/x"} {
		if code, _ := e.get(p); code != http.StatusSeeOther {
			t.Errorf("%s without a session: %d, want 303 to sign in", p, code)
		}
	}
	if code, body := e.post("/signin", url.Values{"user": {"glenda"}, "password": {"wrong"}}); code != 401 || !strings.Contains(body, "wrong password") {
		t.Fatalf("wrong password: %d", code)
	}
	e.signIn()
	if code, _ := e.get("/fs/"); code != 200 {
		t.Fatalf("/fs/ signed in: %d", code)
	}
	e.mu.Lock()
	e.now = e.now.Add(SessionTTL + time.Second)
	e.mu.Unlock()
	if code, _ := e.get("/fs/"); code != http.StatusSeeOther {
		t.Fatalf("a stale session: %d, want 303 to sign in", code)
	}
}

// TestBrowseAndEdit lists a directory, shows a file, saves it, and
// escapes HTML in names and contents.
func TestBrowseAndEdit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evil := `<img src=x onerror=alert(1)>`
	e.write("/notes", "hello <b>"+evil+"</b>\n")
	e.write("/"+evil, "x")
	csrf := e.signIn()
	code, body := e.get("/fs/")
	if code != 200 || !strings.Contains(body, ">notes</a>") || strings.Contains(body, evil) || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Fatalf("listing: %d\n%s", code, body)
	}
	code, body = e.get("/fs/notes")
	if code != 200 || strings.Contains(body, evil) || !strings.Contains(body, "hello &lt;b&gt;") {
		t.Fatalf("file: %d\n%s", code, body)
	}
	if code, _ := e.post("/fs/notes", url.Values{"op": {"save"}, "content": {"new text\r\nline 2"}, "csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("save: %d", code)
	}
	if got := e.read("/notes"); got != "new text\nline 2" {
		t.Fatalf("after save: %q", got)
	}
}

// TestRefused: no CSRF token, a cross-site POST, paths that try to
// leave, an oversized upload: refused, nothing changed.
func TestRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write("/f", "kept")
	csrf := e.signIn()
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  []string
		want int
	}{
		{"no token", url.Values{"op": {"save"}, "content": {"x"}}, nil, 403},
		{"wrong token", url.Values{"op": {"save"}, "content": {"x"}, "csrf": {"nope"}}, nil, 403},
		{"cross-site", url.Values{"op": {"save"}, "content": {"x"}, "csrf": {csrf}}, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"other origin", url.Values{"op": {"save"}, "content": {"x"}, "csrf": {csrf}}, []string{"Origin", "https://evil.example"}, 403},
		{"too large", url.Values{"op": {"save"}, "content": {strings.Repeat("x", MaxUpload+1)}, "csrf": {csrf}}, nil, 413},
	} {
		if code, _ := e.post("/fs/f", tc.form, tc.hdr...); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	if got := e.read("/f"); got != "kept" {
		t.Fatalf("file after refused posts: %q", got)
	}
	for _, p := range []string{"/fs/a%2F..%2F..%2Fetc", "/fs/%00", "/fs/a%2F%2Fb"} {
		if code, _ := e.get(p); code != 400 {
			t.Errorf("%s: %d, want 400", p, code)
		}
	}
	if code, body := e.get("/fs/nope"); code != 404 || !strings.Contains(body, "/nope: ") {
		t.Errorf("missing file: %d", code)
	}
}

// TestTail follows a file: what is there, then a line appended.
func TestTail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write("/log", "one\ntwo\n")
	e.signIn()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/tail/log", nil)
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var got strings.Builder
	buf := make([]byte, 4096)
	wait := func(want string) {
		for !strings.Contains(got.String(), want) {
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("waiting for %q: %v\n%s", want, err, got.String())
			}
		}
	}
	wait("data: one\n\ndata: two\n\n")
	e.write("/log", "one\ntwo\nthree\n")
	wait("data: three\n\n")
}
