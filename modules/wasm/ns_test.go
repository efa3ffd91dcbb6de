package wasm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/plan9"
	"cheshire/providers/tmp"
	"cheshire/styx"
)

// nsTree is a namespace for the probes: a tmp tree holding
// /tmp/granted/x, /tmp/secret and an empty /tmp/out.
func nsTree(t *testing.T) (*tmp.FS, styx.File) {
	t.Helper()
	ctx := context.Background()
	fs := tmp.New("glenda")
	root := attach(t, fs, "glenda")
	for _, d := range [][2]string{{"/", "tmp"}, {"/tmp", "granted"}, {"/tmp", "out"}} {
		ok(t, "mkdir", create(ctx, root, d[0], d[1], plan9.DMDIR|0o777, ""))
	}
	ok(t, "x", create(ctx, root, "/tmp/granted", "x", 0o644, "granted data"))
	ok(t, "secret", create(ctx, root, "/tmp", "secret", 0o644, "secret data"))
	return fs, root
}

func TestNamespaceGrants(t *testing.T) {
	ctx := context.Background()
	fs, nsroot := nsTree(t)
	s := startEnv(t, "nsprobe", "allow read /tmp\nallow write /tmp/out\n", t.TempDir(), fs)
	root := attach(t, s, "glenda")

	// Granted: read /tmp/granted (requested, and allowed through /tmp).
	got, err := filter(ctx, root, "/read", "/tmp/granted/x")
	if err != nil || got != "granted data" {
		t.Fatalf("read granted: %q, %v", got, err)
	}
	got, err = filter(ctx, root, "/stat", "/tmp/granted/x")
	if err != nil || got != "x 644 12" {
		t.Errorf("stat granted: %q, %v", got, err)
	}
	got, err = filter(ctx, root, "/ls", "/tmp/granted")
	if err != nil || got != "x\n" {
		t.Errorf("ls granted: %q, %v", got, err)
	}

	// Not requested by the manifest, though the owner allows /tmp.
	for _, p := range []string{"/tmp/secret", "/tmp/granted/../secret", "/tmp", "/"} {
		_, err = filter(ctx, root, "/read", p)
		want := "permission denied: module nsprobe may not read " + strings.TrimSuffix(strings.ReplaceAll(p, "/granted/..", ""), "/")
		if p == "/" {
			want = "permission denied: module nsprobe may not read /"
		}
		wantErr(t, "read "+p, err, want)
	}
	_, err = filter(ctx, root, "/ls", "/tmp")
	wantErr(t, "ls /tmp", err, "permission denied: module nsprobe may not read /tmp")
	if !s.log.has("permission denied") || !s.log.has("/tmp/secret") {
		t.Errorf("denial not logged:\n%s", s.log)
	}

	// Write: granted in /tmp/out, not in /tmp/granted (read only).
	got, err = filter(ctx, root, "/write", "/tmp/out/new made by module")
	if err != nil || got != "ok" {
		t.Fatalf("write granted: %q, %v", got, err)
	}
	if got, err := testutil.ReadFile(ctx, nsroot, "/tmp/out/new"); err != nil || got != "made by module" {
		t.Errorf("file written by the module: %q, %v", got, err)
	}
	_, err = filter(ctx, root, "/write", "/tmp/out/new again")
	ok(t, "overwrite", err)
	if got, err := testutil.ReadFile(ctx, nsroot, "/tmp/out/new"); err != nil || got != "again" {
		t.Errorf("file overwritten by the module: %q, %v", got, err)
	}
	_, err = filter(ctx, root, "/write", "/tmp/granted/x overwritten")
	wantErr(t, "write read-only grant", err, "permission denied: module nsprobe may not write /tmp/granted/x")
	if got, _ := testutil.ReadFile(ctx, nsroot, "/tmp/granted/x"); got != "granted data" {
		t.Errorf("denied write changed the file: %q", got)
	}

	// A file that is not there is reported as such.
	_, err = filter(ctx, root, "/read", "/tmp/granted/nothing")
	wantErr(t, "read missing", err, "file not found")
}

// What the manifest requests but the owner did not allow is denied.
func TestNamespaceNotAllowed(t *testing.T) {
	ctx := context.Background()
	fs, _ := nsTree(t)
	s := startEnv(t, "nsprobe", "allow read /tmp/granted/x", t.TempDir(), fs)
	root := attach(t, s, "glenda")
	if got, err := filter(ctx, root, "/read", "/tmp/granted/x"); err != nil || got != "granted data" {
		t.Fatalf("read allowed file: %q, %v", got, err)
	}
	_, err := filter(ctx, root, "/ls", "/tmp/granted")
	wantErr(t, "ls", err, "permission denied: module nsprobe may not read /tmp/granted")
	_, err = filter(ctx, root, "/write", "/tmp/out/y data")
	wantErr(t, "write", err, "permission denied: module nsprobe may not write /tmp/out/y")

	// Without a namespace at all, a granted call fails cleanly.
	s2 := start(t, "nsprobe", "allow read /tmp")
	_, err = filter(ctx, attach(t, s2, "glenda"), "/read", "/tmp/granted/x")
	wantErr(t, "no namespace", err, "no namespace")
}

