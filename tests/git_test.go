package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// gitCmd runs the git CLI in dir with a private HOME and no system
// config, failing the test on error.
func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=glenda", "GIT_AUTHOR_EMAIL=glenda@example.org",
		"GIT_COMMITTER_NAME=glenda", "GIT_COMMITTER_EMAIL=glenda@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestGitFiles: a repository made through /git/ctl of a running node is
// an ordinary bare repository in the data directory; a commit pushed to
// it with the git CLI reads back through /git (log, the tree of a
// branch, the ref), and a ref write that does not compare-and-swap is
// refused at the write.
func TestGitFiles(t *testing.T) {
	t.Parallel()
	dir := shortTemp(t)
	n := startNode(t, dir)
	if _, err := n.run("create demo\n", "9p", "write", "/git/ctl"); err != nil {
		t.Fatalf("create: %v", err)
	}
	work := t.TempDir()
	gitCmd(t, work, "clone", "-q", filepath.Join(dir, "git", "demo.git"), "c")
	c := filepath.Join(work, "c")
	os.WriteFile(filepath.Join(c, "README"), []byte("hello from git\n"), 0644)
	gitCmd(t, c, "add", "README")
	gitCmd(t, c, "commit", "-q", "-m", "first")
	gitCmd(t, c, "push", "-q", "origin", "HEAD:main")
	head := strings.TrimSpace(gitCmd(t, c, "rev-parse", "HEAD"))

	if got := must9p(t, n, "read", "/git/demo/refs/heads/main"); strings.TrimSpace(got) != head {
		t.Errorf("refs/heads/main = %q, want %s", got, head)
	}
	if got := must9p(t, n, "read", "/git/demo/log"); !strings.HasPrefix(got, head+" glenda@example.org ") || !strings.HasSuffix(got, " first\n") {
		t.Errorf("log = %q", got)
	}
	if got := must9p(t, n, "read", "/git/demo/tree/main/README"); got != "hello from git\n" {
		t.Errorf("tree/main/README = %q", got)
	}
	stale := strings.Repeat("1", 40)
	if _, err := n.run(stale+" "+head+"\n", "9p", "write", "/git/demo/refs/heads/main"); err == nil || !strings.Contains(err.Error(), "moved") {
		t.Errorf("a compare-and-swap from a stale hash: %v, want the ref moved", err)
	}
}

