package tests

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cheshire/importers/remote"
	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/styx"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// uiBrowser starts headless Debian chromium that trusts the key of the
// node's HTTPS certificate at addr (pinned by its SPKI hash, the one
// certificate /ca issued it), and returns a context that drives it.
func uiBrowser(t *testing.T, addr string) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium (test.sh installs it)")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		// https://localhost:PORT is the node too: a name, which passkeys
		// need (WebAuthn's relying party cannot be an IP address).
		chromedp.Flag("host-resolver-rules", "MAP localhost 127.0.0.1"),
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// The first run starts the browser, bound to ctx: contexts derived
	// from it afterwards may end without closing it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return ctx
}

// shot saves a screenshot of the page as a test artifact.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(t.ArtifactDir(), name+".png"), png, 0o644)
}

// TestWebUI drives the web UI with headless Chromium against a real
// node: sign in with a token, browse to a file and read it, edit it and
// read it back through 9P, write a bad ctl line and see the error, stop
// and start a module, follow a file live; and another user does not
// see the owner's namespace.
func TestWebUI(t *testing.T) {
	t.Parallel()
	n, addr, owner := webNode(t)
	const token, aliceToken = "owner-token-0123456789", "alice-token-0123456789"
	must9pIn(t, n, owner+" "+token+"\nalice "+aliceToken+"\n", "write", "/git/tokens")
	must9pIn(t, n, "first text\n", "write", "/tmp/notes")
	must9pIn(t, n, "bind /tmp /n/scratch\n", "write", "/ns/ctl")
	ctx := uiBrowser(t, addr)
	base := "https://" + addr
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			shot(t, ctx, "failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			shot(t, ctx, "failed")
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}

	run("sign in",
		chromedp.Navigate(base+"/"),
		chromedp.SendKeys(chromedp.ID("user"), owner),
		chromedp.SendKeys(chromedp.ID("password"), token),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("entries")))
	body := get("the listing", chromedp.Text(chromedp.ID("entries")))
	shot(t, ctx, "namespace")
	if !strings.Contains(body, "tmp/") || !strings.Contains(body, "mount") {
		t.Fatalf("the root listing:\n%s", body)
	}

	run("read a file",
		chromedp.Navigate(base+"/fs/tmp/notes"),
		chromedp.WaitVisible(chromedp.ID("content")))
	text := get("the file", chromedp.Value(chromedp.ID("content")))
	if text != "first text\n" {
		t.Fatalf("notes shown as %q", text)
	}
	run("edit it",
		chromedp.SetValue(chromedp.ID("content"), "edited in the browser\n"),
		chromedp.Click(chromedp.ID("save")),
		chromedp.WaitVisible(chromedp.ID("content")))
	if got := must9p(t, n, "read", "/tmp/notes"); got != "edited in the browser\n" {
		t.Fatalf("/tmp/notes after the edit: %q", got)
	}

	run("a bad ctl line",
		chromedp.Navigate(base+"/fs/ns/ctl"),
		chromedp.SendKeys(chromedp.ID("line"), "frobnicate /x"),
		chromedp.Click(chromedp.ID("run")),
		chromedp.WaitVisible(chromedp.ID("ctlerr")))
	ctlErr := get("the ctl error", chromedp.Text(chromedp.ID("ctlerr")))
	shot(t, ctx, "ctl-error")
	if !strings.Contains(ctlErr, "frobnicate") {
		t.Fatalf("the ctl error shown: %q", ctlErr)
	}

	for _, verb := range []string{"stop", "start"} {
		run(verb+" a module",
			chromedp.Navigate(base+"/modules"),
			chromedp.WaitVisible(chromedp.ID("modules")),
			chromedp.Click(chromedp.CSS("#m-tmp button."+verb)),
			chromedp.WaitVisible(chromedp.ID("done")))
		want := map[string]string{"stop": "stopped", "start": "running"}[verb]
		if st := must9p(t, n, "read", "/modules/tmp/status"); !strings.Contains(st, "state "+want) {
			t.Fatalf("after %s: status\n%s", verb, st)
		}
	}
	shot(t, ctx, "modules")
	run("load a package that is not there",
		chromedp.Navigate(base+"/modules"),
		chromedp.SendKeys(chromedp.ID("load-name"), "nope"),
		chromedp.SendKeys(chromedp.ID("load-source"), "/tmp/nope.pkg"),
		chromedp.Click(chromedp.ID("load")),
		chromedp.WaitVisible(chromedp.ID("error")))
	if e := get("the load error", chromedp.Text(chromedp.ID("error"))); !strings.Contains(e, "load nope") {
		t.Fatalf("the load error shown: %q", e)
	}

	run("the node page", chromedp.Navigate(base+"/node"), chromedp.WaitVisible(chromedp.ID("node-id")))
	if id := get("the node's id", chromedp.Text(chromedp.ID("node-id"))); id != strings.TrimSpace(must9p(t, n, "read", "/node/id")) {
		t.Fatalf("the node page's id: %q", id)
	}
	shot(t, ctx, "node")

	// The graph: rates drawn from /node/stats, the 9P requests of this
	// very test among them.
	run("the graph", chromedp.Navigate(base+"/graph"),
		voidOf(chromedp.Poll[bool](`window.graphSamples >= 3 && document.getElementById("chart-9p-requests") !== null`)),
		voidOf(chromedp.Poll[bool](`window.clusterSamples >= 1 && document.querySelector("#cluster g.self") !== null`)))
	shot(t, ctx, "graph")
	if self := get("the cluster's self node", chromedp.Evaluate[string](`document.querySelector("#cluster g.self").dataset.id`)); self != strings.TrimSpace(must9p(t, n, "read", "/node/id")) {
		t.Fatalf("the cluster graph's own node: %q", self)
	}
	if st := must9p(t, n, "read", "/node/stats"); !strings.Contains(st, "9p-requests ") || !strings.Contains(st, "https-requests ") || !strings.Contains(st, "dns-queries ") {
		t.Fatalf("/node/stats:\n%s", st)
	}

	must9pIn(t, n, "before\n", "write", "/tmp/live")
	run("follow a file",
		chromedp.Navigate(base+"/fs/tmp/live?follow"),
		voidOf(chromedp.Poll[bool](`document.getElementById("live").textContent.includes("before")`)))
	t0 := time.Now()
	must9pIn(t, n, "before\nlogged just now\n", "write", "/tmp/live")
	run("see the new line", voidOf(chromedp.Poll[bool](`document.getElementById("live").textContent.includes("logged just now")`)))
	t.Logf("a line written appeared in the page after %v", time.Since(t0))
	shot(t, ctx, "live")

	// alice signs in elsewhere: the owner's bind is not in her namespace.
	actx := uiBrowser(t, addr)
	if err := chromedp.Do(actx,
		chromedp.Navigate(base+"/"),
		chromedp.SendKeys(chromedp.ID("user"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), aliceToken),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("entries")),
		chromedp.Navigate(base+"/fs/n/scratch/notes"),
		chromedp.WaitVisible(chromedp.ID("error"))); err != nil {
		t.Fatalf("alice: %v", err)
	}
	status, err := chromedp.Run(actx, chromedp.Text(chromedp.ID("error")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status, "/n/scratch") {
		t.Fatalf("alice reading the owner's bind: %q", status)
	}
}

