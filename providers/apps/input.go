package apps

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cheshire/synth"
)

// event is one input event, as the input file and the data channel take
// it: move X Y, down BUTTON, up BUTTON, key NAME, type TEXT, scroll DX DY.
type event struct {
	verb string
	a, b int    // move's X Y, down's and up's button, scroll's DX DY
	text string // key's keysym name(s), type's text
}

const (
	maxType   = 1024
	maxScroll = 20
)

// keyName is a keysym name, or several joined by + (ctrl+c).
var keyName = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}(\+[A-Za-z0-9_]{1,32}){0,4}$`)

var eventUsage = map[string]struct {
	min, max int
	usage    string
}{
	"move":   {2, 2, "move X Y"},
	"down":   {1, 1, "down BUTTON"},
	"up":     {1, 1, "up BUTTON"},
	"key":    {1, 1, "key NAME"},
	"type":   {1, -1, "type TEXT"},
	"scroll": {2, 2, "scroll DX DY"},
}

// inputCmds is the command table of an input file; run carries out each
// event.
func inputCmds(run func(ctx context.Context, ev event) error) []synth.Cmd {
	var cmds []synth.Cmd
	for _, verb := range []string{"move", "down", "up", "key", "type", "scroll"} {
		u := eventUsage[verb]
		cmds = append(cmds, synth.Cmd{Name: verb, Min: u.min, Max: u.max, Usage: u.usage,
			Run: func(ctx context.Context, args []string) error {
				ev, err := toEvent(verb, args)
				if err != nil {
					return err
				}
				return run(ctx, ev)
			}})
	}
	return cmds
}

// parseEvent parses one line of input.
func parseEvent(line string) (event, error) {
	cmd, args, err := synth.ParseCtl(line, inputCmds(nil))
	if err != nil {
		return event{}, fmt.Errorf("apps: %w", err)
	}
	return toEvent(cmd.Name, args)
}

func toEvent(verb string, args []string) (event, error) {
	ev := event{verb: verb}
	num := func(s string, lo, hi int) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("apps: bad number %q: want %d to %d", s, lo, hi)
		}
		return n, nil
	}
	var err error
	switch verb {
	case "move":
		if ev.a, err = num(args[0], 0, maxDim); err == nil {
			ev.b, err = num(args[1], 0, maxDim)
		}
	case "down", "up":
		ev.a, err = num(args[0], 1, 9)
	case "scroll":
		if ev.a, err = num(args[0], -maxScroll, maxScroll); err == nil {
			ev.b, err = num(args[1], -maxScroll, maxScroll)
		}
	case "key":
		if !keyName.MatchString(args[0]) {
			return ev, fmt.Errorf("apps: bad key name %q", args[0])
		}
		ev.text = args[0]
	case "type":
		ev.text = strings.Join(args, " ")
		if len(ev.text) > maxType {
			return ev, fmt.Errorf("apps: text too large: %d bytes, at most %d", len(ev.text), maxType)
		}
	default:
		return ev, fmt.Errorf("apps: unknown event %q", verb)
	}
	return ev, err
}

// xdoArgs are the xdotool arguments that carry out ev.
func xdoArgs(ev event) []string {
	switch ev.verb {
	case "move":
		return []string{"mousemove", strconv.Itoa(ev.a), strconv.Itoa(ev.b)}
	case "down":
		return []string{"mousedown", strconv.Itoa(ev.a)}
	case "up":
		return []string{"mouseup", strconv.Itoa(ev.a)}
	case "key":
		return []string{"key", "--", ev.text}
	case "type":
		return []string{"type", "--delay", "0", "--", ev.text}
	case "scroll": // buttons 4 and 5 scroll up and down, 6 and 7 left and right
		var args []string
		click := func(button, n int) {
			if n > 0 {
				args = append(args, "click", "--repeat", strconv.Itoa(n), "--delay", "0", strconv.Itoa(button))
			}
		}
		if ev.b < 0 {
			click(4, -ev.b)
		} else {
			click(5, ev.b)
		}
		if ev.a < 0 {
			click(6, -ev.a)
		} else {
			click(7, ev.a)
		}
		return args
	}
	return nil
}

// inject sends ev to display through the XTEST extension, by xdotool.
func inject(display string, ev event) error {
	args := xdoArgs(ev)
	if len(args) == 0 {
		return nil
	}
	_, err := x11Run(display, nil, "xdotool", args...)
	return err
}

// x11Run runs a short-lived X client on display (its own process group,
// killed after 10s) and returns its output.
func x11Run(display string, stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), "DISPLAY="+display)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	c.WaitDelay = time.Second
	if err := c.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 60 {
			msg = msg[:60]
		}
		return nil, fmt.Errorf("apps: %s cannot be run: %v: %s", name, err, msg)
	}
	return out.Bytes(), nil
}

// clipboard reads the display's CLIPBOARD selection (empty if none).
func (ap *app) clipboard(ctx context.Context) ([]byte, error) {
	ap.mu.Lock()
	r := ap.run
	ap.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("apps: %s is not running", ap.name)
	}
	out, err := x11Run(r.display, nil, "xclip", "-selection", "clipboard", "-o")
	if err != nil {
		return nil, nil // no owner of the selection: nothing to read
	}
	return out, nil
}

// setClipboard makes data the display's CLIPBOARD selection. xclip
// stays in the background to serve it, in its own process group, until
// another client takes the selection or the display ends.
func (ap *app) setClipboard(ctx context.Context, data []byte) error {
	ap.mu.Lock()
	r := ap.run
	ap.mu.Unlock()
	if r == nil {
		return fmt.Errorf("apps: %s is not running", ap.name)
	}
	if len(data) > 1<<20 {
		return fmt.Errorf("apps: clipboard too large: %d bytes", len(data))
	}
	c := exec.Command("xclip", "-selection", "clipboard", "-i")
	c.Env = append(os.Environ(), "DISPLAY="+r.display)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.Stdin = bytes.NewReader(data)
	if err := c.Run(); err != nil {
		return fmt.Errorf("apps: xclip cannot be run: %v", err)
	}
	return nil
}
