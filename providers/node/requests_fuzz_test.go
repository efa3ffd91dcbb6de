package node

import (
	"strings"
	"testing"

	"cheshire/plan9"
)

// FuzzApproval: whatever a request's kind and arguments, the line that
// approving it writes is one line whose words are the command, the
// arguments as given and the asker's key: nothing in them can add a
// word or a line.
func FuzzApproval(f *testing.F) {
	const key = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u"
	f.Add("access", "/tmp/shared", "ro")
	f.Add("access", "/a b'c", "")
	f.Add("access", "/x\nbind / /y", "rw")
	f.Add("join", "", "")
	f.Add("holder", "x", "")
	f.Fuzz(func(t *testing.T, kind, a1, a2 string) {
		var args []string
		for _, a := range []string{a1, a2} {
			if a != "" {
				args = append(args, a)
			}
		}
		file, line, err := approval("key:"+key, kind, args)
		if err != nil {
			return
		}
		if strings.ContainsAny(line, "\n\r") || !strings.HasPrefix(file, "/") {
			t.Fatalf("approval(%q, %q) = %q, %q", kind, args, file, line)
		}
		words, err := plan9.Tokenize(line)
		if err != nil {
			t.Fatalf("line %q does not tokenize: %v", line, err)
		}
		var want []string
		switch kind {
		case "access":
			mode := "ro"
			if len(args) == 2 {
				mode = args[1]
			}
			want = []string{"export", args[0], mode, "to", key}
		case "join":
			want = []string{"join", key}
		case "holder":
			want = []string{"holders", "add", key}
		default:
			t.Fatalf("kind %q accepted", kind)
		}
		if strings.Join(words, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("approval(%q, %q): line %q is %q, want %q", kind, args, line, words, want)
		}
	})
}
