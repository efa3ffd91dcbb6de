package apps

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"cheshire/synth"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The capture and encode path: ffmpeg grabs the display with x11grab,
// encodes with libx264 (ultrafast, zerolatency, one thread, constrained
// baseline, no B-frames, a key frame a second) and packetises the frames as RTP to a
// loopback UDP socket of the node; the node forwards each packet as is
// to the app's track, which pion sends to every session (rewriting SSRC
// and payload type per peer). Forwarding ffmpeg's RTP needs no parsing
// of the stream and sends each packet as soon as x264 has made it; the
// alternative, an Annex-B pipe cut into samples, cannot tell where a
// frame ends until the next one begins (one frame of delay).

// DefaultFPS is the capture rate unless the module's config sets one
// (fps N). 60 rather than 30: input to glass went from 70 to 61 ms
// median (three runs each, 1280x720, BENCHMARKS.md) for twice the
// encoder's CPU (about 30% of a core per stream instead of 15%).
const DefaultFPS = 60

// encoder is a running ffmpeg and the loop forwarding its packets.
type encoder struct {
	cmd  *exec.Cmd
	conn *net.UDPConn
	done chan struct{} // closed when ffmpeg has exited
	fwd  chan struct{} // closed when the forwarding loop has ended

	packets atomic.Uint64
	bytes   atomic.Uint64
	frames  atomic.Uint64
	start   time.Time
}

// startEncoder captures display (w x h) into track.
func startEncoder(display string, w, h, fps int, track *webrtc.TrackLocalStaticRTP, log *synth.Log) (*encoder, error) {
	return startFFmpeg(func(port int) []string { return videoArgs(display, w, h, fps, port) }, track, log, "ffmpeg: ")
}

// videoArgs are ffmpeg's arguments to send display as H.264 RTP to port.
func videoArgs(display string, w, h, fps, port int) []string {
	return []string{"-hide_banner", "-loglevel", "error", "-nostats", "-nostdin",
		"-f", "x11grab", "-draw_mouse", "1", "-framerate", strconv.Itoa(fps),
		"-video_size", fmt.Sprintf("%dx%d", w, h), "-i", display,
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-threads", "1",
		"-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", strconv.Itoa(fps), "-bf", "0",
		"-bsf:v", "dump_extra", // SPS and PPS in band, before every key frame
		"-fps_mode", "passthrough", "-flush_packets", "1",
		"-f", "rtp", "-payload_type", "102",
		fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", port)}
}

// startFFmpeg runs ffmpeg with the arguments args gives for a loopback
// UDP port of the node, and forwards the RTP packets it sends there to
// track.
func startFFmpeg(args func(port int) []string, track *webrtc.TrackLocalStaticRTP, log *synth.Log, prefix string) (*encoder, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("apps: encoder socket: %w", err)
	}
	conn.SetReadBuffer(4 << 20)
	port := conn.LocalAddr().(*net.UDPAddr).Port
	c := exec.Command("ffmpeg", args(port)...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	e := &encoder{cmd: c, conn: conn, done: make(chan struct{}), fwd: make(chan struct{}), start: time.Now()}
	stderr, err := logPipe(log, prefix)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.Stderr = stderr
	err = c.Start()
	stderr.Close()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("apps: ffmpeg cannot be started: %w", err)
	}
	go func() { c.Wait(); close(e.done) }()
	go e.forward(track)
	return e, nil
}

// forward sends ffmpeg's packets to track until the socket is closed.
func (e *encoder) forward(track *webrtc.TrackLocalStaticRTP) {
	defer close(e.fwd)
	buf := make([]byte, 1600)
	var pkt rtp.Packet
	for {
		n, _, err := e.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		e.packets.Add(1)
		e.bytes.Add(uint64(n))
		if pkt.Marker {
			e.frames.Add(1)
		}
		track.WriteRTP(&pkt) // errors are per peer: a closed one is dropped by pion
	}
}

// stop kills ffmpeg's process group and ends the forwarding.
func (e *encoder) stop() {
	killGroup(e.cmd, e.done)
	e.conn.Close()
	<-e.fwd
}

// procCPU is the CPU time process pid has used (/proc/PID/stat's
// utime and stime, in clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which may hold spaces, in
	// parentheses: state is the first, utime the 12th, stime the 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * 10 * time.Millisecond, true
}

// stats is the encoder's part of a stats file. Its encoder-latency is
// ffmpeg's CPU time per frame sent: capture, conversion and x264 on one
// thread with no lookahead, so the least time a frame spends in it.
func (e *encoder) stats() string {
	secs := time.Since(e.start).Seconds()
	f, b := e.frames.Load(), e.bytes.Load()
	out := fmt.Sprintf("frames %d\npackets %d\nbytes %d\nfps %.1f\nbitrate %.0f\n",
		f, e.packets.Load(), b, float64(f)/secs, float64(b)*8/secs)
	if cpu, ok := procCPU(e.cmd.Process.Pid); ok && f > 0 {
		out += fmt.Sprintf("encoder-latency %.2fms\n", cpu.Seconds()*1000/float64(f))
	}
	return out
}

// ensureEncoder starts the encoder if the app runs and it does not;
// ap.mu is held.
func (ap *app) ensureEncoderLocked() error {
	if ap.run == nil {
		return fmt.Errorf("apps: %s is not running", ap.name)
	}
	if ap.enc != nil {
		return nil
	}
	e, err := startEncoder(ap.run.display, ap.s.W, ap.s.H, int(ap.a.fps.Load()), ap.track, ap.log)
	if err != nil {
		return err
	}
	ap.enc = e
	if ap.run.pulse != nil && ap.audio != nil {
		snd, err := startSound(ap.run.pulse.socket(), ap.audio, ap.log)
		if err != nil {
			e.stop()
			ap.enc = nil
			return err
		}
		ap.snd = snd
	}
	return nil
}
