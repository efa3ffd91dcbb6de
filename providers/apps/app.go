package apps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cheshire/synth"

	"github.com/pion/webrtc/v4"
)

// app is one registered application: its files, and while it runs its
// display, process and encoder.
type app struct {
	a     *Apps
	name  string
	dir   *synth.Dir
	sdir  *synth.Dir // sessions
	log   *synth.Log
	track *webrtc.TrackLocalStaticRTP // the encoder's output, shared by the sessions
	audio *webrtc.TrackLocalStaticRTP // the audio encoder's, nil without pulseaudio

	mu         sync.Mutex
	s          spec             // guarded by mu
	run        *run             // guarded by mu: nil when stopped
	lastErr    string           // guarded by mu
	sessions   map[int]*session // guarded by mu
	controller int              // guarded by mu: the session that may send input, or -1
	enc        *encoder         // guarded by mu: runs while run != nil and a session has an offer
	snd        *sound           // guarded by mu: the run's sound, beside enc when it has a sound server
}

// run is a running app: its Xvfb and process, each leading its own
// process group.
type run struct {
	display string
	xvfb    *exec.Cmd
	proc    *exec.Cmd
	started time.Time
	xdone   chan struct{} // closed when Xvfb has exited
	pdone   chan struct{} // closed when the app has exited
	pulse   *pulseServer  // the app's sound server, nil without pulseaudio

	xmu sync.Mutex
	x   *xtest // guarded by xmu: the pointer's connection, made at the first pointer event
	end bool   // guarded by xmu: the run has stopped
}

// inject sends ev to the run's display: pointer events on its XTEST
// connection, the others by xdotool.
func (r *run) inject(ev event) error {
	switch ev.verb {
	case "move", "down", "up":
		x, err := r.xconn()
		if err != nil {
			return err
		}
		_, err = x.pointer(ev)
		return err
	}
	return inject(r.display, ev)
}

func (r *run) xconn() (*xtest, error) {
	r.xmu.Lock()
	defer r.xmu.Unlock()
	if r.end {
		return nil, errors.New("apps: no display: the app has stopped")
	}
	if r.x == nil {
		x, err := dialXTest(r.display)
		if err != nil {
			return nil, err
		}
		r.x = x
	}
	return r.x, nil
}

// closeX closes the XTEST connection for good.
func (r *run) closeX() {
	r.xmu.Lock()
	defer r.xmu.Unlock()
	r.end = true
	if r.x != nil {
		r.x.close()
	}
}

func newApp(a *Apps, s spec) *app {
	ap := &app{a: a, name: s.Name, s: s, log: synth.NewLog(64 << 10), sessions: map[int]*session{}, controller: -1}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}, "video", "cheshire-"+s.Name)
	if err != nil {
		panic(err) // only for an empty id or stream id
	}
	ap.track = track
	if a.audioOK {
		// A stream of its own: in the video's, the browser would hold
		// the video back to play it in sync with the audio's jitter
		// buffer (input to glass went from 54 ms to 800 ms).
		if ap.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1;stereo=1",
		}, "audio", "cheshire-"+s.Name+"-audio"); err != nil {
			panic(err) // only for an empty id or stream id
		}
	}
	ap.dir = synth.NewDir(s.Name, 0555)
	ap.dir.Add(synth.Ctl("ctl", 0660, ap.cmds(), nil))
	ap.dir.Add(synth.String("status", 0444, func(ctx context.Context) string { return ap.status() }))
	ap.dir.Add(ap.log.File("log", 0444))
	ap.sdir = synth.NewDir("sessions", 0555)
	ap.sdir.Add(synth.Clone("clone", 0660, ap.sdir, func(ctx context.Context, n int) (*synth.Dir, error) {
		s, err := ap.newSession(n)
		if err != nil {
			return nil, err
		}
		return s.dir, nil
	}))
	ap.dir.Add(ap.sdir)
	return ap
}

func (ap *app) spec() spec {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return ap.s
}

