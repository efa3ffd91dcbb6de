package main

import (
	"context"
	"log/slog"
)

// dedupeHandler drops from a record the attributes that its logger
// already carries with the same value, so that a provider given a
// logger With("module", "dns") that also says "module", "dns" itself
// logs module=dns once. Attributes in groups pass as they are.
type dedupeHandler struct {
	slog.Handler
	have map[string]slog.Value // the top-level attributes of WithAttrs
}

func dedupe(h slog.Handler) slog.Handler {
	return &dedupeHandler{Handler: h, have: map[string]slog.Value{}}
}

func (h *dedupeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	have := make(map[string]slog.Value, len(h.have)+len(as))
	for k, v := range h.have {
		have[k] = v
	}
	for _, a := range as {
		have[a.Key] = a.Value
	}
	return &dedupeHandler{Handler: h.Handler.WithAttrs(as), have: have}
}

func (h *dedupeHandler) WithGroup(name string) slog.Handler {
	// Attributes after a group are in it: nothing to compare them with.
	return h.Handler.WithGroup(name)
}

func (h *dedupeHandler) Handle(ctx context.Context, r slog.Record) error {
	dup := false
	r.Attrs(func(a slog.Attr) bool {
		if v, ok := h.have[a.Key]; ok && v.Equal(a.Value) {
			dup = true
		}
		return !dup
	})
	if !dup {
		return h.Handler.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if v, ok := h.have[a.Key]; !ok || !v.Equal(a.Value) {
			nr.AddAttrs(a)
		}
		return true
	})
	return h.Handler.Handle(ctx, nr)
}
