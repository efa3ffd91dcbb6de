package webui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/styx"
)

// TestRelyingParty: passkeys work at the node's names only, never at an
// IP address.
func TestRelyingParty(t *testing.T) {
	t.Parallel()
	names := []string{"localhost", "node.example"}
	for host, ok := range map[string]bool{"localhost:8443": true, "node.example": true, "127.0.0.1:8443": false,
		"[::1]:8443": false, "evil.example": false, "localhost.evil.example": false} {
		r := httptest.NewRequest("POST", "https://"+host+"/passkey/begin", nil)
		wa, err := relyingParty(r, names)
		if (err == nil) != ok {
			t.Errorf("%s: %v, want ok %v", host, err, ok)
			continue
		}
		if ok && (wa.Config.RPID != strings.Split(host, ":")[0] || wa.Config.RPOrigins[0] != "https://"+host) {
			t.Errorf("%s: relying party %q at %q", host, wa.Config.RPID, wa.Config.RPOrigins)
		}
	}
}

// TestPasskeyEndpoints: registration begins (options for a resident
// key, the user's file made with its handle), a finish without a
// ceremony or with a bad credential is refused, a sign-in's options
// come with a ceremony, and finishing an unknown ceremony is refused.
func TestPasskeyEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	ui := New(Options{
		Attach:       func(ctx context.Context, user string) (styx.File, error) { return e.fs.Attach(ctx, user, "", nil) },
		Password:     func(u, p string) bool { return u == "glenda" && p == "secret-token-0123" },
		PasskeyDir:   dir,
		PasskeyNames: []string{"localhost", "127.0.0.1"},
	})
	srv := httptest.NewTLSServer(ui)
	t.Cleanup(srv.Close)
	e.srv, e.c = srv, srv.Client()
	e.c.Jar, _ = cookiejar.New(nil)
	e.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	csrf := e.signIn()

	// The test server is at 127.0.0.1: an IP, refused whatever the names.
	code, body := e.post("/passkeys/begin", url.Values{"csrf": {csrf}})
	if code != http.StatusBadRequest || !strings.Contains(body, "cannot be used at 127.0.0.1") {
		t.Fatalf("begin at an IP: %d %s", code, body)
	}
	// At localhost (the Host header, as a browser there sends it; the
	// client keeps cookies by it too).
	su, _ := url.Parse(srv.URL)
	e.c.Jar.SetCookies(&url.URL{Scheme: "https", Host: "localhost"}, e.c.Jar.Cookies(su))
	post := func(path string, form url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Host = "localhost"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, opts := post("/passkeys/begin", url.Values{"csrf": {csrf}})
	pk, _ := opts["publicKey"].(map[string]any)
	if code != 200 || pk == nil || pk["rp"].(map[string]any)["id"] != "localhost" ||
		pk["authenticatorSelection"].(map[string]any)["residentKey"] != "required" {
		t.Fatalf("begin: %d %v", code, opts)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("user files: %q", files)
	}
	b, _ := os.ReadFile(files[0])
	var kept passkeyUser
	if err := json.Unmarshal(b, &kept); err != nil || kept.Name != "glenda" || len(kept.Handle) != 32 {
		t.Fatalf("the user's file: %s", b)
	}
	if code, m := post("/passkeys/finish", url.Values{"csrf": {csrf}, "credential": {`{"id":"x"}`}}); code != http.StatusBadRequest || !strings.Contains(m["error"].(string), "bad passkey") {
		t.Fatalf("finish with a bad credential: %d %v", code, m)
	}
	if code, m := post("/passkeys/finish", url.Values{"csrf": {csrf}, "credential": {`{}`}}); code != http.StatusBadRequest || !strings.Contains(m["error"].(string), "begin again") {
		t.Fatalf("finish twice: %d %v", code, m)
	}
	if code, _ := post("/passkeys/begin", url.Values{}); code != http.StatusForbidden {
		t.Fatalf("begin without the form token: %d", code)
	}

	code, m := post("/passkey/begin", url.Values{})
	if code != 200 || m["ceremony"] == "" || m["options"] == nil {
		t.Fatalf("sign-in begin: %d %v", code, m)
	}
	if code, m := post("/passkey/finish", url.Values{"ceremony": {"nope"}, "credential": {"{}"}}); code != http.StatusBadRequest || !strings.Contains(m["error"].(string), "begin again") {
		t.Fatalf("sign-in finish of no ceremony: %d %v", code, m)
	}
	if code, m := post("/passkey/finish", url.Values{"ceremony": {m["ceremony"].(string)}, "credential": {`{"id":"x"}`}}); code != http.StatusBadRequest {
		t.Fatalf("sign-in finish with a bad credential: %d %v", code, m)
	}
}
