package apps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"cheshire/synth"

	"github.com/pion/webrtc/v4"
)

// Audio: when Debian's pulseaudio is installed, each run of an app has
// a PulseAudio server of its own (no configuration read, a null sink
// named "app" as the only sink, a unix socket in a private directory),
// and the app gets PULSE_SERVER pointing at it. While a session watches
// and the app plays into the sink (pactl subscribe tells when a stream
// comes and goes), a second ffmpeg records the sink's monitor, encodes
// it as Opus (lowdelay, 20 ms frames) and sends it as RTP to the node,
// which forwards it to the app's audio track like the video. A second
// process rather than a second input of the video's ffmpeg: a blocking
// audio input there would hold back the video frames. Only while the
// app plays: recording a silent app's sink cost the video several ms of
// input-to-glass on two cores.

// pulseServer is a run's PulseAudio server.
type pulseServer struct {
	cmd  *exec.Cmd
	done chan struct{}
	dir  string // its socket, runtime files and home
}

// socket is the server's unix socket.
func (p *pulseServer) socket() string { return filepath.Join(p.dir, "native") }

// startPulse starts a PulseAudio server for an app and waits (20 s at
// most, or ctx) until its socket is there.
func startPulse(ctx context.Context, log *synth.Log) (*pulseServer, error) {
	dir, err := os.MkdirTemp("", "cheshire-pulse-")
	if err != nil {
		return nil, fmt.Errorf("apps: audio: %w", err)
	}
	sock := filepath.Join(dir, "native")
	c := exec.Command("pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
		"--log-target=stderr", "--log-level=error", "-F", "/dev/null",
		"--load=module-native-protocol-unix socket="+sock+" auth-anonymous=1",
		"--load=module-null-sink sink_name=app",
		"--load=module-always-sink",
		// A silent app's sink sleeps, and the recording ffmpeg with it:
		// two cores' worth of timer wake-ups and Opus frames of silence
		// cost the video several ms of input-to-glass.
		"--load=module-suspend-on-idle timeout=1")
	c.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "XDG_CONFIG_HOME="+dir, "PULSE_RUNTIME_PATH="+dir)
	c.Dir = dir
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := logPipe(log, "pulseaudio: ")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.Stderr = stderr
	err = c.Start()
	stderr.Close()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("apps: audio: pulseaudio cannot be started: %w", err)
	}
	p := &pulseServer{cmd: c, done: make(chan struct{}), dir: dir}
	go func() { c.Wait(); close(p.done) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			p.stop()
			return nil, errors.New("apps: audio: pulseaudio cannot be started (see log)")
		case <-timeout:
			p.stop()
			return nil, errors.New("apps: audio: no pulseaudio socket in 20s")
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// stop kills the server and removes its directory.
func (p *pulseServer) stop() {
	killGroup(p.cmd, p.done)
	os.RemoveAll(p.dir)
}

// audioArgs are ffmpeg's arguments to send the sink's sound to port as
// Opus RTP.
func audioArgs(sock string, port int) []string {
	return []string{"-hide_banner", "-loglevel", "error", "-nostats", "-nostdin",
		"-f", "pulse", "-server", "unix:" + sock, "-fragment_size", "1920", "-i", "app.monitor",
		"-c:a", "libopus", "-application", "lowdelay", "-frame_duration", "20", "-compression_level", "0", "-b:a", "96k",
		"-ar", "48000", "-ac", "2", "-flush_packets", "1",
		"-f", "rtp", "-payload_type", "111",
		fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", port)}
}

// sound is a run's sound while a session watches: pactl following the
// sink's streams, and the audio encoder while there is one.
type sound struct {
	sock  string
	track *webrtc.TrackLocalStaticRTP
	log   *synth.Log
	watch *exec.Cmd
	wdone chan struct{}
	ended chan struct{} // closed when the loop reading pactl's events has ended

	mu      sync.Mutex
	enc     *encoder // guarded by mu: runs while the app plays
	stopped bool     // guarded by mu
	packets uint64   // guarded by mu: of encoders stopped before
	bytes   uint64   // guarded by mu: likewise
}

// startSound follows the sink of the sound server at sock, sending what
// the app plays to track.
func startSound(sock string, track *webrtc.TrackLocalStaticRTP, log *synth.Log) (*sound, error) {
	c := exec.Command("pactl", "-s", "unix:"+sock, "subscribe")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("apps: audio: %w", err)
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("apps: audio: pactl cannot be started: %w", err)
	}
	s := &sound{sock: sock, track: track, log: log, watch: c, wdone: make(chan struct{}), ended: make(chan struct{})}
	go func() { c.Wait(); close(s.wdone) }()
	go func() {
		defer close(s.ended)
		s.check()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "sink-input") {
				s.check()
			}
		}
	}()
	return s, nil
}

// playing reports whether a stream plays into the server's sink.
func (s *sound) playing() bool {
	out, err := exec.Command("pactl", "-s", "unix:"+s.sock, "list", "short", "sink-inputs").Output()
	return err == nil && strings.TrimSpace(string(out)) != ""
}

// check starts the encoder if the app plays and it does not run, and
// stops it if the app has stopped playing.
func (s *sound) check() {
	playing := s.playing()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
	case playing && s.enc == nil:
		e, err := startFFmpeg(func(port int) []string { return audioArgs(s.sock, port) }, s.track, s.log, "ffmpeg audio: ")
		if err != nil {
			fmt.Fprintf(s.log, "apps: audio: %v\n", err)
			return
		}
		s.enc = e
	case !playing && s.enc != nil:
		s.stopEncLocked()
	}
}

func (s *sound) stopEncLocked() {
	s.enc.stop()
	s.packets += s.enc.packets.Load()
	s.bytes += s.enc.bytes.Load()
	s.enc = nil
}

// stop ends the following and the encoder.
func (s *sound) stop() {
	s.mu.Lock()
	s.stopped = true
	if s.enc != nil {
		s.stopEncLocked()
	}
	s.mu.Unlock()
	killGroup(s.watch, s.wdone)
	<-s.ended
}

// stats is the sound's part of a session's stats.
func (s *sound) stats() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, b := s.packets, s.bytes
	if s.enc != nil {
		p += s.enc.packets.Load()
		b += s.enc.bytes.Load()
	}
	return fmt.Sprintf("audio-packets %d\naudio-bytes %d\n", p, b)
}