func (ap *app) cmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "start", Run: func(ctx context.Context, args []string) error { return ap.start(ctx) }},
		{Name: "stop", Run: func(ctx context.Context, args []string) error {
			if !ap.stop(nil) {
				return fmt.Errorf("apps: %s is not running", ap.name)
			}
			return nil
		}},
		{Name: "resize", Min: 2, Max: 2, Usage: "resize W H", Run: func(ctx context.Context, args []string) error {
			w, err1 := strconv.Atoi(args[0])
			h, err2 := strconv.Atoi(args[1])
			if err1 != nil || err2 != nil || w < minDim || h < minDim || w > maxDim || h > maxDim || w%2 != 0 || h%2 != 0 {
				return fmt.Errorf("apps: bad size %sx%s: want even numbers from %d to %d", args[0], args[1], minDim, maxDim)
			}
			return ap.resize(ctx, w, h)
		}},
	}
}

func (ap *app) status() string {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	var b strings.Builder
	state := "stopped"
	if ap.run != nil {
		state = "running"
	}
	fmt.Fprintf(&b, "state %s\n", state)
	fmt.Fprintf(&b, "size %dx%d\n", ap.s.W, ap.s.H)
	if r := ap.run; r != nil {
		fmt.Fprintf(&b, "display %s\npid %d\nuptime %d\n", r.display, r.proc.Process.Pid, int64(time.Since(r.started).Seconds()))
	}
	fmt.Fprintf(&b, "sessions %d\n", len(ap.sessions))
	if ap.controller >= 0 {
		fmt.Fprintf(&b, "controller %d\n", ap.controller)
	}
	if ap.enc != nil {
		fmt.Fprintf(&b, "encoder running\n")
	}
	if r := ap.run; r != nil && r.pulse != nil {
		fmt.Fprintf(&b, "audio %s\n", r.pulse.socket())
	}
	fmt.Fprintf(&b, "cmd %s\n", quoteArgs(ap.s.Cmd))
	if ap.lastErr != "" {
		fmt.Fprintf(&b, "error %s\n", ap.lastErr)
	}
	return b.String()
}

// start runs the app under a new Xvfb display.
func (ap *app) start(ctx context.Context) error {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	if ap.run != nil {
		return fmt.Errorf("apps: %s already running", ap.name)
	}
	r, err := ap.launch(ctx, ap.s)
	if err != nil {
		ap.lastErr = err.Error()
		return err
	}
	ap.run, ap.lastErr = r, ""
	go ap.watch(r)
	return nil
}

// launch starts Xvfb, waits for its display, and starts the app on it.
func (ap *app) launch(ctx context.Context, s spec) (*run, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("apps: %s: pipe: %w", ap.name, err)
	}
	defer pr.Close()
	x := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", s.W, s.H),
		"-nolisten", "tcp", "-noreset", "+extension", "XTEST")
	x.ExtraFiles = []*os.File{pw}
	x.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	xerr, err := logPipe(ap.log, "Xvfb: ")
	if err != nil {
		pw.Close()
		return nil, err
	}
	x.Stderr = xerr
	err = x.Start()
	pw.Close()
	xerr.Close()
	if err != nil {
		return nil, fmt.Errorf("apps: %s: Xvfb cannot be started: %w", ap.name, err)
	}
	xdone := make(chan struct{})
	go func() { x.Wait(); close(xdone) }()
	fail := func(err error) (*run, error) {
		killGroup(x, xdone)
		return nil, err
	}
	disp := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		disp <- strings.TrimSpace(line)
	}()
	var display string
	select {
	case d := <-disp:
		if _, err := strconv.Atoi(d); err != nil {
			return fail(fmt.Errorf("apps: %s: no display number from Xvfb", ap.name))
		}
		display = ":" + d
	case <-xdone:
		return fail(fmt.Errorf("apps: %s: Xvfb cannot be started (see log)", ap.name))
	case <-time.After(20 * time.Second):
		return fail(fmt.Errorf("apps: %s: no display from Xvfb in 20s", ap.name))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	var pulse *pulseServer
	if ap.audio != nil {
		if pulse, err = startPulse(ctx, ap.log); err != nil {
			return fail(err)
		}
		prev := fail
		fail = func(err error) (*run, error) {
			pulse.stop()
			return prev(err)
		}
	}
	p := exec.Command(s.Cmd[0], s.Cmd[1:]...)
	p.Env = append(os.Environ(), "DISPLAY="+display)
	if pulse != nil {
		p.Env = append(p.Env, "PULSE_SERVER=unix:"+pulse.socket(), "PULSE_SINK=app")
	}
	p.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := logPipe(ap.log, "")
	if err != nil {
		return fail(err)
	}
	p.Stdout, p.Stderr = out, out
	err = p.Start()
	out.Close()
	if err != nil {
		return fail(fmt.Errorf("apps: %s: no such program %q: %v", ap.name, s.Cmd[0], err))
	}
	pdone := make(chan struct{})
	go func() { p.Wait(); close(pdone) }()
	return &run{display: display, xvfb: x, proc: p, started: time.Now(), xdone: xdone, pdone: pdone, pulse: pulse}, nil
}

