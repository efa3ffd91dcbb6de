package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"cheshire/internal/testutil"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// appsNeed skips t unless what the apps tests run is installed (test.sh
// installs it): chromium, Xvfb, ffmpeg, xdotool, xev, xclip, pulseaudio.
func appsNeed(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"Xvfb", "ffmpeg", "xdotool", "xev", "xclip", "pulseaudio", "pactl"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (test.sh installs it)", p)
		}
	}
	for _, p := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("chromium not installed (test.sh installs it)")
	return ""
}

// browser starts headless chromium for WebRTC on loopback, sending
// auth with every request, and returns a context of its first tab.
func browser(t *testing.T, exe, auth string) context.Context {
	t.Helper()
	return browserWith(t, exe, auth)
}

// browserWith is browser with more options.
func browserWith(t *testing.T, exe, auth string, more ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("ignore-certificate-errors", true), // the certificate is checked below, with the /ca root
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(640, 480),
	)
	opts = append(opts, more...)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx, sendAuth(auth)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return ctx
}

// tab opens another tab of the browser of ctx, sending auth; cancel
// closes it.
func tab(t *testing.T, ctx context.Context, auth string) (context.Context, context.CancelFunc) {
	t.Helper()
	c, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(c, sendAuth(auth)); err != nil {
		t.Fatal(err)
	}
	return c, cancel
}

// sendAuth makes the tab send an Authorization header with every request.
func sendAuth(auth string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})
}

// eval evaluates a JavaScript expression (awaiting a promise) in ctx.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

const framesDecoded = `(async () => { let n = 0; if (!window.cheshire) return 0;
	(await cheshire.pc.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "video") n = r.framesDecoded || 0; });
	return n; })()`

// waitFrames waits until the page in ctx has decoded frames of a video
// of size w x h.
func waitFrames(t *testing.T, ctx context.Context, w, h int) {
	t.Helper()
	testutil.WaitFor(t, "frames decoded", func() bool { return eval[int](t, ctx, framesDecoded) > 0 })
	size := fmt.Sprintf("%dx%d", w, h)
	testutil.WaitFor(t, "video of "+size, func() bool {
		return eval[string](t, ctx, `document.getElementById("video").videoWidth + "x" + document.getElementById("video").videoHeight`) == size
	})
}

// TestAppsBrowser: an app of /apps in headless chromium through the
// node's page: video decoded, a click and a typed word reach the app, a
// second tab views but may not control, resize, stop and start, and no
// stream for a visitor who does not sign in.
func TestAppsBrowser(t *testing.T) {
	exe := appsNeed(t)
	t.Parallel()
	n := startNode(t, shortTemp(t))
	addr, rootPEM, owner, token := gitHTTPS(t, n)
	write := func(path, data string) {
		t.Helper()
		if out, err := n.run(data, "9p", "write", path); err != nil {
			t.Fatalf("write %q to %s: %v %s", data, path, err, out)
		}
	}
	read := func(path string) string { return must9p(t, n, "read", path) }
	write("/apps/ctl", "register xev xev -geometry 600x400+0+0")
	write("/apps/xev/ctl", "resize 640 480")
	write("/apps/xev/ctl", "start")
	page := "https://" + addr + "/apps/xev/"

	// The certificate is the node's, from /ca; no sign-in, no stream.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(rootPEM)
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, req := range []struct{ method, url string }{{"GET", page}, {"POST", page + "offer"}} {
		r, _ := http.NewRequest(req.method, req.url, strings.NewReader("v=0"))
		resp, err := hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s %s unauthenticated: %s", req.method, req.url, resp.Status)
		}
	}

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(owner+":"+token))
	ctx := browser(t, exe, auth)
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, ctx, 640, 480)
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(100, 100), chromedp.KeyEvent("hello")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "click in the app's log", func() bool { return strings.Contains(read("/apps/xev/log"), "ButtonRelease") })
	testutil.WaitFor(t, "hello in the app's log", func() bool {
		log := read("/apps/xev/log")
		for _, c := range "hello" {
			if !strings.Contains(log, fmt.Sprintf(`XLookupString gives 1 bytes: (%02x) "%c"`, c, c)) {
				return false
			}
		}
		return true
	})

	// A second tab views; its input is refused.
	viewer, closeViewer := tab(t, ctx, auth)
	if err := chromedp.Do(viewer, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, viewer, 640, 480)
	if st := read("/apps/xev/status"); !strings.Contains(st, "sessions 2") {
		t.Fatalf("status:\n%s", st)
	}
	if err := chromedp.Do(viewer, chromedp.MouseClickXY(50, 50)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "viewer's input refused", func() bool {
		return strings.Contains(eval[string](t, viewer, `cheshire.errors.join("\n")`), "view only: permission denied")
	})

	// A tab closed without a word: its session is reaped.
	closeViewer()
	testutil.WaitFor(t, "closed tab's session reaped", func() bool { return strings.Contains(read("/apps/xev/status"), "sessions 1") })

	// Resize restarts the app on a display of the new size.
	write("/apps/xev/ctl", "resize 800 600")
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, ctx, 800, 600)

	// Stop ends the sessions; start and a reload show the app again.
	write("/apps/xev/ctl", "stop")
	if st := read("/apps/xev/status"); !strings.Contains(st, "state stopped") || !strings.Contains(st, "sessions 0") {
		t.Fatalf("status after stop:\n%s", st)
	}
	write("/apps/xev/ctl", "start")
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, ctx, 800, 600)

	// The browser killed, no goodbye: ICE fails and the session is reaped.
	if err := chromedp.FromContext(ctx).Browser.Process().Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "dead browser's session reaped", func() bool {
		st := read("/apps/xev/status")
		return strings.Contains(st, "sessions 0") && !strings.Contains(st, "encoder")
	})
}

