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

// FuzzParseRequest: a request file parses or is refused; one that
// parses names an absolute ctl file that cleanPath keeps within the
// namespace, and a line of one line.
func FuzzParseRequest(f *testing.F) {
	f.Add("id 1\nfrom key:abc\nkind access\nargs /tmp\nfile /ns/ctl\nline export /tmp ro to abc\nstate pending\ntime 2026-01-01T00:00:00Z\n")
	f.Add("id 2\nkind join\nfile /ledger/../ctl\nline join k\nstate pending\n")
	f.Add("id x\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		r, err := parseRequest(text)
		if err != nil {
			return
		}
		names, err := cleanPath(strings.TrimPrefix(r.File, "/"))
		if err != nil || len(names) == 0 || strings.ContainsRune(r.Line, '\n') || r.ID < 0 {
			t.Fatalf("parseRequest(%q) = %+v", text, r)
		}
	})
}
