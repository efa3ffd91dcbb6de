package synth

import (
	"context"
	"testing"

	"cheshire/styx"
)

// TestEventsBounded checks that a reader's queue stays bounded whatever
// the pattern of publishing and reading, and that clunk unregisters it.
func TestEventsBounded(t *testing.T) {
	const queue = 8
	ctx := context.Background()
	ev := NewEvents(queue)
	h, err := ev.File("events", 0444).Handler().Open(ctx, styx.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	r := h.(*evReader)
	buf := make([]byte, 4)
	for i := range 10000 {
		ev.Publishf("event %d\n", i)
		ev.Publishf("event %d'\n", i)
		if i%2 == 0 {
			// Read a little: the reader falls further behind, with
			// room for one event now and then.
			if _, err := r.Read(ctx, buf, 0); err != nil {
				t.Fatal(err)
			}
		}
		ev.mu.Lock()
		n, events, partial := len(r.q), r.events, len(r.partial)
		ev.mu.Unlock()
		if n > 2*queue+1 || events > queue || partial > len("overflow: 20000 events dropped\n") {
			t.Fatalf("after %d rounds: %d items, %d events, %d bytes cut", i, n, events, partial)
		}
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.readers) != 0 {
		t.Errorf("%d readers after close", len(ev.readers))
	}
}