// gitTry is gitCmd that returns the output and error instead of failing.
func gitTry(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=glenda", "GIT_AUTHOR_EMAIL=glenda@example.org",
		"GIT_COMMITTER_NAME=glenda", "GIT_COMMITTER_EMAIL=glenda@example.org"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestGitOverHTTPS: the git CLI clones from and pushes to the node's
// HTTPS listener, trusting the node's CA (/ca/root.pem), as the owner
// with a token of /git/tokens; without the token, or with a wrong one,
// it is refused, and the refs stay as they were.
func TestGitOverHTTPS(t *testing.T) {
	t.Parallel()
	dir := shortTemp(t)
	n := startNode(t, dir)
	addr := n.httpsAddr()
	work := t.TempDir()
	root := filepath.Join(work, "root.pem")
	os.WriteFile(root, []byte(must9p(t, n, "read", "/ca/root.pem")), 0644)
	owner := ownerName(t)
	const token = "0123456789abcdef0123"
	if _, err := n.run("create web\n", "9p", "write", "/git/ctl"); err != nil {
		t.Fatal(err)
	}
	const aliceToken = "alice-token-0123456789"
	if _, err := n.run(owner+" "+token+"\nalice "+aliceToken+"\n", "9p", "write", "/git/tokens"); err != nil {
		t.Fatal(err)
	}
	ca := []string{"GIT_SSL_CAINFO=" + root}
	url := "https://" + owner + ":" + token + "@" + addr + "/git/web"

	// A first commit pushed over HTTPS, then cloned back.
	src := filepath.Join(work, "src")
	gitCmd(t, work, "init", "-q", "-b", "main", src)
	os.WriteFile(filepath.Join(src, "index.html"), []byte("<p>hi</p>\n"), 0644)
	gitCmd(t, src, "add", ".")
	gitCmd(t, src, "commit", "-q", "-m", "site")
	if out, err := gitTry(t, src, ca, "push", url, "main"); err != nil {
		t.Fatalf("push over https: %v\n%s", err, out)
	}
	if out, err := gitTry(t, work, ca, "clone", "-q", url, "back"); err != nil {
		t.Fatalf("clone over https: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "back", "index.html")); string(b) != "<p>hi</p>\n" {
		t.Errorf("cloned index.html = %q", b)
	}
	head := strings.TrimSpace(must9p(t, n, "read", "/git/web/refs/heads/main"))
	blob := strings.TrimSpace(gitCmd(t, src, "rev-parse", "main:index.html"))
	if got, want := must9p(t, n, "read", "/git/web/events"), "create index.html "+blob+"\nref refs/heads/main "+strings.Repeat("0", 40)+" "+head+"\n"; got != want {
		t.Errorf("events of the push: %q, want %q", got, want)
	}

	// alice may clone (the namespace lets her read /git/web) but not push
	// (she may not write /git/web/refs/heads).
	alice := "https://alice:" + aliceToken + "@" + addr + "/git/web"
	if out, err := gitTry(t, work, ca, "clone", "-q", alice, "alice"); err != nil {
		t.Errorf("alice's clone: %v\n%s", err, out)
	}

	// A client certificate issued by /ca signs in as its common name:
	// the owner pushes with no token; a certificate of another CA, with
	// the same name, is refused.
	if _, err := n.run("issue "+owner+"\n", "9p", "write", "/ca/ctl"); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(work, "cert.pem"), filepath.Join(work, "key.pem")
	os.WriteFile(cert, []byte(must9p(t, n, "read", "/ca/certs/"+owner+"/cert.pem")), 0600)
	os.WriteFile(key, []byte(must9p(t, n, "read", "/ca/certs/"+owner+"/key.pem")), 0600)
	byCert := append(ca, "GIT_SSL_CERT="+cert, "GIT_SSL_KEY="+key)
	bare := "https://" + addr + "/git/web"
	os.WriteFile(filepath.Join(src, "cert.txt"), []byte("by certificate\n"), 0644)
	gitCmd(t, src, "add", "cert.txt")
	gitCmd(t, src, "commit", "-q", "-m", "by certificate")
	if out, err := gitTry(t, src, byCert, "push", bare, "main"); err != nil {
		t.Fatalf("push with a client certificate: %v\n%s", err, out)
	}
	head = strings.TrimSpace(must9p(t, n, "read", "/git/web/refs/heads/main"))
	forged, forgedKey := filepath.Join(work, "forged.pem"), filepath.Join(work, "forged.key")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", forgedKey, "-out", forged, "-subj", "/CN="+owner, "-days", "1",
		"-addext", "extendedKeyUsage=clientAuth").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(src, "cert.txt"), []byte("forged\n"), 0644)
	gitCmd(t, src, "commit", "-q", "-am", "forged")
	if out, err := gitTry(t, src, append(ca, "GIT_SSL_CERT="+forged, "GIT_SSL_KEY="+forgedKey), "push", bare, "main"); err == nil {
		t.Errorf("a push with a certificate of another CA succeeded:\n%s", out)
	}

	// Refused: no credentials, a wrong token, alice's push.
	os.WriteFile(filepath.Join(src, "index.html"), []byte("<p>defaced</p>\n"), 0644)
	gitCmd(t, src, "commit", "-q", "-am", "deface")
	for _, u := range []string{"https://" + addr + "/git/web", "https://" + owner + ":wrong-token-0000000@" + addr + "/git/web", alice} {
		if out, err := gitTry(t, src, ca, "push", u, "main"); err == nil {
			t.Errorf("push to %s succeeded:\n%s", u, out)
		}
	}
	if got := strings.TrimSpace(must9p(t, n, "read", "/git/web/refs/heads/main")); got != head {
		t.Errorf("a refused push moved main: %s, was %s", got, head)
	}
}

