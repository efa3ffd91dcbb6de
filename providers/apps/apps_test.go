package apps

import (
	"context"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/module"
	"cheshire/styx"
	"cheshire/synth/synthtest"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// need skips t unless the programs an app needs are installed (test.sh
// installs them).
func need(t *testing.T) {
	t.Helper()
	for _, p := range []string{"Xvfb", "ffmpeg", "xdotool", "xev", "xclip"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (test.sh installs it)", p)
		}
	}
}

type env struct {
	t    *testing.T
	a    *Apps
	dir  string
	root styx.File
	ctx  context.Context
}

func newEnv(t *testing.T, o Options) *env {
	t.Helper()
	dir := t.TempDir()
	o.Owner = "glenda"
	a, err := New(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.StopAll)
	return attach(t, a, dir)
}

func attach(t *testing.T, a *Apps, dir string) *env {
	ctx := context.Background()
	root, err := a.Attach(ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Clunk() })
	return &env{t: t, a: a, dir: dir, root: root, ctx: ctx}
}

func (e *env) read(p string) string {
	e.t.Helper()
	s, err := testutil.ReadFile(e.ctx, e.root, p)
	if err != nil {
		e.t.Fatalf("read %s: %v", p, err)
	}
	return s
}

func (e *env) write(p, data string) error { return testutil.WriteFile(e.ctx, e.root, p, data) }

func (e *env) mustWrite(p, data string) {
	e.t.Helper()
	if err := e.write(p, data); err != nil {
		e.t.Fatalf("write %q to %s: %v", data, p, err)
	}
}

// clone opens NAME/sessions/clone and returns the session's directory.
func (e *env) clone(name string) (string, error) {
	f, err := testutil.WalkOpen(e.ctx, e.root, name+"/sessions/clone", styx.OREAD)
	if err != nil {
		return "", err
	}
	defer f.Clunk()
	buf := make([]byte, 32)
	n, err := f.Read(e.ctx, buf, 0)
	if err != nil {
		return "", err
	}
	return name + "/sessions/" + strings.TrimSpace(string(buf[:n])), nil
}

// viewer is a browser stand-in: a pion peer receiving the video and
// sending input on a data channel.
type viewer struct {
	pc     *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	frames atomic.Int64
	open   atomic.Bool
	errs   chan string
	// playout is the playout-delay extension of the last video packet
	// (an empty string: none), as the browser would see it.
	playout atomic.Value
}

// newViewer makes a viewer and its offer.
func newViewer(t *testing.T, video bool) (*viewer, string) {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	// Offered as Chromium offers it.
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: playoutDelayURI}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	v := &viewer{pc: pc, errs: make(chan string, 16)}
	if video {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		id := 0
		for _, e := range r.GetParameters().HeaderExtensions {
			if e.URI == playoutDelayURI {
				id = e.ID
			}
		}
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if id != 0 && tr.Kind() == webrtc.RTPCodecTypeVideo {
				v.playout.Store(string(p.GetExtension(uint8(id))))
			}
			if p.Marker {
				v.frames.Add(1)
			}
		}
	})
	v.dc, err = pc.CreateDataChannel("input", nil)
	if err != nil {
		t.Fatal(err)
	}
	v.dc.OnOpen(func() { v.open.Store(true) })
	v.dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case v.errs <- string(m.Data):
		default:
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	return v, pc.LocalDescription().SDP
}

// connect makes a session of app name for v through the files.
func (e *env) connect(name string) (*viewer, string) {
	e.t.Helper()
	sess, err := e.clone(name)
	if err != nil {
		e.t.Fatal(err)
	}
	v, offer := newViewer(e.t, true)
	e.mustWrite(sess+"/offer", offer)
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: e.read(sess + "/answer")}); err != nil {
		e.t.Fatal(err)
	}
	testutil.WaitFor(e.t, "frames at "+sess, func() bool { return v.frames.Load() > 2 })
	testutil.WaitFor(e.t, "data channel at "+sess, v.open.Load)
	return v, sess
}

func (e *env) waitLog(name, want string) {
	e.t.Helper()
	testutil.WaitFor(e.t, "log of "+name+" to show "+want, func() bool {
		return strings.Contains(e.read(name+"/log"), want)
	})
}