// xevNode starts a node B serving 9P on a TCP port (returned) with the
// app xev started (startXev).
func xevNode(t *testing.T) (*node, string) {
	t.Helper()
	port := strconv.Itoa(testutil.FreePort(t))
	b := startNode(t, shortTemp(t), "--listen", "tcp!127.0.0.1!"+port)
	startXev(t, b)
	return b, port
}

// startXev registers the app xev on n, 640x480, and starts it.
func startXev(t *testing.T, n *node) {
	t.Helper()
	write9p(t, n, "/apps/ctl", "register xev xev -geometry 600x400+0+0")
	write9p(t, n, "/apps/xev/ctl", "resize 640 480")
	write9p(t, n, "/apps/xev/ctl", "start")
}

// write9p writes data to the file p of n's namespace.
func write9p(t *testing.T, n *node, p, data string) {
	t.Helper()
	if out, err := n.run(data, "9p", "write", p); err != nil {
		t.Fatalf("write %q to %s: %v %s", data, p, err, out)
	}
}

// watchXev opens url, the page of b's app xev, in the browser of ctx,
// and waits for its video, b counting the session.
func watchXev(t *testing.T, ctx context.Context, b *node, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, ctx, 640, 480)
	if st := must9p(t, b, "read", "/apps/xev/status"); !strings.Contains(st, "sessions 1") {
		t.Fatalf("B's status:\n%s", st)
	}
}

// TestAppsThroughImport: node A has no app; its user's namespace has
// node B's /apps (mounted by dial string, bound at /apps). A's page
// shows B's app: the session is made through the files over 9P, and the
// media and input flow between B and the browser.
func TestAppsThroughImport(t *testing.T) {
	exe := appsNeed(t)
	t.Parallel()
	b, port := xevNode(t)
	a := startNode(t, shortTemp(t))
	write9p(t, a, "/ns/ctl", "mount tcp!127.0.0.1!"+port+" /n/b\nbind /n/b/apps /apps\n")
	addr, _, owner, token := gitHTTPS(t, a)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(owner+":"+token))
	ctx := browser(t, exe, auth)
	watchXev(t, ctx, b, "https://"+addr+"/apps/xev/")
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(100, 100), chromedp.KeyEvent("cat")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "typed word in B's app log", func() bool {
		return strings.Contains(must9p(t, b, "read", "/apps/xev/log"), `XLookupString gives 1 bytes: (74) "t"`)
	})

	// B stopped: its app, Xvfb and encoder go with it.
	var pids []int
	for _, l := range strings.Split(must9p(t, b, "read", "/apps/xev/status"), "\n") {
		if p, ok := strings.CutPrefix(l, "pid "); ok {
			pid, _ := strconv.Atoi(p)
			pids = append(pids, pid)
		}
	}
	if len(pids) != 1 {
		t.Fatal("no pid in B's status")
	}
	b.stop()
	if err := syscall.Kill(pids[0], 0); err == nil {
		t.Errorf("app %d still running after its node stopped", pids[0])
	}
}