// must9pIn runs cheshire 9p with stdin, failing the test on error.
func must9pIn(t *testing.T, n *node, stdin string, args ...string) string {
	t.Helper()
	out, err := n.run(stdin, append([]string{"9p"}, args...)...)
	if err != nil {
		t.Fatalf("9p %v: %v", args, err)
	}
	return out
}

// voidOf drops an action's value, so that it runs among others in Do.
func voidOf[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// TestWebUIKeys backs up the CA through the keys page with a passphrase,
// restores it (a wrong passphrase refused, nothing changed), and has a
// cross-site POST refused; with Go's HTTP client, over HTTPS trusted
// through /ca.
//
// The sign-in takes a password set through /node/password as well as a
// token of /git/tokens.
func TestWebUIKeys(t *testing.T) {
	t.Parallel()
	n, addr, owner := webNode(t)
	const token = "owner-token-0123456789"
	must9pIn(t, n, owner+" "+token+"\n", "write", "/git/tokens")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(must9p(t, n, "read", "/ca/root.pem")))
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "https://" + addr
	post := func(path string, form url.Values, hdr ...string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	// A password set through /node/password signs in too; a wrong one
	// does not.
	must9pIn(t, n, "a long passphrase\n", "write", "/node/password")
	if code, _, _ := post("/signin", url.Values{"user": {owner}, "password": {"a long passphrase"}}); code != http.StatusSeeOther {
		t.Fatalf("sign in with the password of /node/password: %d", code)
	}
	if code, _, _ := post("/signin", url.Values{"user": {owner}, "password": {"a wrong passphrase"}}); code != http.StatusUnauthorized {
		t.Errorf("sign in with a wrong password: %d", code)
	}
	if code, _, _ := post("/signin", url.Values{"user": {owner}, "password": {token}}); code != http.StatusSeeOther {
		t.Fatalf("sign in: %d", code)
	}
	resp, err := c.Get(base + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(page))
	if resp.StatusCode != 200 || m == nil || !strings.Contains(string(page), "intermediate") {
		t.Fatalf("/keys: %d\n%s", resp.StatusCode, page)
	}
	csrf := m[1]
	root := must9p(t, n, "read", "/ca/root.pem")

	code, backup, hdr := post("/keys", url.Values{"csrf": {csrf}, "op": {"backup"}, "passphrase": {"correct horse battery"}})
	if code != 200 || !strings.Contains(backup, "CHESHIRE CA BACKUP") || !strings.Contains(hdr.Get("Content-Disposition"), "attachment") {
		t.Fatalf("backup: %d %q", code, backup)
	}
	code, body, _ := post("/keys", url.Values{"csrf": {csrf}, "op": {"restore"}, "backup": {backup}, "passphrase": {"wrong horse"}})
	if code != http.StatusConflict || !strings.Contains(body, "wrong passphrase") {
		t.Fatalf("restore with a wrong passphrase: %d\n%s", code, body)
	}
	if code, _, _ = post("/keys", url.Values{"csrf": {csrf}, "op": {"restore"}, "backup": {backup}, "passphrase": {"correct horse battery"}}); code != http.StatusSeeOther {
		t.Fatalf("restore: %d", code)
	}
	if got := must9p(t, n, "read", "/ca/root.pem"); got != root {
		t.Fatal("the root changed across a backup and restore")
	}
	// An SSH user certificate signed from the page, as ssh-user in /ca/ctl.
	pub := strings.TrimSpace(sh(t, "k="+t.TempDir()+"/k && ssh-keygen -q -t ed25519 -N '' -f $k && cat $k.pub"))
	if code, body, _ := post("/keys", url.Values{"csrf": {csrf}, "op": {"ssh-user"}, "name": {"alice"}, "principals": {"alice,root"}, "pubkey": {pub}}); code != http.StatusSeeOther {
		t.Fatalf("ssh-user: %d\n%s", code, body)
	}
	if cert := must9p(t, n, "read", "/ca/ssh/certs/alice-cert.pub"); !strings.HasPrefix(cert, "ssh-ed25519-cert-v01@openssh.com ") {
		t.Fatalf("the ssh certificate: %q", cert)
	}
	if code, _, _ := post("/keys", url.Values{"csrf": {csrf}, "op": {"ssh-user"}, "name": {"bob"}, "pubkey": {pub}}); code != http.StatusBadRequest {
		t.Fatalf("ssh-user without principals: %d, want 400", code)
	}
	if code, _, _ = post("/keys", url.Values{"csrf": {csrf}, "op": {"issue"}, "arg": {"web1"}}, "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Fatalf("a cross-site POST: %d, want 403", code)
	}

	// A client certificate issued by /ca signs in by itself, as its
	// common name; once revoked, it is refused.
	must9pIn(t, n, "issue alice\n", "write", "/ca/ctl")
	cert, err := tls.X509KeyPair([]byte(must9p(t, n, "read", "/ca/certs/alice/cert.pem")), []byte(must9p(t, n, "read", "/ca/certs/alice/key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	signIn := func() (int, string) {
		jar, _ := cookiejar.New(nil)
		cc := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
		resp, err := cc.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := signIn(); code != 200 || !strings.Contains(body, `<span class="user">alice</span>`) {
		t.Fatalf("sign in by certificate: %d\n%s", code, body)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	must9pIn(t, n, fmt.Sprintf("revoke %x keyCompromise\n", leaf.SerialNumber), "write", "/ca/ctl")
	if code, body := signIn(); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Fatalf("a revoked certificate: %d\n%s", code, body)
	}
}

// webNode starts a node and returns it, its HTTPS address and its
// owner's name.
func webNode(t *testing.T) (n *node, addr, owner string) {
	t.Helper()
	n = startNode(t, shortTemp(t))
	return n, n.httpsAddr(), ownerName(t)
}

// remoteAttach attaches to n's 9P over TLS as the holder of id's key,
// at aname.
func remoteAttach(t *testing.T, n *node, id *nodekey.Identity, aname string) (*styx.Fid, error) {
	t.Helper()
	nodeKey, err := nodekey.Decode(strings.TrimSpace(must9p(t, n, "read", "/node/id")))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := remote.TLSDialer(id)(t.Context(), n.tlsAddr(), nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := styx.NewClient(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.Attach(t.Context(), nil, "anyone", aname)
}

// TestWebUIApprovals: remote keys to which nothing is exported are
// refused, and each files an access request in /node/requests; alice,
// signed in to the web UI, cannot approve one (nothing exported); the
// owner approves one (the export line written to the owner's /ns/ctl,
// the key then attaching and reading the file) and refuses the other;
// a key asks through #requests to hold fragments, and once approved the
// store has it as a holder.
func TestWebUIApprovals(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t), "--listen", "tls!127.0.0.1!0")
	addr, owner := n.httpsAddr(), ownerName(t)
	const token, aliceToken = "owner-token-0123456789", "alice-token-0123456789"
	must9pIn(t, n, owner+" "+token+"\nalice "+aliceToken+"\n", "write", "/git/tokens")
	must9p(t, n, "create", "/tmp/shared/")
	must9pIn(t, n, "for the key\n", "write", "/tmp/shared/f")

	ids := make([]*nodekey.Identity, 2)
	for i, aname := range []string{"/tmp/shared", "/tmp/other"} {
		id, err := nodekey.Load(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		if _, err := remoteAttach(t, n, id, aname); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("a key with nothing exported to it attached: %v", err)
		}
		req := must9p(t, n, "read", fmt.Sprintf("/node/requests/%d", i+1))
		for _, want := range []string{"from key:" + id.ID() + "\n", "kind access\n", "file /ns/ctl\n",
			"line export " + aname + " ro to " + id.ID() + "\n", "state pending\n"} {
			if !strings.Contains(req, want) {
				t.Fatalf("request %d lacks %q:\n%s", i+1, want, req)
			}
		}
	}

	ctx := uiBrowser(t, addr)
	base := "https://" + addr
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			shot(t, ctx, "failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	signIn := func(user, token string) {
		t.Helper()
		run("sign in as "+user,
			chromedp.Navigate(base+"/?next=/approvals"),
			chromedp.SendKeys(chromedp.ID("user"), user),
			chromedp.SendKeys(chromedp.ID("password"), token),
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("req-1")))
	}

	signIn("alice", aliceToken)
	run("alice approves", chromedp.Click(chromedp.CSS("#req-1 button.approve")), chromedp.WaitVisible(chromedp.ID("error")))
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("error")))
	if err != nil {
		t.Fatal(err)
	}
	shot(t, ctx, "approval-refused")
	if !strings.Contains(msg, "permission denied") {
		t.Fatalf("alice approving: %q", msg)
	}
	if req := must9p(t, n, "read", "/node/requests/1"); !strings.Contains(req, "state pending\n") {
		t.Fatalf("request 1 after alice's try:\n%s", req)
	}
	if ex := must9p(t, n, "read", "/ns/exports"); strings.Contains(ex, ids[0].ID()) {
		t.Fatalf("exported after alice's try:\n%s", ex)
	}
	run("alice signs out", chromedp.Navigate(base+"/approvals"), chromedp.Click(chromedp.CSS(".signout button")),
		chromedp.WaitVisible(chromedp.ID("signin")))

	signIn(owner, token)
	shot(t, ctx, "approvals")
	run("the owner approves", chromedp.Click(chromedp.CSS("#req-1 button.approve")), chromedp.WaitVisible(chromedp.ID("done")))
	if req := must9p(t, n, "read", "/node/requests/1"); !strings.Contains(req, "state approved\nby "+owner+"\n") {
		t.Fatalf("request 1 after approval:\n%s", req)
	}
	if ex := must9p(t, n, "read", "/ns/exports"); !strings.Contains(ex, ids[0].ID()) {
		t.Fatalf("/ns/exports after approval:\n%s", ex)
	}
	root, err := remoteAttach(t, n, ids[0], "/tmp/shared")
	if err != nil {
		t.Fatalf("the approved key attaching: %v", err)
	}
	f, err := root.WalkPath(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(t.Context(), styx.OREAD); err != nil {
		t.Fatal(err)
	}
	if b, err := f.ReadAll(t.Context()); err != nil || string(b) != "for the key\n" {
		t.Fatalf("the approved key reads %q, %v", b, err)
	}

	run("the owner refuses", chromedp.Click(chromedp.CSS("#req-2 button.refuse")), chromedp.WaitVisible(chromedp.ID("done")),
		chromedp.WaitVisible(chromedp.ID("none")))
	shot(t, ctx, "approvals-decided")
	if req := must9p(t, n, "read", "/node/requests/2"); !strings.Contains(req, "state refused\n") {
		t.Fatalf("request 2 after refusal:\n%s", req)
	}
	if ex := must9p(t, n, "read", "/ns/exports"); strings.Contains(ex, ids[1].ID()) {
		t.Fatalf("refused, yet exported:\n%s", ex)
	}

	// A key asks, through #requests, to hold the store's fragments; the
	// owner approves, and the store has it as a holder.
	ask, err := remoteAttach(t, n, ids[1], "#requests")
	if err != nil {
		t.Fatalf("attaching to #requests: %v", err)
	}
	ctl, err := ask.WalkPath(t.Context(), "ctl")
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Open(t.Context(), styx.OWRITE); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.WriteAt(t.Context(), []byte("request holder\n"), 0); err != nil {
		t.Fatalf("request holder: %v", err)
	}
	ctl.Clunk(t.Context())
	if req := must9p(t, n, "read", "/node/requests/3"); !strings.Contains(req, "from key:"+ids[1].ID()+"\n") || !strings.Contains(req, "line holders add "+ids[1].ID()+"\n") {
		t.Fatalf("request 3:\n%s", req)
	}
	run("the owner approves the holder", chromedp.Navigate(base+"/approvals"), chromedp.WaitVisible(chromedp.ID("req-3")),
		chromedp.Click(chromedp.CSS("#req-3 button.approve")), chromedp.WaitVisible(chromedp.ID("done")))
	if st := must9p(t, n, "read", "/store/status"); !strings.Contains(st, "holder "+ids[1].ID()) {
		t.Fatalf("/store/status after the approval:\n%s", st)
	}
}

// TestWebUIPasskey: signed in with a token, the owner adds a passkey
// (a CDP virtual authenticator: CTAP2, internal, resident keys, user
// verification), signs out, and signs in again with the passkey alone;
// the credential is kept in the node's data directory. At
// https://localhost:PORT, since WebAuthn takes no IP address.
func TestWebUIPasskey(t *testing.T) {
	t.Parallel()
	n, addr, owner := webNode(t)
	const token = "owner-token-0123456789"
	must9pIn(t, n, owner+" "+token+"\n", "write", "/git/tokens")
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	base := "https://localhost:" + port
	ctx := uiBrowser(t, addr)
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	va, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
		Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
		IsUserVerified: true, AutomaticPresenceSimulation: true}})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			shot(t, ctx, "failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	run("sign in with the token",
		chromedp.Navigate(base+"/?next=/passkeys"),
		chromedp.SendKeys(chromedp.ID("user"), owner),
		chromedp.SendKeys(chromedp.ID("password"), token),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("passkey-add")))
	run("add a passkey", chromedp.Click(chromedp.ID("passkey-add")),
		chromedp.WaitVisible(chromedp.CSS("#done, #passkey-error:not([hidden])")))
	if msg, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("passkey-error") ? document.getElementById("passkey-error").textContent : ""`)); msg != "" {
		shot(t, ctx, "failed")
		t.Fatalf("adding a passkey: %s", msg)
	}
	shot(t, ctx, "passkey-added")
	creds, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: va.AuthenticatorID})
	if err != nil || len(creds.Credentials) != 1 || creds.Credentials[0].RpID != "localhost" || !creds.Credentials[0].IsResidentCredential {
		t.Fatalf("the authenticator's credentials: %+v %v", creds, err)
	}
	kept, _ := filepath.Glob(filepath.Join(n.dir, "webui", "passkeys", "*.json"))
	if len(kept) != 1 {
		t.Fatalf("passkey files kept: %q", kept)
	}

	// A click that makes the page navigate is waited for in script,
	// asked again until true: chromedp's WaitVisible may hold a node
	// of the page that is going away ("Could not find node with given
	// id", a flake in CI).
	navigated := func(what, sel, cond string) {
		t.Helper()
		run(what, chromedp.Click(chromedp.CSS(sel)))
		testutil.WaitFor(t, what, func() bool {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
			return err == nil && ok
		})
	}
	const signedOut = `document.readyState === "complete" && !!document.getElementById("passkey-signin")`
	const signInEnded = `!!document.getElementById("entries") || !!(document.getElementById("passkey-error") && !document.getElementById("passkey-error").hidden)`
	navigated("sign out", ".signout button", signedOut)
	navigated("sign in with the passkey", "#passkey-signin", signInEnded)
	user, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("span.user") ? document.querySelector("span.user").textContent : document.getElementById("passkey-error").textContent`))
	shot(t, ctx, "passkey-signed-in")
	if err != nil || user != owner {
		t.Fatalf("signed in with the passkey as %q (%v), want %q", user, err, owner)
	}

	// Removed, the passkey signs in no more.
	run("remove the passkey", chromedp.Navigate(base+"/passkeys"), chromedp.Click(chromedp.CSS("#passkeys button.remove")),
		chromedp.WaitVisible(chromedp.ID("done")))
	if b, err := os.ReadFile(kept[0]); err != nil || !strings.Contains(string(b), `"credentials": []`) {
		t.Fatalf("the passkey file after removal: %s %v", b, err)
	}
	navigated("sign out again", ".signout button", signedOut)
	navigated("a removed passkey", "#passkey-signin", signInEnded)
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("passkey-error")))
	shot(t, ctx, "passkey-removed")
	if err != nil || !strings.Contains(msg, "passkey refused") {
		t.Fatalf("signing in with a removed passkey: %q %v", msg, err)
	}
}

