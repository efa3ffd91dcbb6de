package apps

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

// TestHandler: the page's HTTP answers, short of a browser: 401 before
// anything else, the page and script, 404s, 405, and offers refused
// with the files' errors.
func TestHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustWrite("ctl", "register x xev")
	top := synth.NewDir("/", 0555)
	top.Add(synth.NewMount("apps", 0555, e.a))
	ns := synth.NewServer(top, synth.WithOwner("glenda"))
	h := Handler(WebOptions{
		User: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") == "" {
				return "", errors.New("apps: sign in: permission denied")
			}
			return "glenda", nil
		},
		Root: func(ctx context.Context, user string) (styx.File, error) { return ns.Attach(ctx, user, "", nil) },
	})
	for _, c := range []struct {
		method, path, body string
		auth               bool
		code               int
		want               string
	}{
		{"GET", "/apps/x/", "", false, 401, "sign in"},
		{"POST", "/apps/x/offer", "v=0", false, 401, "sign in"},
		{"GET", "/apps/x/", "", true, 200, "<video"},
		{"GET", "/apps/x/app.js", "", true, 200, "RTCPeerConnection"},
		{"GET", "/apps/x", "", true, 301, ""},
		{"GET", "/apps/x/other", "", true, 404, ""},
		{"GET", "/apps/BAD/", "", true, 404, ""},
		{"DELETE", "/apps/x/", "", true, 405, ""},
		{"POST", "/apps/nope/offer", "v=0", true, 404, ""},
		{"POST", "/apps/x/offer", "garbage", true, 400, "bad offer"},
		{"POST", "/apps/x/offer", strings.Repeat("a", maxOffer+1), true, 413, "too large"},
	} {
		r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		if c.auth {
			r.Header.Set("Authorization", "Basic Z2xlbmRhOng=")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, w.Code, w.Body.String(), c.code, c.want)
		}
	}
	// A refused offer leaves no session behind.
	if st := e.read("x/status"); !strings.Contains(st, "sessions 0") {
		t.Errorf("status:\n%s", st)
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{"move 1 2", "down 1", "up 3", "key ctrl+c", "type 'a b'", "scroll -1 2", "scroll 0 0", "", "move", "type"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		ev, err := parseEvent(line)
		noop := ev.verb == "scroll" && ev.a == 0 && ev.b == 0 // a wheel's nothing: valid, and sent nowhere
		if err == nil && xdoArgs(ev) == nil && !noop {
			t.Fatalf("%q parsed to %+v with no action", line, ev)
		}
	})
}

func FuzzCheckOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, offer string) { checkOffer(offer) })
}