func TestHTTP(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/big" {
			w.Write(make([]byte, MaxHTTPBody+1))
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
		}
		if r.URL.Path == "/away" {
			http.Redirect(w, r, "http://localhost:1/elsewhere", http.StatusFound)
			return
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().String()[strings.LastIndexByte(srv.Listener.Addr().String(), ':')+1:]

	s := start(t, "nsprobe", "cpu 200ms\nallow http 127.0.0.1:"+port)
	root := attach(t, s, "glenda")
	got, err := filter(ctx, root, "/http", "POST "+srv.URL+"/x hello")
	if err != nil || got != "200 POST /x hello" {
		t.Fatalf("http: %q, %v", got, err)
	}
	// Waiting for the network is not the module's CPU.
	got, err = filter(ctx, root, "/http", "GET "+srv.URL+"/slow")
	if err != nil || got != "200 GET /slow " {
		t.Fatalf("slow http: %q, %v", got, err)
	}
	_, err = filter(ctx, root, "/http", "GET http://localhost:"+port+"/x")
	wantErr(t, "other host", err, "permission denied: module nsprobe may not http localhost:"+port)
	_, err = filter(ctx, root, "/http", "GET http://127.0.0.1:1/x")
	wantErr(t, "other port", err, "permission denied: module nsprobe may not http 127.0.0.1:1")
	_, err = filter(ctx, root, "/http", "GET "+srv.URL+"/away")
	wantErr(t, "redirect elsewhere", err, "permission denied: module nsprobe may not http localhost:1")
	_, err = filter(ctx, root, "/http", "GET "+srv.URL+"/big")
	wantErr(t, "big body", err, "larger than")
	_, err = filter(ctx, root, "/http", "GET file:///etc/passwd")
	wantErr(t, "file url", err, "scheme")
}

func TestGrant(t *testing.T) {
	p := func(k, a string) string { return k + " " + a }
	for _, c := range []struct {
		requires, allow []string
		want            string
	}{
		{[]string{p("read", "/tmp")}, []string{p("read", "/tmp")}, "read /tmp"},
		{[]string{p("read", "/tmp")}, []string{p("read", "/tmp/a")}, "read /tmp/a"},
		{[]string{p("read", "/tmp/a")}, []string{p("read", "/")}, "read /tmp/a"},
		{[]string{p("write", "/tmp")}, []string{p("read", "/tmp")}, "read /tmp"},
		{[]string{p("read", "/tmp")}, []string{p("write", "/tmp")}, "read /tmp"},
		{[]string{p("write", "/tmp/x")}, []string{p("read", "/tmp")}, "read /tmp/x"},
		{[]string{p("write", "/tmp")}, []string{p("write", "/tmp/x")}, "write /tmp/x"},
		{[]string{p("read", "/tmp")}, []string{p("read", "/tmpx")}, ""},
		{[]string{p("read", "/tmp")}, []string{p("http", "*")}, ""},
		{[]string{p("http", "*")}, []string{p("http", "a.com:443")}, "http a.com:443"},
		{[]string{p("http", "a.com:*")}, []string{p("http", "*")}, "http 'a.com:*'"},
		{[]string{p("http", "a.com:*")}, []string{p("http", "a.com:80")}, "http a.com:80"},
		{[]string{p("http", "a.com:80")}, []string{p("http", "b.com:80")}, ""},
	} {
		var req, al []string
		req, al = c.requires, c.allow
		got := permsString(grant(perms(t, req), perms(t, al)))
		if got != c.want {
			t.Errorf("grant(%q, %q) = %q, want %q", req, al, got, c.want)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	m := &Module{}
	for _, text := range []string{"", "allow read /tmp\nmemory 64M\ncpu 500ms", "memory 4G", "memory 1048576", "# comment\ncpu 2s"} {
		if err := m.CheckConfig(parse(t, text)); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
	for text, want := range map[string]string{
		"allow read tmp":         "config line 1 (allow)",
		"allow":                  "config line 1 (allow)",
		"cpu 1s\nmemory 5G":      "config line 2 (memory)",
		"memory lots":            "bad size",
		"memory 512K":            "want 1M to 4G",
		"cpu forever":            "config line 1 (cpu)",
		"cpu -1s":                "config line 1 (cpu)",
		"cpu 1s\n\nlimit nofile": `config line 3 (limit): unknown key "limit"`,
	} {
		err := m.CheckConfig(parse(t, text))
		wantErr(t, fmt.Sprintf("%q", text), err, want)
	}
	c, err := parseConfig(parse(t, "memory 64M\ncpu 250ms"))
	if err != nil || c.memory != 64<<20 || c.cpu.String() != "250ms" {
		t.Errorf("parsed %+v, %v", c, err)
	}
}