// TestWebUICluster: node A imports node B by key; A's /graph draws B as
// an import that is up, then, B killed, as one that is not, live.
func TestWebUICluster(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2)
	a, b := cl.nodes[0], cl.nodes[1]
	must9p(t, b.node, "create", "/tmp/pub/")
	if err := b.ctl("/ns/ctl", "export /tmp/pub ro to *"); err != nil {
		t.Fatal(err)
	}
	b.published(1)
	if _, err := a.run("", "import", b.key, "/n/b"); err != nil {
		t.Fatalf("import: %v\n%s", err, a.logs)
	}
	owner := ownerName(t)
	const token = "owner-token-0123456789"
	must9pIn(t, a.node, owner+" "+token+"\n", "write", "/git/tokens")
	addr := a.httpsAddr()
	ctx := uiBrowser(t, addr)
	imported := `document.querySelector('#cluster g.import[data-id="` + b.key + `"]')`
	if err := chromedp.Do(ctx,
		chromedp.Navigate("https://"+addr+"/?next=/graph"),
		chromedp.SendKeys(chromedp.ID("user"), owner),
		chromedp.SendKeys(chromedp.ID("password"), token),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("cluster")),
		voidOf(chromedp.Poll[bool](imported+` !== null && `+imported+`.classList.contains("state-up")`))); err != nil {
		shot(t, ctx, "failed")
		t.Fatalf("B drawn as an import that is up: %v", err)
	}
	shot(t, ctx, "cluster-up")
	b.kill()
	if err := chromedp.Do(ctx, voidOf(chromedp.Poll[bool](imported+` !== null && !`+imported+`.classList.contains("state-up")`))); err != nil {
		shot(t, ctx, "failed")
		t.Fatalf("B drawn as down: %v", err)
	}
	state, err := chromedp.Run(ctx, chromedp.Evaluate[string](imported+`.getAttribute("class")`))
	shot(t, ctx, "cluster-down")
	t.Logf("B killed, drawn with class %q", state)
	if err != nil || !strings.Contains(state, "import state-") {
		t.Fatalf("B's class: %q %v", state, err)
	}
}

// TestRequestFromShell: the asking side files a request with shell
// tools: node A imports B's #requests by key and writes `request join`
// to it; B's queue holds it, from A's key, with the line approving it
// would write.
func TestRequestFromShell(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2)
	a, b := cl.nodes[0], cl.nodes[1]
	b.published(1)
	if err := a.ctl("/ns/ctl", "import "+b.key+" '#requests' /n/breq"); err != nil {
		t.Fatalf("import #requests: %v\n%s", err, a.logs)
	}
	if err := a.ctl("/n/breq/ctl", "request join"); err != nil {
		t.Fatalf("request join: %v", err)
	}
	var req string
	testutil.WaitFor(t, "the request in B's queue", func() bool {
		out, err := b.run("", "9p", "ls", "/node/requests")
		if err != nil {
			return false
		}
		for _, f := range strings.Fields(out) {
			if f != "ctl" && f != "decide" {
				req = must9p(t, b.node, "read", "/node/requests/"+f)
				return true
			}
		}
		return false
	})
	for _, want := range []string{"from key:" + a.key, "kind join", "line join " + a.key, "file /ledger/ctl", "state pending"} {
		if !strings.Contains(req, want) {
			t.Errorf("request lacks %q:\n%s", want, req)
		}
	}
}
