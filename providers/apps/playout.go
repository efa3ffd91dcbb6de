package apps

import (
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// playoutDelayURI is the RTP header extension by which a sender tells
// the receiver the least and most time a frame may wait before it is
// shown (http://www.webrtc.org/experiments/rtp-hdrext/playout-delay).
// Chromium takes 0/0 to mean: show each frame as soon as it is decoded,
// with no smoothing delay of its own. A browser keeps the last delay
// it was sent until another comes.
const playoutDelayURI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"

// playout holds the playout delay the sessions ask of browsers, in
// milliseconds: min and max packed as min<<16|max, or -1 for none
// (the browser chooses).
type playout struct{ v atomic.Int64 }

func (p *playout) set(min, max int) { p.v.Store(int64(min)<<16 | int64(max)) }
func (p *playout) off()             { p.v.Store(-1) }

// ext is the extension's payload, or nil when it is off.
func (p *playout) ext() []byte {
	v := p.v.Load()
	if v < 0 {
		return nil
	}
	// The extension counts in units of 10 ms.
	b, err := rtp.PlayoutDelayExtension{MinDelay: uint16(v>>16) / 10, MaxDelay: uint16(v&0xffff) / 10}.Marshal()
	if err != nil {
		return nil
	}
	return b
}

// playoutTrack is an app's video track as one session sends it: each
// packet carries the playout delay, under the extension ID that session
// negotiated.
type playoutTrack struct {
	*webrtc.TrackLocalStaticRTP
	p *playout
}

// Bind binds the track, writing through a writer that adds the
// extension when the browser negotiated it.
func (t playoutTrack) Bind(c webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, e := range c.HeaderExtensions() {
		if e.URI == playoutDelayURI && e.ID > 0 && e.ID < 15 {
			w := &playoutWriter{TrackLocalWriter: c.WriteStream(), id: uint8(e.ID), p: t.p}
			return t.TrackLocalStaticRTP.Bind(playoutContext{c, w})
		}
	}
	return t.TrackLocalStaticRTP.Bind(c)
}

// playoutContext is a TrackLocalContext whose writer adds the extension.
type playoutContext struct {
	webrtc.TrackLocalContext
	w *playoutWriter
}

func (c playoutContext) WriteStream() webrtc.TrackLocalWriter { return c.w }

type playoutWriter struct {
	webrtc.TrackLocalWriter
	id uint8
	p  *playout
}

// WriteRTP writes a copy of h with the extension: the track hands every
// session the same header.
func (w *playoutWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	ext := w.p.ext()
	if ext == nil {
		return w.TrackLocalWriter.WriteRTP(h, payload)
	}
	hh := *h
	hh.Extensions = append([]rtp.Extension(nil), h.Extensions...)
	if err := hh.SetExtension(w.id, ext); err != nil {
		return w.TrackLocalWriter.WriteRTP(h, payload)
	}
	return w.TrackLocalWriter.WriteRTP(&hh, payload)
}