// TestAppsByName: ingress by name through a second node. The app runs
// on B; A imports B at /n/b (no bind) and maps xev.example.test to the
// app in its zone; dig at A answers the name with A's HTTPS address; a
// TLS client trusting only A's /ca root accepts the certificate A
// serves for the name; Chromium, the name resolved to A, loads
// https://xev.example.test:PORT/ and decodes B's video.
func TestAppsByName(t *testing.T) {
	exe := appsNeed(t)
	t.Parallel()
	b, port := xevNode(t)
	adir := shortTemp(t)
	dnsPort := strconv.Itoa(freeDNSPort(t))
	os.MkdirAll(filepath.Join(adir, "modules", "dns"), 0700)
	os.WriteFile(filepath.Join(adir, "modules", "dns", "config"), []byte("listen 127.0.0.1:"+dnsPort+"\n"), 0600)
	a := startNode(t, adir)
	write9p(t, a, "/ns/ctl", "mount tcp!127.0.0.1!"+port+" /n/b\n")
	write9p(t, a, "/dns/ctl", "zone add example.test\napp xev xev.example.test\n")
	addr, rootPEM, owner, token := gitHTTPS(t, a)
	host, httpsPort, _ := net.SplitHostPort(addr)

	// DNS: the name is A's HTTPS address.
	testutil.WaitFor(t, "xev.example.test in A's zone", func() bool {
		out, err := exec.Command("dig", "@127.0.0.1", "-p", dnsPort, "+short", "+time=2", "+tries=1", "xev.example.test", "A").CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == host
	})
	// TLS: a certificate for the name, from A's /ca.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(rootPEM)
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "xev.example.test", RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS for xev.example.test: %v", err)
	}
	c.Close()
	// A name no app has gets the node's certificate, not one of its own.
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "nope.app.example.test", RootCAs: pool}); err == nil {
		c.Close()
		t.Error("a certificate for a name no app has")
	}

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(owner+":"+token))
	ctx := browserWith(t, exe, auth, chromedp.Flag("host-resolver-rules", "MAP xev.example.test "+host))
	watchXev(t, ctx, b, "https://xev.example.test:"+httpsPort+"/")
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(100, 100), chromedp.KeyEvent("dog")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "typed word in B's app log", func() bool {
		return strings.Contains(must9p(t, b, "read", "/apps/xev/log"), `XLookupString gives 1 bytes: (64) "d"`)
	})
}

// TestAppsAudio: an app that plays a tone into its PulseAudio server is
// heard in the page: Opus packets arrive and decode to sound; the
// session's stats tell the audio packets and the encoder's latency.
func TestAppsAudio(t *testing.T) {
	exe := appsNeed(t)
	t.Parallel()
	n := startNode(t, shortTemp(t))
	for _, w := range []struct{ path, data string }{
		{"/apps/ctl", "register tone ffmpeg -hide_banner -loglevel error -re -f lavfi -i sine=frequency=440:sample_rate=48000 -f pulse tone"},
		{"/apps/tone/ctl", "resize 320 240"},
		{"/apps/tone/ctl", "start"},
	} {
		if out, err := n.run(w.data, "9p", "write", w.path); err != nil {
			t.Fatalf("write %q to %s: %v %s", w.data, w.path, err, out)
		}
	}
	if st := must9p(t, n, "read", "/apps/tone/status"); !strings.Contains(st, "audio ") {
		t.Fatalf("no sound server in the status:\n%s", st)
	}
	addr, _, owner, token := gitHTTPS(t, n)
	ctx := browser(t, exe, "Basic "+base64.StdEncoding.EncodeToString([]byte(owner+":"+token)))
	if err := chromedp.Do(ctx, chromedp.Navigate("https://"+addr+"/apps/tone/")); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, ctx, 320, 240)
	const heard = `(async () => { let e = 0; if (!window.cheshire) return 0;
	(await cheshire.pc.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "audio") e = r.totalAudioEnergy || 0; });
	return e; })()`
	testutil.WaitFor(t, "sound decoded in the page", func() bool { return eval[float64](t, ctx, heard) > 0 })
	var sess string
	for _, f := range strings.Fields(must9p(t, n, "ls", "/apps/tone/sessions")) {
		if f != "clone" {
			sess = f
		}
	}
	if st := must9p(t, n, "read", "/apps/tone/sessions/"+sess+"/stats"); !strings.Contains(st, "audio-packets") || !strings.Contains(st, "encoder-latency ") {
		t.Errorf("session %q stats:\n%s", sess, st)
	}
}

// TestAppsByNameThroughDHT: the node that takes the request finds the
// app's node by path in the DHT. B exports its /apps to every key
// (announced); A, which imported nothing, mounts #find at /net/find and
// names the app; Chromium at A's name gets B's video.
func TestAppsByNameThroughDHT(t *testing.T) {
	exe := appsNeed(t)
	t.Parallel()
	cl := startCluster(t, 2)
	a, b := cl.nodes[0], cl.nodes[1]
	startXev(t, b.node)
	write9p(t, b.node, "/ns/ctl", "export /apps rw to *")
	testutil.WaitFor(t, "B's /apps in the DHT", func() bool {
		out, err := a.run("find /apps\n", "9p", "rdwr", "/dht/ctl")
		return err == nil && strings.Contains(out, "tcp!")
	})
	write9p(t, a.node, "/ns/ctl", "mount '#find' /net/find")
	write9p(t, a.node, "/dns/ctl", "zone add example.test\napp xev xev.example.test\n")
	addr, _, owner, token := gitHTTPS(t, a.node)
	host, httpsPort, _ := net.SplitHostPort(addr)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(owner+":"+token))
	ctx := browserWith(t, exe, auth, chromedp.Flag("host-resolver-rules", "MAP xev.example.test "+host))
	watchXev(t, ctx, b.node, "https://xev.example.test:"+httpsPort+"/")
}
