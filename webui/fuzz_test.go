package webui

import (
	"strings"
	"testing"
)

// FuzzCleanPath: whatever a URL path holds, the names cleanPath gives
// never leave the path (no "", ".", ".." element, no NUL, no slash).
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"", "a/b", "a/../b", "a//b", "./a", "a/\x00", "tmp/notes/", "..", "%2F"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		names, err := cleanPath(p)
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
				t.Fatalf("cleanPath(%q) = %q", p, names)
			}
		}
	})
}