// watch ends r when its app or its Xvfb exits by itself.
func (ap *app) watch(r *run) {
	var why string
	select {
	case <-r.pdone:
		why = "app exited: " + r.proc.ProcessState.String()
	case <-r.xdone:
		why = "Xvfb exited: " + r.xvfb.ProcessState.String()
	}
	ap.mu.Lock()
	cur := ap.run == r
	ap.mu.Unlock()
	if cur {
		ap.log.Write([]byte("apps: " + why + "\n"))
		ap.stopRun(r, errors.New(why))
	}
}

// stop stops the app if it runs, recording why (nil for a stop asked
// for), and reports whether it ran.
func (ap *app) stop(why error) bool {
	ap.mu.Lock()
	r := ap.run
	ap.mu.Unlock()
	if r == nil {
		return false
	}
	return ap.stopRun(r, why)
}

// stopRun stops r if it is still the app's run: sessions closed, the
// encoder, app and Xvfb killed (each whole process group) and waited for.
func (ap *app) stopRun(r *run, why error) bool {
	ap.mu.Lock()
	if ap.run != r {
		ap.mu.Unlock()
		return false
	}
	ap.run = nil
	if why != nil {
		ap.lastErr = why.Error()
	}
	enc, snd := ap.enc, ap.snd
	ap.enc, ap.snd = nil, nil
	sessions := make([]*session, 0, len(ap.sessions))
	for _, s := range ap.sessions {
		sessions = append(sessions, s)
	}
	ap.mu.Unlock()
	for _, s := range sessions {
		s.close()
	}
	if enc != nil {
		enc.stop()
	}
	if snd != nil {
		snd.stop()
	}
	if r.pulse != nil {
		r.pulse.stop()
	}
	r.closeX()
	killGroup(r.proc, r.pdone)
	killGroup(r.xvfb, r.xdone)
	return true
}

// resize changes the screen size; a running app is restarted on a
// display of the new size.
func (ap *app) resize(ctx context.Context, w, h int) error {
	ap.a.mu.Lock()
	ap.mu.Lock()
	ap.s.W, ap.s.H = w, h
	running := ap.run != nil
	ap.mu.Unlock()
	err := ap.a.saveLocked()
	ap.a.mu.Unlock()
	if err != nil {
		return err
	}
	if running {
		ap.stop(nil)
		return ap.start(ctx)
	}
	return nil
}

// killGroup kills c's process group and waits (via done) for c.
func killGroup(c *exec.Cmd, done <-chan struct{}) {
	if c.Process == nil {
		return
	}
	syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	<-done
}

// logPipe returns the write end of a pipe whose lines go to l, each
// prefixed. A child gets the file itself, so that waiting for the child
// does not wait for the pipe to close: a grandchild left holding it (an
// app's background process) must not hide the app's exit. The caller
// closes its copy after starting the child.
func logPipe(l *synth.Log, prefix string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("apps: pipe: %w", err)
	}
	go func() {
		defer r.Close()
		br := bufio.NewReaderSize(r, 4096)
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				l.Write(append([]byte(prefix), line...))
			}
			if err != nil && err != bufio.ErrBufferFull {
				return
			}
		}
	}()
	return w, nil
}

// quoteArgs joins argv, quoting words as the ctl tokenizer reads them.
func quoteArgs(argv []string) string {
	q := make([]string, len(argv))
	for i, w := range argv {
		if w == "" || strings.ContainsAny(w, " \t\n'") {
			w = "'" + strings.ReplaceAll(w, "'", "''") + "'"
		}
		q[i] = w
	}
	return strings.Join(q, " ")
}
