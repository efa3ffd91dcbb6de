package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"cheshire/synth"
)

// Audio: when Debian's pulseaudio is installed, each run of an app has
// a PulseAudio server of its own (no configuration read, a null sink
// named "app" as the only sink, a unix socket in a private directory),
// and the app gets PULSE_SERVER pointing at it. What the app plays into
// the sink is captured from its monitor by a second ffmpeg, encoded as
// Opus (lowdelay, 10 ms frames) and sent as RTP to the node, which
// forwards it to the app's audio track like the video. A second process
// rather than a second input of the video's ffmpeg: a blocking audio
// input there would hold back the video frames.

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
		"--load=module-always-sink")
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
		"-c:a", "libopus", "-application", "lowdelay", "-frame_duration", "10", "-b:a", "96k",
		"-ar", "48000", "-ac", "2", "-flush_packets", "1",
		"-f", "rtp", "-payload_type", "111",
		fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", port)}
}
