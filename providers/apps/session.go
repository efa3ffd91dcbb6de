package apps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"cheshire/synth"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

const (
	maxOffer    = 64 << 10
	connectWait = 30 * time.Second // a session not connected by then is closed
)

// session is one viewer of an app: a peer connection, made from the
// offer written to it.
type session struct {
	ap  *app
	n   int
	dir *synth.Dir

	mu     sync.Mutex
	pc     *webrtc.PeerConnection // guarded by mu: nil until the offer
	answer string                 // guarded by mu
	closed bool                   // guarded by mu
	timer  *time.Timer            // guarded by mu: closes an unconnected session
}

// newSession makes session n of ap, if ap has room for one.
func (ap *app) newSession(n int) (*session, error) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	if len(ap.sessions) >= ap.a.opts.MaxSessions {
		return nil, fmt.Errorf("apps: %s is busy: %d sessions", ap.name, len(ap.sessions))
	}
	s := &session{ap: ap, n: n}
	s.dir = synth.NewDir(fmt.Sprint(n), 0555)
	s.dir.Add(synth.ReadWrite("offer", 0660,
		func(ctx context.Context) ([]byte, error) { return nil, nil },
		func(ctx context.Context, data []byte) error {
			_, err := s.offer(ctx, string(data))
			return err
		}))
	s.dir.Add(synth.Snapshot("answer", 0440, func(ctx context.Context) ([]byte, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.answer == "" {
			return nil, errors.New("apps: no offer yet: write one to offer")
		}
		return []byte(s.answer), nil
	}))
	s.dir.Add(synth.Ctl("input", 0220, inputCmds(func(ctx context.Context, ev event) error { return s.input(ev) }), nil))
	s.dir.Add(synth.ReadWrite("clipboard", 0660,
		func(ctx context.Context) ([]byte, error) { return ap.clipboard(ctx) },
		func(ctx context.Context, data []byte) error {
			if err := s.mayControl(); err != nil {
				return err
			}
			return ap.setClipboard(ctx, data)
		}))
	s.dir.Add(synth.String("stats", 0444, func(ctx context.Context) string { return s.stats() }))
	s.dir.Add(synth.Ctl("ctl", 0660, []synth.Cmd{
		{Name: "close", Run: func(ctx context.Context, args []string) error { s.close(); return nil }},
		{Name: "control", Run: func(ctx context.Context, args []string) error { return s.takeControl() }},
	}, func(ctx context.Context) string { return s.role() + "\n" }))
	ap.sessions[n] = s
	if ap.controller < 0 {
		ap.controller = n
	}
	s.timer = time.AfterFunc(connectWait, func() {
		s.mu.Lock()
		pc := s.pc
		s.mu.Unlock()
		if pc == nil || pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			s.close()
		}
	})
	return s, nil
}

func (s *session) role() string {
	s.ap.mu.Lock()
	defer s.ap.mu.Unlock()
	if s.ap.controller == s.n {
		return "controller"
	}
	return "viewer"
}

func (s *session) takeControl() error {
	s.ap.mu.Lock()
	defer s.ap.mu.Unlock()
	if _, ok := s.ap.sessions[s.n]; !ok {
		return errors.New("apps: session closed")
	}
	s.ap.controller = s.n
	return nil
}

func (s *session) mayControl() error {
	s.ap.mu.Lock()
	defer s.ap.mu.Unlock()
	if s.ap.controller != s.n {
		return errors.New("apps: view only: permission denied")
	}
	return nil
}

// checkOffer refuses an offer that is not SDP or that has no video the
// node can send.
func checkOffer(offer string) error {
	if len(offer) > maxOffer {
		return fmt.Errorf("apps: offer too large (%d bytes)", len(offer))
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return fmt.Errorf("apps: bad offer: %v", err)
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "video" {
			continue
		}
		for _, a := range m.Attributes {
			if a.Key == "rtpmap" && strings.Contains(strings.ToUpper(a.Value), "H264/90000") {
				return nil
			}
		}
	}
	return errors.New("apps: bad offer: no h264 video to receive")
}

// offer answers the browser's SDP offer: a peer connection sending the
// app's video and taking input on its data channel. It returns the answer
// (ICE gathered: no trickle).
func (s *session) offer(ctx context.Context, offer string) (string, error) {
	if err := checkOffer(offer); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return "", errors.New("apps: session closed")
	case s.pc != nil:
		return "", errors.New("apps: offer already made: clone another session")
	}
	api, err := s.ap.a.webrtcAPI()
	if err != nil {
		return "", err
	}
	cfg := webrtc.Configuration{}
	cfg.ICEServers = s.ap.a.iceServers()
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return "", fmt.Errorf("apps: peer connection: %w", err)
	}
	fail := func(err error) (string, error) {
		pc.Close()
		return "", err
	}
	sender, err := pc.AddTrack(playoutTrack{s.ap.track, &s.ap.a.playout})
	if err != nil {
		return fail(fmt.Errorf("apps: add track: %w", err))
	}
	go drainRTCP(sender)
	if s.ap.audio != nil {
		asender, err := pc.AddTrack(s.ap.audio)
		if err != nil {
			return fail(fmt.Errorf("apps: add audio track: %w", err))
		}
		go drainRTCP(asender)
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go s.close()
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) { s.serveChannel(dc) })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("apps: bad offer: %v", err))
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("apps: bad offer: cannot answer: %v", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return fail(fmt.Errorf("apps: bad offer: %v", err))
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(10 * time.Second):
		return fail(errors.New("apps: no ICE candidates gathered in 10s"))
	}
	s.ap.mu.Lock()
	err = s.ap.ensureEncoderLocked()
	s.ap.mu.Unlock()
	if err != nil {
		return fail(err)
	}
	s.pc = pc
	s.answer = pc.LocalDescription().SDP
	return s.answer, nil
}

