package node

import (
	"io"
	"log/slog"
	"sync"

	"cheshire/synth"
)

// LogHandler returns a slog handler that writes text lines to w and
// appends each line to ev, so /node/log readers see the node's log.
func LogHandler(w io.Writer, ev *synth.Log, level slog.Leveler) slog.Handler {
	return slog.NewTextHandler(&tee{w: w, ev: ev}, &slog.HandlerOptions{Level: level})
}

// tee receives one whole log line per Write from slog's text handler.
type tee struct {
	mu sync.Mutex
	w  io.Writer
	ev *synth.Log
}

func (t *tee) Write(p []byte) (int, error) {
	t.ev.Write(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.w.Write(p)
}