func TestStreamAndInput(t *testing.T) {
	need(t)
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustWrite("ctl", "register xev xev -geometry 600x400+0+0")
	e.mustWrite("xev/ctl", "resize 640 480")
	e.mustWrite("xev/ctl", "start")
	if st := e.read("xev/status"); !strings.Contains(st, "state running") || !strings.Contains(st, "size 640x480") {
		t.Fatalf("status:\n%s", st)
	}
	v, sess := e.connect("xev")

	// Input through the data channel, as the page sends it.
	for _, m := range []string{"move 100 120", "down 1", "up 1", "type hello"} {
		if err := v.dc.SendText(m); err != nil {
			t.Fatal(err)
		}
	}
	e.waitLog("xev", "ButtonRelease")
	e.waitLog("xev", `"o"`)
	// And through the input file.
	e.mustWrite(sess+"/input", "key Return\nscroll 0 2\n")
	e.waitLog("xev", "Return")
	e.waitLog("xev", "button 5")
	if err := e.write(sess+"/input", "jump 1 2"); err == nil || !strings.Contains(err.Error(), "unknown control message") {
		t.Fatalf("bad input: %v", err)
	}
	if err := e.write(sess+"/input", "move -5 x"); err == nil || !strings.Contains(err.Error(), "bad number") {
		t.Fatalf("bad input: %v", err)
	}
	if st := e.read(sess + "/stats"); !strings.Contains(st, "state connected") || !strings.Contains(st, "frames ") {
		t.Fatalf("stats:\n%s", st)
	}
	e.mustWrite(sess+"/clipboard", "cheshire cat")
	if got := e.read(sess + "/clipboard"); got != "cheshire cat" {
		t.Fatalf("clipboard %q", got)
	}
	v.dc.SendText("clipboard  pasted, as is ")
	testutil.WaitFor(t, "clipboard from the data channel", func() bool { return e.read(sess+"/clipboard") == " pasted, as is " })

	// A viewer: view only until it takes control.
	v2, sess2 := e.connect("xev")
	if err := e.write(sess2+"/input", "move 1 1"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("viewer input: %v", err)
	}
	v2.dc.SendText("move 2 2")
	if m := <-v2.errs; !strings.Contains(m, "permission denied") {
		t.Fatalf("viewer channel input answered %q", m)
	}
	if got := e.read(sess2 + "/ctl"); got != "viewer\n" {
		t.Fatalf("ctl of viewer %q", got)
	}
	e.mustWrite(sess2+"/ctl", "control")
	e.mustWrite(sess2+"/input", "move 5 5")
	if err := e.write(sess+"/input", "move 1 1"); err == nil {
		t.Fatal("old controller still controls")
	}

	// The browser going away closes its session.
	v.pc.Close()
	testutil.WaitFor(t, "session closed", func() bool { return !strings.Contains(e.read("xev/status"), "sessions 2") })
	e.mustWrite(sess2+"/ctl", "close")
	testutil.WaitFor(t, "encoder stopped", func() bool {
		st := e.read("xev/status")
		return strings.Contains(st, "sessions 0") && !strings.Contains(st, "encoder")
	})

	e.mustWrite("xev/ctl", "stop")
	if st := e.read("xev/status"); !strings.Contains(st, "state stopped") {
		t.Fatalf("status after stop:\n%s", st)
	}
	e.mustWrite("xev/ctl", "start")
	e.connect("xev")
}

func TestCrashMidStream(t *testing.T) {
	need(t)
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustWrite("ctl", "register crash sh -c 'xev -geometry 100x100+0+0 & sleep 600'")
	e.mustWrite("crash/ctl", "start")
	v, _ := e.connect("crash")
	st := e.read("crash/status")
	var pid string
	for _, l := range strings.Split(st, "\n") {
		if p, ok := strings.CutPrefix(l, "pid "); ok {
			pid = p
		}
	}
	if err := exec.Command("kill", "-9", pid).Run(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "crash in status", func() bool {
		st := e.read("crash/status")
		return strings.Contains(st, "state stopped") && strings.Contains(st, "error app exited: signal: killed")
	})
	testutil.WaitFor(t, "viewer's connection closed", func() bool {
		s := v.pc.ConnectionState()
		return s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateDisconnected
	})
	// The whole process group went: the backgrounded xev too.
	testutil.WaitFor(t, "no process left", func() bool {
		return exec.Command("pgrep", "-g", pid).Run() != nil
	})
	if st := e.read("crash/status"); !strings.Contains(st, "sessions 0") {
		t.Fatalf("status:\n%s", st)
	}
	e.mustWrite("crash/ctl", "start")
	e.connect("crash")
}