// serveChannel takes input events, one a message, from a data channel;
// an event refused is answered with "error TEXT".
func (s *session) serveChannel(dc *webrtc.DataChannel) {
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		if len(msg.Data) > 4096 {
			dc.SendText("error apps: input too large")
			return
		}
		if err := s.channelLine(string(msg.Data)); err != nil {
			dc.SendText("error " + err.Error())
		}
	})
}

// channelLine carries out one data channel message: an input event,
// "control" to take the controller role, "close" to end the session, or "clipboard TEXT" (the rest
// of the message, as is) to set the clipboard.
func (s *session) channelLine(line string) error {
	if text, ok := strings.CutPrefix(line, "clipboard "); ok {
		if err := s.mayControl(); err != nil {
			return err
		}
		return s.ap.setClipboard(context.Background(), []byte(text))
	}
	switch line = strings.TrimSpace(line); line {
	case "control":
		return s.takeControl()
	case "close":
		go s.close()
		return nil
	}
	ev, err := parseEvent(line)
	if err != nil {
		return err
	}
	return s.input(ev)
}

func (s *session) input(ev event) error {
	if err := s.mayControl(); err != nil {
		return err
	}
	s.ap.mu.Lock()
	r := s.ap.run
	s.ap.mu.Unlock()
	if r == nil {
		return fmt.Errorf("apps: %s is not running", s.ap.name)
	}
	return r.inject(ev)
}

// close ends the session: its peer connection closed, its directory
// removed; the encoder stops with the last session.
func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	pc := s.pc
	s.timer.Stop()
	s.mu.Unlock()
	if pc != nil {
		pc.Close()
	}
	ap := s.ap
	ap.mu.Lock()
	delete(ap.sessions, s.n)
	if ap.controller == s.n {
		ap.controller = -1
	}
	var enc *encoder
	var snd *sound
	if len(ap.sessions) == 0 {
		enc, ap.enc = ap.enc, nil
		snd, ap.snd = ap.snd, nil
	}
	ap.mu.Unlock()
	ap.sdir.Remove(s.dir.Name())
	if enc != nil {
		enc.stop()
	}
	if snd != nil {
		snd.stop()
	}
}

func (s *session) stats() string {
	var b strings.Builder
	s.ap.mu.Lock()
	if e := s.ap.enc; e != nil {
		b.WriteString(e.stats())
	}
	if snd := s.ap.snd; snd != nil {
		b.WriteString(snd.stats())
	}
	s.ap.mu.Unlock()
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	if pc == nil {
		b.WriteString("state new\n")
		return b.String()
	}
	fmt.Fprintf(&b, "state %s\n", pc.ConnectionState())
	for _, st := range pc.GetStats() {
		switch st := st.(type) {
		case webrtc.OutboundRTPStreamStats:
			if st.Kind == "audio" {
				fmt.Fprintf(&b, "audio-sent-packets %d\n", st.PacketsSent)
				continue
			}
			fmt.Fprintf(&b, "sent-packets %d\nsent-bytes %d\nnacks %d\nplis %d\n", st.PacketsSent, st.BytesSent, st.NACKCount, st.PLICount)
		case webrtc.RemoteInboundRTPStreamStats:
			fmt.Fprintf(&b, "rtt %.1fms\nlost %d\nfraction-lost %.3f\n", st.RoundTripTime*1000, st.PacketsLost, st.FractionLost)
		}
	}
	return b.String()
}

// webrtcAPI is the pion API of the sessions: H.264 and the default
// interceptors; loopback candidates allowed (so that a node and a browser
// on one machine with no network connect), mDNS off, and short ICE
// timeouts so that a vanished browser's session is reaped in seconds.
func (a *Apps) webrtcAPI() (*webrtc.API, error) {
	a.apiOnce.Do(func() {
		m := &webrtc.MediaEngine{}
		if err := m.RegisterDefaultCodecs(); err != nil {
			a.apiErr = fmt.Errorf("apps: codecs: %w", err)
			return
		}
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: playoutDelayURI}, webrtc.RTPCodecTypeVideo); err != nil {
			a.apiErr = fmt.Errorf("apps: playout delay extension: %w", err)
			return
		}
		ir := &interceptor.Registry{}
		if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
			a.apiErr = fmt.Errorf("apps: interceptors: %w", err)
			return
		}
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		se.SetICETimeouts(4*time.Second, 8*time.Second, time.Second)
		a.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	})
	return a.api, a.apiErr
}

// drainRTCP reads a sender's RTCP until it closes: it must be read for
// the interceptors (NACK, reports) to work.
func drainRTCP(sender *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := sender.Read(buf); err != nil {
			return
		}
	}
}
