package apps

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/styx"
	"cheshire/synth"

	"github.com/chromedp/chromedp"
)

// measureJS moves the pointer between two spots of the display over the
// data channel, n times, and for each move times how long until a frame
// that shows the pointer at its new spot is handed to the page
// (requestVideoFrameCallback): input to glass. It returns the latencies
// in milliseconds.
const measureJS = `(async (n) => {
  const v = document.getElementById("video"), dc = cheshire.dc;
  const c = document.createElement("canvas"); c.width = 12; c.height = 16;
  const g = c.getContext("2d", { willReadFrequently: true });
  const spots = [[300, 300], [900, 420]];
  let at = spots[0];
  // Only the patch at the spot watched is copied out of each frame.
  const sum = () => { g.drawImage(v, at[0] - 2, at[1] - 2, 12, 16, 0, 0, 12, 16);
    const d = g.getImageData(0, 0, 12, 16).data; let s = 0;
    for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2]; return s; };
  const frame = () => new Promise((res) => v.requestVideoFrameCallback(() => res(sum())));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = [];
  for (let i = 0; i < n; i++) {
    const [x, y] = spots[i % 2], [ox, oy] = spots[(i + 1) % 2];
    at = spots[i % 2];
    dc.send("move " + ox + " " + oy);
    await sleep(250);
    const base = await frame();
    const t0 = performance.now();
    dc.send("move " + x + " " + y);
    for (let k = 0; k < 60; k++) {
      if (Math.abs((await frame()) - base) > 3000) { out.push(performance.now() - t0); break; }
    }
  }
  return out;
})`

// BenchmarkGlassToGlass streams a 1280x720 display to headless chromium
// and measures input-to-glass latency (see measureJS), the frame rate
// the page decodes, and the CPU the stream costs (ffmpeg, and this
// process: pion and the forwarding). Each iteration is one measurement;
// run it with -benchtime=1x.
//
// It runs twice, as sub-benchmarks: with the playout delay at 0/0 (the
// default) and with it off (the browser smooths as it likes). Each has
// a browser of its own, for a browser keeps the last delay it was sent.
//
//	go test -run='^$' -bench=GlassToGlass -benchtime=1x ./providers/apps
func BenchmarkGlassToGlass(b *testing.B) {
	for _, off := range []bool{false, true} {
		name := "playout=0"
		if off {
			name = "playout=off"
		}
		b.Run(name, func(b *testing.B) { glassToGlass(b, off) })
	}
}

func glassToGlass(b *testing.B, playoutOff bool) {
	exe := ""
	for _, p := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			exe = path
		}
	}
	if exe == "" {
		b.Skip("chromium not installed")
	}
	for _, p := range []string{"Xvfb", "ffmpeg", "xdotool", "xev"} {
		if _, err := exec.LookPath(p); err != nil {
			b.Skipf("%s not installed", p)
		}
	}
	a, err := New(b.TempDir(), Options{Owner: "glenda"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.StopAll()
	if playoutOff {
		a.playout.off()
	}
	if err := a.Register("bench", []string{"xev", "-geometry", "1280x720+0+0"}); err != nil {
		b.Fatal(err)
	}
	ap, _ := a.lookup("bench")
	if err := ap.start(context.Background()); err != nil {
		b.Fatal(err)
	}
	top := synth.NewDir("/", 0555) // a namespace with /apps
	top.Add(synth.NewMount("apps", 0555, a))
	ns := synth.NewServer(top, synth.WithOwner("glenda"))
	srv := httptest.NewTLSServer(Handler(WebOptions{
		User: func(r *http.Request) (string, error) { return "glenda", nil },
		Root: func(ctx context.Context, user string) (styx.File, error) { return ns.Attach(ctx, user, "", nil) },
	}))
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 720))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel2 := chromedp.NewContext(actx)
	defer cancel2()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/apps/bench/")); err != nil {
		b.Fatal(err)
	}
	eval := func(js string) (float64, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[float64](js, chromedp.EvalAwaitPromise))
	}
	testutil.WaitFor(b, "video", func() bool {
		w, _ := eval(`document.getElementById("video").videoWidth`)
		return w == 1280
	})
	fpsJS := `(async () => { let f = 0; (await cheshire.pc.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "video") f = r.framesDecoded; }); return f; })()`

	for i := 0; i < b.N; i++ {
		// Frame rate and CPU over 5 s of a still screen.
		ap.mu.Lock()
		enc := ap.enc
		ap.mu.Unlock()
		f0, _ := eval(fpsJS)
		c0, _ := procCPU(enc.cmd.Process.Pid)
		s0, t0 := testutil.SelfCPU(), time.Now()
		time.Sleep(5 * time.Second)
		f1, _ := eval(fpsJS)
		c1, _ := procCPU(enc.cmd.Process.Pid)
		s1, el := testutil.SelfCPU(), time.Since(t0)

		lat, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](measureJS+"(40)", chromedp.EvalAwaitPromise))
		if err != nil {
			b.Fatal(err)
		}
		// The injection's share: one move, timed here.
		var inj []float64
		for k := 0; k < 20; k++ {
			t := time.Now()
			if err := ap.run.inject(event{verb: "move", a: 10 + k, b: 10}); err != nil {
				b.Fatal(err)
			}
			inj = append(inj, float64(time.Since(t).Microseconds())/1000)
		}
		sort.Float64s(lat)
		sort.Float64s(inj)
		if len(lat) < 20 {
			b.Fatalf("only %d of 40 moves seen", len(lat))
		}
		med, p95 := lat[len(lat)/2], lat[len(lat)*95/100]
		b.ReportMetric(med, "ms-median")
		b.ReportMetric(p95, "ms-p95")
		b.ReportMetric(inj[len(inj)/2], "ms-inject-median")
		b.ReportMetric((f1-f0)/el.Seconds(), "fps")
		b.ReportMetric(100*(c1-c0).Seconds()/el.Seconds(), "%cpu-ffmpeg")
		b.ReportMetric(100*(s1-s0).Seconds()/el.Seconds(), "%cpu-node")
		b.Logf("input-to-glass ms (n=%d): %s", len(lat), fmtMs(lat))
	}
}

func fmtMs(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(s, " ")
}