func TestBadInput(t *testing.T) {
	need(t)
	t.Parallel()
	e := newEnv(t, Options{MaxSessions: 3})
	for _, c := range []struct{ line, want string }{
		{"register", "bad # args"},
		{"register BAD xev", "bad app name"},
		{"unregister nope", "no app"},
		{"frob", "unknown control message"},
	} {
		if err := e.write("ctl", c.line); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.line, err, c.want)
		}
	}
	e.mustWrite("ctl", "register x xev")
	if err := e.write("ctl", "register x xev"); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("second register: %v", err)
	}
	for _, c := range []struct{ line, want string }{
		{"resize 10 10", "bad size"},
		{"resize 641 480", "bad size"},
		{"stop", "not running"},
	} {
		if err := e.write("x/ctl", c.line); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.line, err, c.want)
		}
	}
	e.mustWrite("x/ctl", "start")
	if err := e.write("x/ctl", "start"); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second start: %v", err)
	}

	sess, err := e.clone("x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testutil.ReadFile(e.ctx, e.root, sess+"/answer"); err == nil || !strings.Contains(err.Error(), "no offer yet") {
		t.Errorf("answer before offer: %v", err)
	}
	if err := e.write(sess+"/offer", "garbage\x00sdp"); err == nil || !strings.Contains(err.Error(), "bad offer") {
		t.Errorf("garbage offer: %v", err)
	}
	_, novideo := newViewer(t, false)
	if err := e.write(sess+"/offer", novideo); err == nil || !strings.Contains(err.Error(), "no h264 video") {
		t.Errorf("offer with no video: %v", err)
	}
	// A clone storm: at most MaxSessions at once.
	made := 1
	for i := 0; i < 20; i++ {
		if _, err := e.clone("x"); err != nil {
			if !strings.Contains(err.Error(), "is busy") {
				t.Fatalf("clone %d: %v", i, err)
			}
			continue
		}
		made++
	}
	if made != 3 {
		t.Errorf("%d sessions made, want 3", made)
	}
	for _, line := range []string{"", "move", "move 1", "move 1 2 3", "down 0", "down 10", "key a;b", "scroll 100 0", "type " + strings.Repeat("x", 2000)} {
		if _, err := parseEvent(line); err == nil {
			t.Errorf("event %q accepted", line)
		}
	}
	e.mustWrite("ctl", "unregister x")
	if _, err := testutil.ReadFile(e.ctx, e.root, "x/status"); err == nil {
		t.Error("x still served after unregister")
	}
}

func TestRegistryPersists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustWrite("ctl", "register one xev -name 'a b'")
	e.mustWrite("ctl", "register two xterm")
	e.mustWrite("two/ctl", "resize 800 600")
	e.mustWrite("ctl", "unregister two")
	e.mustWrite("ctl", "register three xclock")
	a2, err := New(e.dir, Options{Owner: "glenda"})
	if err != nil {
		t.Fatal(err)
	}
	e2 := attach(t, a2, e.dir)
	if got, want := e2.read("ctl"), "app one xev -name 'a b'\napp three xclock\n"; got != want {
		t.Fatalf("ctl after reopen %q, want %q", got, want)
	}
	if st := e2.read("one/status"); !strings.Contains(st, "state stopped") {
		t.Fatalf("status:\n%s", st)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustWrite("ctl", "register one xev")
	synthtest.TestServer(t, e.a, "glenda")
}

// TestPlayoutDelay: every video packet carries the playout delay, 0/0
// by default (show each frame at once), under the ID the viewer
// negotiated, as configured; with playout-delay off, none.
func TestPlayoutDelay(t *testing.T) {
	need(t)
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustWrite("ctl", "register xev xev -geometry 320x240+0+0")
	e.mustWrite("xev/ctl", "start")
	v, _ := e.connect("xev")
	want := func(what string, min, max uint16, none bool) {
		t.Helper()
		testutil.WaitFor(t, what, func() bool {
			s, _ := v.playout.Load().(string)
			if none {
				return s == ""
			}
			var d rtp.PlayoutDelayExtension
			return d.Unmarshal([]byte(s)) == nil && d.MinDelay == min && d.MaxDelay == max
		})
	}
	want("playout delay 0/0", 0, 0, false)
	reconf := func(text string) {
		t.Helper()
		cfg, err := module.ParseConfig(text)
		if err != nil {
			t.Fatal(err)
		}
		if err := (instance{e.a}).Reconfigure(e.ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	reconf("playout-delay 0 100\n")
	want("playout delay 0/100 ms (0/10 in 10 ms units)", 0, 10, false)
	reconf("playout-delay off\n")
	want("no playout delay", 0, 0, true)
}