// gitHTTPS prepares node n for git over HTTPS: its HTTPS host:port, the
// CA root in a file, and the owner with a token of /git/tokens.
func gitHTTPS(t *testing.T, n *node) (addr, rootPEM, owner, token string) {
	t.Helper()
	addr = n.httpsAddr()
	rootPEM = filepath.Join(t.TempDir(), "root.pem")
	os.WriteFile(rootPEM, []byte(must9p(t, n, "read", "/ca/root.pem")), 0644)
	owner = ownerName(t)
	token = "subtree-token-0123456789"
	if _, err := n.run(owner+" "+token+"\n", "9p", "write", "/git/tokens"); err != nil {
		t.Fatal(err)
	}
	return addr, rootPEM, owner, token
}

// TestGitNamespaceSubtree: /dns/zones cloned from https://NODE/ns/,
// a zone edited and pushed, and dig answers the new record; a zone the
// dns module refuses fails the push with its error, and the zone stays.
func TestGitNamespaceSubtree(t *testing.T) {
	t.Parallel()
	dir := shortTemp(t)
	port := strconv.Itoa(freeDNSPort(t))
	os.MkdirAll(filepath.Join(dir, "modules", "dns"), 0700)
	os.WriteFile(filepath.Join(dir, "modules", "dns", "config"), []byte("listen 127.0.0.1:"+port+"\n"), 0600)
	n := startNode(t, dir)
	if _, err := n.run("zone add example.test\n", "9p", "write", "/dns/ctl"); err != nil {
		t.Fatal(err)
	}
	addr, rootPEM, owner, token := gitHTTPS(t, n)
	ca := []string{"GIT_SSL_CAINFO=" + rootPEM}
	url := "https://" + owner + ":" + token + "@" + addr + "/ns/dns/zones"
	work := t.TempDir()
	if out, err := gitTry(t, work, ca, "clone", "-q", url, "zones"); err != nil {
		t.Fatalf("clone of /dns/zones: %v\n%s", err, out)
	}
	zone := filepath.Join(work, "zones", "example.test", "zone")
	old, err := os.ReadFile(zone)
	if err != nil {
		t.Fatalf("the clone has no zone file: %v", err)
	}
	os.WriteFile(zone, append(old, "www.example.test. 300 IN A 192.0.2.44\n"...), 0644)
	z := filepath.Join(work, "zones")
	gitCmd(t, z, "commit", "-q", "-am", "www")
	if out, err := gitTry(t, z, ca, "push", "-q", "origin", "HEAD:main"); err != nil {
		t.Fatalf("push of the edited zone: %v\n%s", err, out)
	}
	out, err := exec.Command("dig", "@127.0.0.1", "-p", port, "+short", "+time=2", "+tries=1", "www.example.test", "A").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "192.0.2.44" {
		t.Errorf("dig after the push: %q, %v", out, err)
	}
	// A bad zone: the push fails with the dns module's error, and the
	// zone served stays as it was. (The push made the module rewrite
	// the zone, its serial bumped: the clone pulls that first.)
	if out, err := gitTry(t, z, ca, "pull", "-q", "--ff-only", "origin", "main"); err != nil {
		t.Fatalf("pull after the push: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(zone)
	os.WriteFile(zone, append(b, "bad line here\n"...), 0644)
	gitCmd(t, z, "commit", "-q", "-am", "bad")
	if out, err := gitTry(t, z, ca, "push", "-q", "origin", "HEAD:main"); err == nil || !strings.Contains(out, "line") {
		t.Errorf("push of a bad zone: %v\n%s", err, out)
	}
	if got := must9p(t, n, "read", "/dns/zones/example.test/zone"); !strings.Contains(got, "192.0.2.44") || strings.Contains(got, "bad line") {
		t.Errorf("zone after a refused push:\n%s", got)
	}
}
