package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestDedupeAttrs(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log := slog.New(dedupe(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(g []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})))
	log.With("module", "dns").Info("zone changed", "module", "dns", "zone", "x.org")
	log.With("module", "dns").Info("other", "module", "ca")
	want := "level=INFO msg=\"zone changed\" module=dns zone=x.org\nlevel=INFO msg=other module=dns module=ca\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Count(b.String(), "module=dns") != 2 {
		t.Errorf("module=dns repeated: %s", b.String())
	}
}
